/**
 * The work of {@linkcode loadConfig} minus GeoIP, producing data that can
 * cross a thread boundary cheaply: the config worker (`compile_worker.ts`)
 * runs {@linkcode compileJob} and posts its reply with the typed arrays
 * transferred; the data-plane thread (`compile_client.ts`) wraps them into
 * an `Engine` without rebuilding anything.
 *
 * Same checks, same order and same error messages as `loadConfig()`:
 * JSON, then `parseConfig`, then rule sets (the GeoIP database is opened by
 * the receiving thread, which reports its issue after the rule sets' ones).
 *
 * @module
 */

import type { Arena } from "./arena.ts";
import { dirname, resolve } from "node:path";
import {
  Engine,
  type EngineWire,
  type PatchStretches,
  type RenumberedParts,
  renumberParts,
  wireTransferList,
} from "../rules/engine.ts";
import { NO_PAUSE } from "../rules/pacing.ts";
import {
  buildRuleHead,
  buildRuleTail,
  buildRuleWire,
  type RuleWire,
  type RuleWireTail,
} from "../rules/wire_rule_table.ts";
import { ConfigError, type Issue, Issues } from "./config_error.ts";
import { arrayMemberSpans } from "./json_cooperative.ts";
import {
  type CompileDeps,
  type ConfigSource,
  invalidJsonIssue,
  loadRuleSets,
  readConfigFile,
  readJsonBytes,
} from "./load_config.ts";
import { parseConfig } from "./parse_config.ts";
import {
  parseConfigBytes,
  parseConfigSameRules,
  type RulesIdentity,
  rulesIdentity,
} from "./rule_scan.ts";
import type { RuleSetSpec } from "../rules/spec.ts";
import {
  baseAsCurrent,
  parseConfigPatch,
  type PatchBase,
  type PatchCurrent,
} from "./rule_patch.ts";
import { REJECT_DROP_TAG, REJECT_TAG, type RouterConfig } from "./schema.ts";

/** A request to the config worker. */
export interface JobRequest {
  readonly id: number;
  readonly source: ConfigSource;
  /**
   * Id of the job whose engine the caller still holds: when the new
   * config's route rules are the same, the reply is a {@linkcode JobReused}.
   */
  readonly prev?: number;
  /**
   * After a patch (see {@linkcode JobPatched}), compile the patched file in
   * full once the worker has been idle this long (ms), so that the next
   * reload is compared with it (see {@linkcode rebaseJob}); 0: never.
   */
  readonly rebaseIdleMs?: number;
  /**
   * Only rebase once the patch carries at least this many rules the base
   * lacks (default 1: after any patch). See
   * {@linkcode CompileWorkerOptions.rebaseMinAdded}.
   */
  readonly rebaseMinAdded?: number;
  /**
   * Copy a full compile's arrays (and its tail's) into shared arenas
   * (`arena.ts`) instead of transferring them; the caller frees arenas with
   * `{free: ids}` once no engine reads them (`CompileWorker.retire`).
   */
  readonly arenas?: boolean;
}

/** Timings of a job in the worker, ms. */
export interface JobTimings {
  /** Read + JSON.parse + validation. */
  readonly parse: number;
  /** Rule sets + index building + per-rule metadata. */
  readonly compile: number;
}

/**
 * A successful job: the config (its `route.rules` empty) and the engine as
 * wire data. When `rules` is deferred (its `fingerprints` null), a
 * {@linkcode JobTail} with the same id follows.
 */
export interface JobDone {
  readonly id: number;
  readonly ok: true;
  readonly config: RouterConfig;
  readonly wire: EngineWire;
  readonly rules: RuleWire;
  readonly ms: JobTimings;
  /** The shared arena its arrays are in (see {@linkcode JobRequest.arenas}). */
  readonly arena?: Arena;
}

/** The rest of a deferred {@linkcode JobDone}'s rule table, posted right after it. */
export interface JobTail {
  readonly id: number;
  readonly tail: RuleWireTail;
  /** As {@linkcode JobDone.arena}. */
  readonly arena?: Arena;
}

