/**
 * Outbound health: a {@linkcode HealthChecker} keeps one state per outbound
 * (`up` / `down` / `unknown`, last error, since, last check) from two
 * sources:
 *
 * - **active** probes on an interval (jittered, bounded concurrency): a SOCKS5
 *   greeting to the server, or a TCP connect to a configured `health_check`
 *   target through the outbound's own mark / interface / source address;
 * - **passive** reports from flow dials: `failThreshold` consecutive dial
 *   failures that mean "the path is down" (ENETUNREACH, EHOSTUNREACH,
 *   timeouts, ENODEV; for SOCKS: the server cannot be used), to at least two
 *   different destination IPs (so one dead host a client keeps dialling
 *   cannot take the outbound down), turn the outbound down; the next dial
 *   that gets through (or is refused by the far host, which proves the path
 *   works) turns it up.
 *
 * While an outbound is down the router fails its new flows at once
 * ({@linkcode HealthChecker.admit} returns false) instead of letting each
 * client wait for a connect timeout, and the checker keeps probing so the
 * outbound comes back up by itself: active outbounds re-run their probe
 * every `min(interval, downRetryMs)`; passive ones re-dial the last
 * destination that failed and, on the same schedule, let one real flow
 * through as a trial.
 *
 * Pure logic: the clock (timers) and the probes are injected, so tests run
 * it with a fake clock and fake dialers.
 *
 * @module
 */

import type { Endpoint } from "../core/types.ts";
import type { Logger } from "../core/log.ts";
import { nullLogger } from "../core/log.ts";

/** Health of one outbound. */
export type HealthState = "up" | "down" | "unknown";

/**
 * How an outbound's health is known: `active` probes on an interval,
 * `passive` from flow dials only (probed while down), `static` always up.
 */
export type HealthMode = "active" | "passive" | "static";

/** What one flow's dial result says about the outbound's path. */
export type DialVerdict = "up" | "down" | "neutral";

/** What a probe gets. */
export interface ProbeContext {
  /** Aborted on timeout or when the checker stops; the probe must release its socket. */
  readonly signal: AbortSignal;
  /** The destination of the last flow whose dial failed with a "down" verdict, if any. */
  readonly lastFailed: Endpoint | null;
}

/** How to check one outbound; built by the registry from its config. */
export interface HealthSpec {
  readonly mode: HealthMode;
  /**
   * One cheap check; resolves when healthy, rejects with the reason.
   * Required for `active`; for `passive` it is the re-dial used while down.
   */
  readonly probe?: (ctx: ProbeContext) => Promise<void>;
  /** Time between active probes (ms, > 0). */
  readonly intervalMs: number;
  /** A probe that takes longer fails (ms, > 0). */
  readonly timeoutMs: number;
  /** Maps a flow's dial error to a verdict on the path. */
  readonly classify: (err: unknown) => DialVerdict;
}

/** A snapshot of one outbound's health, as IPC shows it. */
export interface HealthStatus {
  readonly mode: HealthMode;
  readonly state: HealthState;
  /** Message of the last failure (kept after recovery), or null. */
  readonly lastError: string | null;
  /** Clock time of the last state change, or null while unknown. */
  readonly since: number | null;
  /** Clock time the last probe finished, or null before the first. */
  readonly lastCheck: number | null;
  /** Probes run and how many failed. */
  readonly checks: number;
  readonly checkFailures: number;
  /** Flows refused at once because the outbound was down. */
  readonly failFast: number;
}

/** A timer handle of the platform's `setTimeout`. */
export type TimerId = ReturnType<typeof setTimeout>;

/** Timers and wall time; injectable for tests. */
export interface HealthClock {
  /** Milliseconds since the epoch (shown as `since` / `last_check`). */
  now(): number;
  /** Runs `fn` after `ms`; the real clock unrefs the timer so it never holds the process. */
  setTimeout(fn: () => void, ms: number): TimerId;
  clearTimeout(id: TimerId): void;
}

/** The real clock: `Date.now()` and unref'd timers. */
export const systemHealthClock: HealthClock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    const id = setTimeout(fn, ms);
    Deno.unrefTimer(id);
    return id;
  },
  clearTimeout: (id) => clearTimeout(id),
};

