/**
 * `loadConfig()` off the data-plane thread: {@linkcode CompileWorker} owns
 * one config worker (`compile_worker.ts`, started once and reused, so its
 * JIT stays warm) that reads, parses, validates and compiles; the indexes
 * come back as transferred typed arrays and become an `Engine` here without
 * being rebuilt (`Engine.fromWire`). The data-plane thread only allocates a
 * few objects per reload, so neither the compile nor the garbage collection
 * of the parsed JSON stalls it.
 *
 * The GeoIP database is opened on this thread (the reader cannot cross
 * threads), cached by path, size and modification time.
 *
 * With `handBack` (the router's setting) a full compile's typed arrays come
 * in shared arenas (`arena.ts`) instead of transferred buffers, which count
 * towards this thread's heap limits until a collection finds them dead
 * (under `--optimize-for-size` every full reload of a big rule set started
 * a major collection here: 10–16 ms stalls with the 102k-rule set). An
 * arena goes back to the worker's pool, for the next compile, once no
 * engine made from it is in use ({@linkcode CompileWorker.retire}). See
 * docs/rules.md, round 8.
 *
 * If the worker cannot run (e.g. a bundled build without the worker's
 * module) or dies, the load falls back to `loadConfig()` on this thread
 * (paced, as before); a worker that never answered once is not retried.
 *
 * @module
 */

import { resolve } from "node:path";
import { Engine, type EngineWire, patchedRuleTable, type PatchStretches } from "../rules/engine.ts";
import { type GeoIpLookup, openGeoIp } from "../rules/item_geoip.ts";
import { WireRuleTable } from "../rules/wire_rule_table.ts";
import { ConfigError, Issues } from "./config_error.ts";
import type { Arena } from "./arena.ts";
import type { JobDone, JobReply, JobRequest, JobTail } from "./compile_job.ts";
import { arrayMemberSpans } from "./json_cooperative.ts";
import { type ConfigSource, geoipIssue, loadConfig } from "./load_config.ts";
import { validatedRuleParser } from "./rule_parser.ts";
import type { RouterConfig } from "./schema.ts";

/**
 * Where the config worker's module is, seen from this module's URL: beside
 * it as `compile_worker.ts` in the source tree and in `deno compile`
 * executables (build.sh embeds it), or as `compile_worker.js` beside a
 * bundle (build.sh bundles it next to `router.bundle.js`).
 */
export function defaultWorkerUrl(moduleUrl: string): URL {
  const bundled = new URL(moduleUrl).pathname.endsWith(".js");
  return new URL(bundled ? "./compile_worker.js" : "./compile_worker.ts", moduleUrl);
}

/** Default of {@linkcode CompileWorkerOptions.rebaseIdleMs}. */
export const REBASE_IDLE_MS = 100;

/** Default of {@linkcode CompileWorkerOptions.rebaseMinAdded}. */
export const REBASE_MIN_ADDED = 64;

/** What {@linkcode CompileWorker.load} returns (as `loadConfig()`). */
export interface LoadedConfig {
  readonly config: RouterConfig;
  readonly engine: Engine;
  /**
   * True when the route rules were unchanged since the engine this worker
   * built last: the new engine shares its indexes (nothing was compiled).
   */
  readonly reused?: boolean;
  /**
   * Set when only some route rules changed since the engine this worker
   * built in full last: the rules it lacks were compiled alone and put after
   * its indexes (`Engine.patch`); the others were not compiled again.
   * `compiled`: how many were compiled (with those of earlier patches since
   * that engine).
   */
  readonly patched?: { readonly stretches: PatchStretches; readonly compiled: number };
  /** Where it was compiled: on the config worker, or on this thread (the worker could not run). */
  readonly compiledOn: "worker" | "main";
}

/** GeoIP readers by path, reopened when the file's size or modification time changes. */
export class GeoIpCache {
  readonly #entries = new Map<string, { key: string; lookup: GeoIpLookup }>();
  readonly #readFile: (path: string) => Promise<Uint8Array>;

  /** `readFile` defaults to `Deno.readFile`. */
  constructor(readFile: (path: string) => Promise<Uint8Array> = Deno.readFile) {
    this.#readFile = readFile;
  }