/**
 * Config files from this size on (about 1,000 rules) are read by the byte
 * scanner (`rule_scan.ts`); smaller ones by `JSON.parse`. The scanner is
 * JavaScript and allocates no object per rule; since the config worker keeps
 * its compiler's hidden classes (`core/keep_shape.ts`) its code stays
 * optimised between reloads, and it beats `JSON.parse` + `parseConfig`
 * from small sets on (10k rules in the worker: ~18 against ~23 ms per full
 * compile); under 64 KiB either takes a few ms. Both give the same result
 * (`rule_scan_test.ts`).
 */
export const SCAN_MIN_BYTES = 64 << 10;

/**
 * Rule lists at least this long have their rule spans and fingerprints
 * (not needed to route) computed after the engine is posted; shorter ones
 * get them in the reply itself.
 */
export const DEFER_TAIL_MIN_RULES = 2048;

/** What {@linkcode compileJob} returns: the reply, and for a deferred reply how to build its tail. */
export interface JobResult {
  readonly reply: JobReply;
  readonly transfer: ArrayBuffer[];
  /**
   * Buffers the reply's arrays also use that this thread still needs (the
   * config file, for the tail and later patches): copied, never detached —
   * by `postMessage`'s clone, or into the arena (`arena.ts`).
   */
  readonly keep?: ArrayBuffer[];
  /** Builds the {@linkcode JobTail} (call it after posting `reply`). */
  readonly tail?: () => { reply: JobTail; transfer: ArrayBuffer[] };
}

/** A failed job. */
export interface JobFailed {
  readonly id: number;
  readonly ok: false;
  readonly error: { readonly name: string; readonly message: string; readonly issues?: Issue[] };
  /**
   * Present when the failure was in the rule sets: the config's GeoIP path
   * (or null), whose issue the receiver still has to add.
   */
  readonly geoipPath?: string | null;
}

/**
 * A successful job whose route rules (and everything they depend on) are
 * those of job `reused`, which the caller holds: reuse its engine's
 * indexes and rule table (`final` may differ: take it from `config`).
 */
export interface JobReused {
  readonly id: number;
  readonly ok: true;
  readonly reused: number;
  readonly config: RouterConfig;
  readonly ms: JobTimings;
}

/**
 * A successful job whose route rules are those of job `patched` (the base,
 * which the caller holds) with its `stretches` replaced by the rules
 * compiled alone into `wire` and `rules`, in order (see `Engine.patch`;
 * `config.route.rules` is empty).
 */
export interface JobPatched {
  readonly id: number;
  readonly ok: true;
  readonly patched: number;
  readonly stretches: PatchStretches;
  /** The base's parts renumbered for `stretches` (`renumberParts`, done here: it walks every node). */
  readonly renumbered: RenumberedParts;
  readonly config: RouterConfig;
  readonly wire: EngineWire;
  readonly rules: RuleWire;
  readonly ms: JobTimings;
}

/** A reply of the config worker. */
export type JobReply = JobDone | JobReused | JobPatched | JobFailed;

/** Rules arrays longer than this (bytes) are not remembered: the copy would cost that much RSS. */
export const MEMO_MAX_BYTES = 16 << 20;

/**
 * The config worker's memory of its last job compiled from a file, so that
 * a reload whose route rules did not change (an outbound edited, the final
 * changed) skips parsing and compiling them: {@linkcode compileJob} compares
 * the new file's rules array with a copy of the last one.
 */
export class CompileMemo {
  #id = -1;
  #identity: RulesIdentity | null = null;
  /** The last job compiled in full from a file with `whole` (see {@linkcode remember}): what patches are made against. */
  #base: PatchBase | null = null;
  #baseId = -1;
  /** The base as the file a patch is made from (found once per base). */
  #baseCurrent: PatchCurrent | null = null;
  /**
   * The last job when it was a patch (null otherwise): its file, compared with the next one and
   * compiled in full later ({@linkcode rebaseJob}).
   */
  #patched: { readonly path: string; readonly current: PatchCurrent } | null = null;