/** Options of {@linkcode HealthChecker}. */
export interface HealthCheckerOptions {
  readonly clock?: HealthClock;
  /** Uniform [0, 1) source for jitter; injectable for tests. */
  readonly random?: () => number;
  /** Most probes running at once (default 8, 1..1024). */
  readonly maxConcurrent?: number;
  /** Consecutive "down" dial verdicts that turn an outbound down (default 3, 1..1000). */
  readonly failThreshold?: number;
  /** Longest wait between probes while down (default 5000 ms). */
  readonly downRetryMs?: number;
  /** Longest wait before an outbound's first active probe (default 1000 ms). */
  readonly firstCheckMaxMs?: number;
  /** Least time between two probes kicked by failing flows (default 1000 ms). */
  readonly kickMinGapMs?: number;
  readonly logger?: Logger;
}

/** One outbound the checker watches; `key` changes whenever its config does. */
export interface HealthEntrySpec {
  readonly tag: string;
  readonly key: string;
  readonly spec: HealthSpec;
}

interface Entry {
  readonly tag: string;
  readonly key: string;
  readonly spec: HealthSpec;
  state: HealthState;
  lastError: string | null;
  since: number | null;
  lastCheck: number | null;
  checks: number;
  checkFailures: number;
  failFast: number;
  /** Consecutive "down" verdicts from flows, and the distinct destination IPs among them. */
  streak: number;
  streakHosts: Set<string>;
  lastFailed: Endpoint | null;
  timer: TimerId | null;
  running: boolean;
  queued: boolean;
  abort: AbortController | null;
  /** Passive and down: one flow may go through as a trial. */
  trial: boolean;
  lastKick: number;
  removed: boolean;
}

const JITTER = 0.1;

function message(e: unknown): string {
  if (e instanceof Error) return e.message || e.name;
  return String(e);
}

function checkRange(name: string, v: number, lo: number, hi: number): number {
  if (!Number.isFinite(v) || v < lo || v > hi) {
    throw new RangeError(`${name}: ${v}: want ${lo}..${hi}`);
  }
  return v;
}

/** See the module doc. Starts nothing until {@linkcode HealthChecker.sync}. */
export class HealthChecker {
  readonly #clock: HealthClock;
  readonly #random: () => number;
  readonly #max: number;
  readonly #threshold: number;
  readonly #downRetryMs: number;
  readonly #firstMaxMs: number;
  readonly #kickGapMs: number;
  readonly #log: Logger;
  readonly #entries = new Map<string, Entry>();
  readonly #queue: Entry[] = [];
  #running = 0;
  #closed = false;

  /** Validates the options (RangeError naming the option). */
  constructor(opts: HealthCheckerOptions = {}) {
    this.#clock = opts.clock ?? systemHealthClock;
    this.#random = opts.random ?? Math.random;
    this.#max = checkRange("maxConcurrent", opts.maxConcurrent ?? 8, 1, 1024);
    this.#threshold = checkRange("failThreshold", opts.failThreshold ?? 3, 1, 1000);
    this.#downRetryMs = checkRange("downRetryMs", opts.downRetryMs ?? 5000, 1, 86_400_000);
    this.#firstMaxMs = checkRange("firstCheckMaxMs", opts.firstCheckMaxMs ?? 1000, 0, 86_400_000);
    this.#kickGapMs = checkRange("kickMinGapMs", opts.kickMinGapMs ?? 1000, 0, 86_400_000);
    this.#log = opts.logger ?? nullLogger;
  }