  /** The lookup of the database at `path`; throws what reading or opening it throws. */
  async open(path: string): Promise<GeoIpLookup> {
    let key: string | null = null;
    try {
      const st = await Deno.stat(path);
      key = `${st.size}:${st.mtime?.getTime() ?? "?"}`;
    } catch {
      // Let readFile below report the error, worded as loadConfig() words it.
    }
    const hit = this.#entries.get(path);
    if (key !== null && hit?.key === key) return hit.lookup;
    const lookup = await openGeoIp(await this.#readFile(path));
    if (key !== null) this.#entries.set(path, { key, lookup });
    return lookup;
  }
}

interface Pending {
  readonly resolve: (r: JobReply) => void;
  readonly reject: (e: Error) => void;
}

/** Options of {@linkcode CompileWorker}. */
export interface CompileWorkerOptions {
  /** GeoIP readers (default: a new {@linkcode GeoIpCache}). */
  readonly geoip?: GeoIpCache;
  /** Told when a load falls back to the data-plane thread because the worker failed. */
  readonly onFallback?: (error: Error) => void;
  /** The worker's module (default `compile_worker.ts` beside this file; tests replace it). */
  readonly workerUrl?: URL;
  /**
   * After a reload that patched a few rules in, the worker compiles that
   * config in full once it has been idle this long (ms; default
   * {@linkcode REBASE_IDLE_MS}; 0: never) or three times its last full
   * compile if longer (at most 2 s), so the next reload is compared with it
   * rather than with the last full compile.
   */
  readonly rebaseIdleMs?: number;
  /**
   * Rebase only once a patch carries this many rules the base lacks
   * (default {@linkcode REBASE_MIN_ADDED}). A rebase sends the data-plane
   * thread a whole new set of indexes, and receiving them costs that thread
   * a garbage collection (10–17 ms measured with 10k rules: see
   * docs/rules.md, round 7) at a moment no reload asked for; a patch of a
   * few rules costs a flow ~50 ns and each later patch recompiles them.
   */
  readonly rebaseMinAdded?: number;
  /**
   * Receive full compiles in shared arenas (`arena.ts`), keep track of
   * which engines read which arena, and give arenas back to the worker's
   * pool as engines are retired ({@linkcode CompileWorker.retire}); default
   * false. Only for a caller that retires every engine it stops using (the
   * router does): an arena is reused once given back.
   */
  readonly handBack?: boolean;
}

/** A deferred rule table and its tail, whichever arrives first waits for the other. */
interface TailSlot {
  table?: WireRuleTable;
  tail?: JobTail["tail"];
  /** The load failed: drop the tail when it comes. */
  dropped?: boolean;
}

const decoder = new TextDecoder();

/** Spans of `route.rules` in an ASCII config file (before the worker's tail arrives). */
function locateRules(file: Uint8Array): Int32Array | null {
  return arrayMemberSpans(decoder.decode(file), ["route", "rules"]);
}

/** The engine data of a job built from a full reply: what patches are made against. */
interface Base {
  readonly id: number;
  readonly wire: EngineWire;
  readonly table: WireRuleTable;
}

/** The last job's engine data, kept to reuse (see {@linkcode JobReused}). */
interface Last {
  readonly id: number;
  /** Its engine again, with this final outbound and GeoIP reader. */
  rebuild(final: string, geoip: GeoIpLookup | undefined): Engine;
  /** The base it was patched from, or itself for a full reply. */
  readonly base: Base;
}

/** A failure of the worker itself (not of the config it was given). */
class WorkerFailure extends Error {
  override name = "WorkerFailure";
}

/** Loads configs on a worker thread; see the module doc. Call {@linkcode CompileWorker.close} when done. */
export class CompileWorker {
  #worker: Worker | null = null;
  readonly #pending = new Map<number, Pending>();
  /** Deferred rule tables by job id (see `compile_job.ts`, `JobTail`). */
  readonly #tails = new Map<number, TailSlot>();
  readonly #geo: GeoIpCache;
  readonly #onFallback: ((e: Error) => void) | undefined;
  readonly #url: URL;
  #nextId = 1;
  #closed = false;
  /** The engine data of the last job built from a full reply (for a {@linkcode JobReused}). */
  #last: Last | null = null;
  /** True once the worker answered; a worker that fails before that is not restarted. */
  #answered = false;
  #disabled = false;
  readonly #rebaseIdleMs: number;
  readonly #rebaseMinAdded: number;
  /** A rebase that came before its (patched) job was built; see {@linkcode #takeRebase}. */
  #rebased: Last | null = null;
  #rebases = 0;
  /** The shared arenas of each full reply (and its tail) here, by job id (see {@linkcode retire}). */
  readonly #owned = new Map<number, { ref: Arena; worker: Worker }[]>();
  /** Jobs whose reply came and whose engine is being built: their arenas stay. */
  readonly #building = new Set<number>();
  /** Engines handed out and not yet retired, per full reply they read. */
  readonly #users = new Map<number, number>();
  /** The full reply each engine made here reads (a patched engine: its base). */
  readonly #wireOf = new WeakMap<Engine, number>();
  #returnedBytes = 0;
  readonly #handBack: boolean;