  /**
   * Remembers job `id`'s rules (copied: the file's buffer is transferred; not
   * beyond {@linkcode MEMO_MAX_BYTES}). With the whole `file` (its rules
   * array is `identity.rules`) and the rules' outbounds, later files that
   * edit a few rules can be read as patches of it (`rule_patch.ts`).
   * `keepFile`: the caller transfers a copy of the file, never `file` itself,
   * so it is kept as it is (a big file is not copied twice).
   */
  remember(
    id: number,
    identity: RulesIdentity,
    whole?: { readonly file: Uint8Array; readonly rules: RuleWire; readonly wire: EngineWire },
    keepFile = false,
  ): void {
    const size = whole?.file.length ?? identity.rules.length;
    if (identity.context === null || size > MEMO_MAX_BYTES) return this.forget();
    this.#id = id;
    this.#patched = null;
    this.#baseCurrent = null;
    if (!whole) {
      this.#identity = { ...identity, rules: identity.rules.slice() };
      this.#base = null;
      this.#baseId = -1;
      return;
    }
    const file = keepFile ? whole.file : whole.file.slice();
    const open = identity.rules.byteOffset - whole.file.byteOffset;
    const close = open + identity.rules.length;
    this.#identity = { ...identity, rules: file.subarray(open, close) };
    const rejects: { rule: number; tag: string }[] = [];
    const { tags, outbound } = whole.rules;
    const rejectIds = new Set(
      tags.flatMap((t, k) => t === REJECT_TAG || t === REJECT_DROP_TAG ? [k] : []),
    );
    if (rejectIds.size > 0) {
      for (let i = 0; i < outbound.length; i++) {
        if (rejectIds.has(outbound[i]!)) rejects.push({ rule: i, tag: tags[outbound[i]!]! });
      }
    }
    const { image, complex, complexFirst } = whole.wire;
    const parts = {
      image: {
        ...image,
        nodeInfo: image.nodeInfo.slice(),
        always: image.always.slice(),
        minTop: image.minTop.slice(),
      },
      complex: complex.slice(),
      complexFirst: complexFirst.slice(),
      ruleCount: whole.wire.ruleCount,
    };
    this.#base = { file, open, close, context: identity.context, rejects, parts };
    this.#baseId = id;
  }

  /**
   * Remembers job `id`, a patch of the base: a later file with the same
   * rules reuses it; patches are still made against the base.
   */
  rememberPatch(id: number, identity: RulesIdentity, path: string, current: PatchCurrent): void {
    this.#id = id;
    // A view into `current.file`, kept here and never transferred: a patch reply
    // carries copies; a rebase that transfers it remembers a new identity first.
    this.#identity = identity;
    this.#patched = { path, current };
  }