  /**
   * Makes the watched set equal to `specs`: an entry whose tag and key are
   * unchanged keeps its state and schedule; a new or changed one starts
   * fresh (`unknown`, first probe soon); tags not listed are stopped.
   */
  sync(specs: Iterable<HealthEntrySpec>): void {
    if (this.#closed) return;
    const seen = new Set<string>();
    for (const s of specs) {
      seen.add(s.tag);
      const old = this.#entries.get(s.tag);
      if (old && old.key === s.key) continue;
      if (old) this.#remove(old);
      this.#add(s);
    }
    for (const e of [...this.#entries.values()]) if (!seen.has(e.tag)) this.#remove(e);
  }

  /** Tags being watched. */
  tags(): string[] {
    return [...this.#entries.keys()];
  }

  /** Health of `tag`, or undefined when it is not watched. */
  status(tag: string): HealthStatus | undefined {
    const e = this.#entries.get(tag);
    if (!e) return undefined;
    return {
      mode: e.spec.mode,
      state: e.state,
      lastError: e.lastError,
      since: e.since,
      lastCheck: e.lastCheck,
      checks: e.checks,
      checkFailures: e.checkFailures,
      failFast: e.failFast,
    };
  }

  /**
   * May a new flow dial `tag` now? False when it is known down (counted as
   * fail-fast); a passive outbound that is down lets one trial flow through
   * per retry period. Unknown tags are admitted.
   */
  admit(tag: string): boolean {
    const e = this.#entries.get(tag);
    if (!e || e.state !== "down") return true;
    if (e.trial) {
      e.trial = false;
      return true;
    }
    e.failFast++;
    return false;
  }

  /** A flow's dial to `tag` succeeded. */
  reportSuccess(tag: string): void {
    const e = this.#entries.get(tag);
    if (!e) return;
    this.#resetStreak(e);
    if (e.spec.mode !== "static") this.#setState(e, "up", null, "flow dial succeeded");
  }

  /** A flow's dial to `tag` (destination `dst`) failed with `err`. */
  reportFailure(tag: string, err: unknown, dst?: Endpoint): void {
    const e = this.#entries.get(tag);
    if (!e || e.spec.mode === "static") return;
    let verdict: DialVerdict;
    try {
      verdict = e.spec.classify(err);
    } catch {
      verdict = "neutral";
    }
    if (verdict === "neutral") return;
    if (verdict === "up") {
      this.#resetStreak(e);
      this.#setState(e, "up", null, "flow dial reached the far end");
      return;
    }
    e.streak++;
    // One dead host hammered by a client must not take the whole outbound down.
    if (e.streakHosts.size < this.#threshold) {
      e.streakHosts.add(dst ? dst.addr.join(",") : `#${e.streak}`);
    }
    if (dst) e.lastFailed = dst;
    const tripped = e.streak >= this.#threshold &&
      e.streakHosts.size >= Math.min(2, this.#threshold);
    if (tripped || e.state === "down") {
      this.#setState(e, "down", message(err), `${e.streak} consecutive dial failures`);
    } else {
      // Keep the error for status even before the threshold.
      e.lastError = message(err);
    }
    if (e.spec.mode === "active") this.#kick(e);
  }

  /** Stops every timer and aborts running probes. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const e of [...this.#entries.values()]) this.#remove(e);
    this.#queue.length = 0;
  }

  #add(s: HealthEntrySpec): void {
    const { spec } = s;
    if (spec.mode !== "static") {
      checkRange(`${s.tag}: health_check.interval`, spec.intervalMs, 1, 86_400_000);
      checkRange(`${s.tag}: health_check.timeout`, spec.timeoutMs, 1, 86_400_000);
      if (spec.mode === "active" && !spec.probe) {
        throw new TypeError(`${s.tag}: an active health check needs a probe`);
      }
    }
    const e: Entry = {
      tag: s.tag,
      key: s.key,
      spec,
      state: spec.mode === "static" ? "up" : "unknown",
      lastError: null,
      since: spec.mode === "static" ? this.#clock.now() : null,
      lastCheck: null,
      checks: 0,
      checkFailures: 0,
      failFast: 0,
      streak: 0,
      streakHosts: new Set(),
      lastFailed: null,
      timer: null,
      running: false,
      queued: false,
      abort: null,
      trial: false,
      lastKick: -Infinity,
      removed: false,
    };
    this.#entries.set(s.tag, e);
    if (spec.mode === "active") {
      this.#schedule(e, this.#random() * Math.min(spec.intervalMs, this.#firstMaxMs));
    }
  }

  #remove(e: Entry): void {
    e.removed = true;
    if (e.timer !== null) this.#clock.clearTimeout(e.timer);
    e.timer = null;
    e.abort?.abort(new DOMException("health checker stopped", "AbortError"));
    const i = this.#queue.indexOf(e);
    if (i >= 0) this.#queue.splice(i, 1);
    if (this.#entries.get(e.tag) === e) this.#entries.delete(e.tag);
  }

  #setState(e: Entry, state: "up" | "down", err: string | null, why: string): void {
    if (err !== null) e.lastError = err;
    if (e.state === state) return;
    const was = e.state;
    e.state = state;
    e.since = this.#clock.now();
    if (state === "down") {
      this.#log.warn("outbound down", { outbound: e.tag, why, error: e.lastError ?? undefined });
      e.trial = false;
      // Passive outbounds only probe while down; active ones re-probe sooner.
      if (e.spec.mode === "passive" || e.timer !== null) this.#schedule(e, this.#retryDelay(e));
    } else {
      if (was === "down") this.#log.info("outbound up", { outbound: e.tag, why });
      this.#resetStreak(e);
      e.trial = false;
      if (e.spec.mode === "passive" && e.timer !== null) {
        this.#clock.clearTimeout(e.timer);
        e.timer = null;
      }
    }
  }

  #resetStreak(e: Entry): void {
    e.streak = 0;
    e.streakHosts.clear();
  }

  #jitter(ms: number): number {
    return Math.max(1, ms * (1 - JITTER + 2 * JITTER * this.#random()));
  }

  #retryDelay(e: Entry): number {
    return this.#jitter(Math.min(e.spec.intervalMs, this.#downRetryMs));
  }

  #schedule(e: Entry, ms: number): void {
    if (e.removed || this.#closed) return;
    if (e.timer !== null) this.#clock.clearTimeout(e.timer);
    e.timer = this.#clock.setTimeout(() => {
      e.timer = null;
      this.#due(e);
    }, ms);
  }

  /** A scheduled check is due. */
  #due(e: Entry): void {
    if (e.removed) return;
    if (e.spec.mode === "passive") {
      if (e.state !== "down") return;
      e.trial = true; // one real flow may try
      if (e.spec.probe && e.lastFailed) this.#request(e);
      else this.#schedule(e, this.#retryDelay(e));
      return;
    }
    this.#request(e);
  }

  /** A failing flow asks for a probe now (rate-limited). */
  #kick(e: Entry): void {
    const now = this.#clock.now();
    if (e.running || e.queued || now - e.lastKick < this.#kickGapMs) return;
    e.lastKick = now;
    if (e.timer !== null) {
      this.#clock.clearTimeout(e.timer);
      e.timer = null;
    }
    this.#request(e);
  }

  #request(e: Entry): void {
    if (e.removed || e.running || e.queued) return;
    if (this.#running >= this.#max) {
      e.queued = true;
      this.#queue.push(e);
      return;
    }
    void this.#run(e);
  }

  async #run(e: Entry): Promise<void> {
    e.running = true;
    this.#running++;
    const ac = new AbortController();
    e.abort = ac;
    const ms = e.spec.timeoutMs;
    const timeout = Promise.withResolvers<never>();
    const timer = this.#clock.setTimeout(() => {
      const err = new Error(`health check timed out after ${ms} ms`);
      err.name = "TimeoutError";
      ac.abort(err);
      timeout.reject(err);
    }, ms);
    let error: unknown = null;
    try {
      const p = Promise.resolve().then(() =>
        e.spec.probe!({ signal: ac.signal, lastFailed: e.lastFailed })
      );
      p.catch(() => {}); // a late rejection after the timeout is irrelevant
      await Promise.race([p, timeout.promise]);
    } catch (err) {
      error = err ?? new Error("health check failed");
    } finally {
      this.#clock.clearTimeout(timer);
      e.running = false;
      e.abort = null;
      this.#running--;
    }
    if (!e.removed && !this.#closed) this.#result(e, error);
    this.#next();
  }

  #result(e: Entry, error: unknown): void {
    e.checks++;
    e.lastCheck = this.#clock.now();
    if (e.spec.mode === "passive") {
      // A re-dial refused by the far host still proves the path works.
      let verdict: DialVerdict = "up";
      if (error !== null) {
        try {
          verdict = e.spec.classify(error);
        } catch {
          verdict = "down";
        }
        if (error instanceof Error && error.name === "TimeoutError") verdict = "down";
      }
      if (verdict === "down") {
        e.checkFailures++;
        e.lastError = message(error);
        this.#schedule(e, this.#retryDelay(e));
      } else if (verdict === "up") this.#setState(e, "up", null, "re-dial got through");
      else this.#schedule(e, this.#retryDelay(e));
      return;
    }
    if (error === null) {
      this.#setState(e, "up", null, "health check passed");
    } else {
      e.checkFailures++;
      this.#setState(e, "down", message(error), "health check failed");
    }
    this.#schedule(
      e,
      e.state === "down" ? this.#retryDelay(e) : this.#jitter(e.spec.intervalMs),
    );
  }

  #next(): void {
    while (this.#running < this.#max && this.#queue.length > 0) {
      const e = this.#queue.shift()!;
      e.queued = false;
      if (!e.removed) void this.#run(e);
    }
  }
}