  /** Starts the worker now (so it is loaded and warm by the first reload). */
  constructor(opts: CompileWorkerOptions = {}) {
    this.#geo = opts.geoip ?? new GeoIpCache();
    this.#onFallback = opts.onFallback;
    this.#url = opts.workerUrl ?? defaultWorkerUrl(import.meta.url);
    this.#rebaseIdleMs = opts.rebaseIdleMs ?? REBASE_IDLE_MS;
    this.#rebaseMinAdded = opts.rebaseMinAdded ?? REBASE_MIN_ADDED;
    this.#handBack = opts.handBack ?? false;
    this.#start();
  }

  #start(): Worker {
    if (this.#worker) return this.#worker;
    const w = new Worker(this.#url, { type: "module" });
    w.onmessage = (ev: MessageEvent<JobReply | JobTail | { rebase: JobDone }>) => {
      this.#answered = true;
      // Arenas are recorded as they come, so that whatever becomes of the message (a load that
      // fails, a tail nobody waits for) they are freed once nothing here reads them.
      const arrived = "rebase" in ev.data ? ev.data.rebase : ev.data;
      if ("arena" in arrived && arrived.arena !== undefined) {
        this.#own(arrived.id, { ref: arrived.arena, worker: w });
      }
      if ("tail" in ev.data) return this.#takeTail(ev.data);
      if ("rebase" in ev.data) return this.#takeRebase(ev.data.rebase);
      const p = this.#pending.get(ev.data.id);
      if (!p) return;
      this.#pending.delete(ev.data.id);
      this.#building.add(ev.data.id);
      if (ev.data.ok && "rules" in ev.data && ev.data.rules.fingerprints === null) {
        this.#tails.set(ev.data.id, {});
      }
      p.resolve(ev.data);
    };
    w.onerror = (ev: ErrorEvent) => {
      ev.preventDefault();
      this.#fail(new WorkerFailure(`config worker failed: ${ev.message}`));
    };
    w.onmessageerror = () =>
      this.#fail(new WorkerFailure("config worker sent an unreadable message"));
    this.#worker = w;
    return w;
  }

  #takeTail(msg: JobTail): void {
    const slot = this.#tails.get(msg.id);
    if (!slot) return;
    if (slot.dropped) this.#tails.delete(msg.id);
    else if (slot.table) {
      this.#tails.delete(msg.id);
      slot.table.complete(msg.tail);
    } else slot.tail = msg.tail;
  }

  /**
   * The worker compiled the last (patched) job's file in full: keep it as the
   * base of later patches. The engine in use stays (it decides the same).
   */
  #takeRebase(reply: JobDone): void {
    this.#rebases++;
    const table = new WireRuleTable(reply.rules, this.#ruleParser(reply.config), locateRules);
    if (reply.rules.fingerprints === null) this.#tails.set(reply.id, { table });
    const full = this.#full(reply.id, reply.wire, table);
    // Its job may still be being built here (GeoIP is opened asynchronously): then it takes it.
    if (this.#last?.id === reply.id) this.#last = full;
    else this.#rebased = full;
  }

  #full(id: number, wire: EngineWire, table: WireRuleTable): Last {
    const base: Base = { id, wire, table };
    return {
      id,
      rebuild: (final, geoip) => Engine.fromWire({ ...wire, final }, table, geoip),
      base,
    };
  }