  /**
   * Splits the base's rules array now (the first patch would otherwise): for
   * an idle worker, after it posted a full reply.
   */
  prepareBase(): void {
    if (this.#base !== null) this.#baseCurrent ??= baseAsCurrent(this.#base);
  }

  /** The last job's file when that job was a patch (not yet compiled in full). */
  get patched(): { readonly id: number; readonly path: string; readonly bytes: Uint8Array } | null {
    const p = this.#patched;
    return p ? { id: this.#id, path: p.path, bytes: p.current.file } : null;
  }

  /** Forgets the last job. */
  forget(): void {
    this.#id = -1;
    this.#identity = null;
    this.#base = null;
    this.#baseId = -1;
    this.#patched = null;
    this.#baseCurrent = null;
  }

  /** The identity of job `id`'s rules, if that is the job remembered. */
  of(id: number | undefined): RulesIdentity | null {
    return id !== undefined && id === this.#id ? this.#identity : null;
  }

  /**
   * The base to read a new file as a patch of, and its job id, when job `id`
   * is the last one remembered (its caller then also holds the base).
   */
  baseOf(
    id: number | undefined,
  ): { readonly id: number; readonly base: PatchBase; readonly current: PatchCurrent } | null {
    if (id === undefined || id !== this.#id || this.#base === null) return null;
    this.prepareBase();
    const current = this.#patched?.current ?? this.#baseCurrent;
    return current ? { id: this.#baseId, base: this.#base, current } : null;
  }
}

const decoder = new TextDecoder();

function failure(id: number, e: unknown, geoipPath?: string | null): JobFailed {
  const err = e instanceof Error ? e : new Error(String(e));
  return {
    id,
    ok: false,
    error: {
      name: err.name,
      message: err.message,
      ...(e instanceof ConfigError ? { issues: [...e.issues] } : {}),
    },
    ...(geoipPath !== undefined ? { geoipPath } : {}),
  };
}

/**
 * Reads, validates and compiles `req.source` (no pacing: this runs off the
 * data-plane thread). Returns the reply and the buffers to transfer with it
 * (and, for a big rule list read from an ASCII file, the tail to post after
 * it: see {@linkcode JobResult}).
 *
 * A config file whose route rules are those of `req.prev` (see
 * {@linkcode CompileMemo}) gets a {@linkcode JobReused}; one of
 * {@linkcode SCAN_MIN_BYTES} or more goes through {@linkcode parseConfigBytes}
 * (no JS value per rule); otherwise, or when that fast path does not apply,
 * through `JSON.parse` and `parseConfig`.
 */
export async function compileJob(
  req: JobRequest,
  deps: Pick<CompileDeps, "readFile"> & {
    /** Files from this size on take the byte scanner (default {@linkcode SCAN_MIN_BYTES}). */
    readonly scanMinBytes?: number;
  } = {},
  memo?: CompileMemo,
): Promise<JobResult> {
  const { id, source } = req;
  const t0 = performance.now();
  let raw: unknown, baseDir: string;
  let bytes: Uint8Array | undefined, text: string | undefined;
  try {
    if (typeof source === "string") {
      const iss = new Issues();
      baseDir = dirname(resolve(source));
      bytes = await readJsonBytes(source, "", iss, deps);
      if (bytes !== undefined) {
        const prev = memo?.of(req.prev);
        const same = prev ? parseConfigSameRules(bytes, prev, { baseDir }) : null;
        if (same !== null) {
          const ms = { parse: performance.now() - t0, compile: 0 };
          return { reply: { id, ok: true, reused: req.prev!, config: same, ms }, transfer: [] };
        }
        const of = memo?.baseOf(req.prev);
        const patch = of ? parseConfigPatch(bytes, of.base, of.current, { baseDir }) : null;
        if (of && patch !== null) {
          const rules = patch.config.route.rules;
          return await compileParsed(id, patch.config, t0, deps, (config, ruleSets) => {
            const t1 = performance.now();
            const wire = Engine.compileWire({ rules, final: config.route.final, ruleSets });
            const ruleWire = buildRuleWire(rules, { text: patch.text, spans: patch.spans });
            const renumbered = renumberParts(of.base.parts, patch.stretches);
            memo!.rememberPatch(id, patch.identity, source, patch.current);
            const reply: JobPatched = {
              id,
              ok: true,
              patched: of.id,
              stretches: patch.stretches,
              renumbered,
              config: { ...config, route: { ...config.route, rules: [] } },
              wire,
              rules: ruleWire,
              ms: { parse: t1 - t0, compile: performance.now() - t1 },
            };
            return { reply, transfer: wireTransferList([wire, ruleWire, renumbered]) };
          });
        }
        const fast = bytes.length >= (deps.scanMinBytes ?? SCAN_MIN_BYTES)
          ? parseConfigBytes(bytes, { baseDir })
          : null;
        if (fast !== null) {
          const rules = fast.rules;
          const file = bytes;
          return await compileParsed(id, fast.config, t0, deps, (config, ruleSets, done) => {
            const wire = Engine.compileWire({ rules, final: config.route.final, ruleSets });
            if (rules.length < DEFER_TAIL_MIN_RULES) {
              memo?.remember(id, fast.identity, { file, rules: rules.wire, wire });
              return {
                reply: done(wire, rules.wire),
                transfer: wireTransferList([wire, rules.wire]),
              };
            }
            // Fingerprints (not needed to route) follow in a tail. The head's arrays (the file,
            // the spans, the outbounds) stay this thread's too, for the tail and the memo: they
            // are copied on the way out, not transferred.
            const head = rules.headWire();
            memo?.remember(id, fast.identity, { file, rules: head, wire }, true);
            const tail = () => {
              const t = rules.tailWire();
              return { reply: { id, tail: t }, transfer: wireTransferList(t) };
            };
            const transfer = wireTransferList(wire);
            const keep = wireTransferList(head).filter((b) => !transfer.includes(b));
            return { reply: done(wire, head), transfer, keep, tail };
          });
        }
        text = decoder.decode(bytes);
        try {
          raw = JSON.parse(text);
        } catch (e) {
          invalidJsonIssue(source, "", iss, e);
        }
      }
      iss.throwIfAny();
    } else {
      raw = source.inline;
      baseDir = resolve(source.baseDir ?? ".");
    }
  } catch (e) {
    return { reply: failure(id, e), transfer: [] };
  }
  let config: RouterConfig;
  try {
    config = parseConfig(raw, { baseDir });
  } catch (e) {
    return { reply: failure(id, e), transfer: [] };
  }
  return await compileParsed(id, config, t0, deps, (config, ruleSets, done) => {
    const rules = config.route.rules;
    const wire = Engine.compileWire({ rules, final: config.route.final, ruleSets });
    const identity = bytes !== undefined && memo ? rulesIdentity(bytes, config) : null;
    // Before the file's buffer goes with the reply.
    const remember = (ruleWire: RuleWire) => {
      if (identity) memo!.remember(id, identity, { file: bytes!, rules: ruleWire, wire });
    };
    // Rule texts for `explain`: the file's own bytes when one char is one byte.
    const ascii = text !== undefined && bytes !== undefined && bytes.length === text.length;
    if (ascii && rules.length >= DEFER_TAIL_MIN_RULES) {
      const head = buildRuleHead(rules, bytes!);
      remember(head);
      // The file's buffer goes with the head: the tail only brings offsets.
      const transfer = wireTransferList([wire, head]);
      const tail = () => {
        const t = buildRuleTail(rules, arrayMemberSpans(text!, ["route", "rules"]));
        return { reply: { id, tail: t }, transfer: wireTransferList(t) };
      };
      return { reply: done(wire, head), transfer, tail };
    }
    let source: { text: Uint8Array; spans: Int32Array } | undefined;
    if (ascii) {
      const spans = arrayMemberSpans(text!, ["route", "rules"]);
      if (spans) source = { text: bytes!, spans };
    }
    const ruleWire = buildRuleWire(rules, source);
    remember(ruleWire);
    return { reply: done(wire, ruleWire), transfer: wireTransferList([wire, ruleWire]) };
  });
}

/**
 * Compiles in full the file of the last job when that job was a patch: its
 * reply ({@linkcode JobDone}, with that job's id) gives the caller a new base
 * for later patches, so that each reload is compared with the one before
 * and not with an ever older file. The file's bytes are those the patch was
 * made from (the file may have changed on disk since). Null when there is
 * nothing to do or it fails (the old base stays).
 */
export async function rebaseJob(
  memo: CompileMemo,
  deps: Pick<CompileDeps, "readFile"> = {},
): Promise<JobResult | null> {
  const p = memo.patched;
  if (p === null) return null;
  const read = deps.readFile ?? readConfigFile;
  const r = await compileJob(
    { id: p.id, source: p.path },
    { ...deps, readFile: (path) => path === p.path ? Promise.resolve(p.bytes) : read(path) },
    memo,
  );
  return r.reply.ok && "wire" in r.reply && !("patched" in r.reply) ? r : null;
}

/**
 * The part of a job after parsing: loads the rule sets, then `build` compiles
 * the engine (`done` makes the successful reply); failures become replies.
 */
async function compileParsed(
  id: number,
  config: RouterConfig,
  t0: number,
  deps: Pick<CompileDeps, "readFile">,
  build: (
    config: RouterConfig,
    ruleSets: RuleSetSpec[],
    done: (wire: EngineWire, rules: RuleWire) => JobDone,
  ) => JobResult,
): Promise<JobResult> {
  const t1 = performance.now();
  const geoipPath = config.route.geoip?.path ?? null;
  try {
    const iss = new Issues();
    const ruleSets = await loadRuleSets(config, deps, NO_PAUSE, iss);
    iss.throwIfAny();
    return build(config, ruleSets, (wire, rules) => ({
      id,
      ok: true,
      config: { ...config, route: { ...config.route, rules: [] } },
      wire,
      rules,
      ms: { parse: t1 - t0, compile: performance.now() - t1 },
    }));
  } catch (e) {
    return {
      reply: failure(id, e, e instanceof ConfigError ? geoipPath : undefined),
      transfer: [],
    };
  }
}