  /** Rejects every pending load and drops the worker (a new one starts on the next load). */
  #fail(e: Error): void {
    this.#worker?.terminate();
    this.#worker = null;
    this.#last = null;
    this.#rebased = null;
    if (!this.#answered) this.#disabled = true;
    for (const slot of this.#tails.values()) slot.table?.abandon();
    this.#tails.clear();
    for (const p of this.#pending.values()) p.reject(e);
    this.#pending.clear();
  }

  /** Records that job `id`'s engine data lives (partly) in `arena`, from `worker`'s pool. */
  #own(id: number, arena: { ref: Arena; worker: Worker }): void {
    let list = this.#owned.get(id);
    if (!list) this.#owned.set(id, list = []);
    list.push(arena);
  }

  #handOut(engine: Engine, id: number): void {
    if (!this.#handBack) return;
    this.#wireOf.set(engine, id);
    this.#users.set(id, (this.#users.get(id) ?? 0) + 1);
  }

  /**
   * `engine` (from {@linkcode load}) is no longer read by anyone: the router
   * replaced it and carried its hit counts over, or a reload failed after
   * loading it. The arenas of every full reply that no engine in use, no
   * kept base (for later patches and reuses) and no load being built reads
   * any more go back to the worker's pool; their generation is bumped first,
   * so an engine on them fails its lookups from now on. Engines not made
   * here are ignored, and every engine without {@linkcode
   * CompileWorkerOptions.handBack}. Reading a retired engine afterwards is a
   * bug.
   */
  retire(engine: Engine): void {
    const id = this.#wireOf.get(engine);
    if (id === undefined) return;
    this.#wireOf.delete(engine);
    const n = (this.#users.get(id) ?? 1) - 1;
    if (n > 0) this.#users.set(id, n);
    else this.#users.delete(id);
    const kept = new Set([this.#last?.base.id, this.#rebased?.base.id]);
    const free: number[] = [];
    for (const [owner, arenas] of this.#owned) {
      if (this.#users.has(owner) || kept.has(owner) || this.#building.has(owner)) continue;
      this.#owned.delete(owner);
      for (const { ref, worker } of arenas) {
        // From now on an engine on this arena fails its lookups (see `rules/arena_cell.ts`).
        Atomics.add(new Int32Array(ref.sab, 0, 1), 0, 1);
        this.#returnedBytes += ref.sab.byteLength;
        // Only to the pool it came from: a restarted worker numbers its arenas afresh.
        if (worker === this.#worker) free.push(ref.id);
      }
    }
    if (free.length === 0 || this.#worker === null) return;
    try {
      this.#worker.postMessage({ free });
    } catch {
      // The worker is gone, and its arenas with it.
    }
  }

  /** Bytes of shared arenas handed back to the worker for reuse (see {@linkcode retire}). */
  get returnedBytes(): number {
    return this.#returnedBytes;
  }

  /** Rebases received from the worker (see {@linkcode CompileWorkerOptions.rebaseIdleMs}). */
  get rebases(): number {
    return this.#rebases;
  }

  /** Number of loads in flight. */
  get pending(): number {
    return this.#pending.size;
  }

  /**
   * Reads, validates and compiles a config like `loadConfig(source)` (same
   * result, same `ConfigError`s), doing the work on the worker thread.
   */
  async load(source: ConfigSource): Promise<LoadedConfig> {
    if (this.#closed) throw new Error("CompileWorker is closed");
    if (this.#disabled) return await this.#onThisThread(source);
    let reply: JobReply;
    let last = this.#last;
    try {
      reply = await this.#ask(source, last?.id);
      // A rebase (same job id, a new base) may have come in meanwhile: take it.
      if (this.#last !== null && this.#last.id === last?.id) last = this.#last;
      if (!this.#holds(reply, last)) {
        // Our record and the worker's disagree (never seen; defensive): compile in full.
        last = null;
        reply = await this.#ask(source, undefined);
      }
    } catch (e) {
      if (!(e instanceof WorkerFailure)) throw e;
      this.#onFallback?.(e);
      return await this.#onThisThread(source);
    }
    return await this.#receive(reply, last);
  }

  /** Whether `last` has what a reuse or patch `reply` refers to. */
  #holds(reply: JobReply, last: Last | null): boolean {
    if (!reply.ok) return true;
    if ("reused" in reply) return last?.id === reply.reused;
    if ("patched" in reply) return last?.base.id === reply.patched;
    return true;
  }

  async #onThisThread(source: ConfigSource): Promise<LoadedConfig> {
    const loaded = await loadConfig(source);
    this.#last = null;
    this.#rebased = null;
    return { ...loaded, compiledOn: "main" };
  }

  #ask(source: ConfigSource, prev: number | undefined): Promise<JobReply> {
    const id = this.#nextId++;
    const req: JobRequest = {
      id,
      source: typeof source === "string"
        ? resolve(source)
        : { inline: source.inline, baseDir: resolve(source.baseDir ?? ".") },
      ...(prev !== undefined && typeof source === "string" ? { prev } : {}),
      rebaseIdleMs: this.#rebaseIdleMs,
      rebaseMinAdded: this.#rebaseMinAdded,
      ...(this.#handBack ? { arenas: true } : {}),
    };
    const worker = this.#start();
    return new Promise<JobReply>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      try {
        worker.postMessage(req);
      } catch (e) {
        this.#pending.delete(id);
        reject(e);
      }
    });
  }

  /** Turns a reply into the config and engine, or throws its error; `last`: what the request's `prev` named. */
  async #receive(reply: JobReply, last: Last | null): Promise<LoadedConfig> {
    try {
      return await this.#build(reply, last);
    } finally {
      this.#building.delete(reply.id);
      // A tail nobody waits for (the load failed) is dropped when it comes.
      const slot = this.#tails.get(reply.id);
      if (slot && !slot.table) {
        if (slot.tail) this.#tails.delete(reply.id);
        else slot.dropped = true;
      }
    }
  }

  async #build(reply: JobReply, last: Last | null): Promise<LoadedConfig> {
    if (!reply.ok) {
      const { name, message, issues } = reply.error;
      if (issues === undefined) {
        const err = new Error(message);
        err.name = name;
        throw err;
      }
      const iss = new Issues();
      iss.list.push(...issues);
      if (reply.geoipPath) await this.#openGeoIp(reply.geoipPath, iss);
      throw new ConfigError(iss.list);
    }
    const c = reply.config;
    let geoip: GeoIpLookup | undefined;
    if (c.route.geoip) {
      const iss = new Issues();
      geoip = await this.#openGeoIp(c.route.geoip.path, iss);
      iss.throwIfAny();
    }
    // `last` holds what a reuse or patch refers to: load() checked it (#holds).
    if ("reused" in reply) {
      const engine = last!.rebuild(c.route.final, geoip);
      this.#handOut(engine, last!.base.id);
      return { config: this.#withRules(c, engine), engine, reused: true, compiledOn: "worker" };
    }
    if ("patched" in reply) {
      const base = last!.base;
      const added = new WireRuleTable(reply.rules, this.#ruleParser(c), locateRules);
      const { stretches, wire, renumbered } = reply;
      const table = patchedRuleTable(base.table, stretches, added);
      const rebuild = (final: string, geoip: GeoIpLookup | undefined) =>
        Engine.patch(base.wire, stretches, wire, table, final, geoip, renumbered);
      const engine = rebuild(c.route.final, geoip);
      this.#handOut(engine, base.id);
      const rebased = this.#rebased;
      this.#rebased = null;
      this.#last = rebased?.id === reply.id ? rebased : { id: reply.id, rebuild, base };
      const patched = { stretches, compiled: wire.ruleCount };
      return { config: this.#withRules(c, engine), engine, patched, compiledOn: "worker" };
    }
    const table = new WireRuleTable(reply.rules, this.#ruleParser(c), locateRules);
    const engine = Engine.fromWire(reply.wire, table, geoip);
    this.#last = this.#full(reply.id, reply.wire, table);
    this.#rebased = null;
    const slot = this.#tails.get(reply.id);
    if (slot) {
      if (slot.tail) {
        this.#tails.delete(reply.id);
        table.complete(slot.tail);
      } else slot.table = table;
    }
    this.#handOut(engine, reply.id);
    return { config: this.#withRules(c, engine), engine, compiledOn: "worker" };
  }

  /** Parses a rule of `c` as written (for a wire table's rule list, on first access). */
  #ruleParser(c: RouterConfig) {
    return validatedRuleParser({
      inbounds: new Set(c.inbounds.map((x) => x.tag)),
      outbounds: new Set(c.outbounds.map((x) => x.tag)),
      ruleSets: new Set(c.route.rule_set.map((x) => x.tag)),
      hasGeoip: c.route.geoip !== null,
    });
  }

  /** `c` with `route.rules` the engine's rule list, materialised only if someone reads it. */
  #withRules(c: RouterConfig, engine: Engine): RouterConfig {
    const route = { ...c.route };
    Object.defineProperty(route, "rules", { get: () => engine.rules, enumerable: true });
    return { ...c, route };
  }

  async #openGeoIp(path: string, iss: Issues): Promise<GeoIpLookup | undefined> {
    try {
      return await this.#geo.open(path);
    } catch (e) {
      geoipIssue(path, iss, e);
      return undefined;
    }
  }

  /** Stops the worker; pending loads fail. */
  close(): void {
    this.#closed = true;
    this.#owned.clear();
    this.#users.clear();
    this.#building.clear();
    this.#fail(new Error("CompileWorker closed"));
    this.#disabled = true;
  }
}
