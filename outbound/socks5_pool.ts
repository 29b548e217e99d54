/**
 * A bounded pool of pre-warmed SOCKS5 connections: TCP connected and past
 * the greeting/auth phase, so a flow only sends CONNECT. Each connection
 * serves one flow and is replaced in the background. Idle connections that
 * died (EOF/RST seen by a non-blocking peek) or grew older than `maxIdleMs`
 * are discarded. When opening fails the pool turns `down`, retries with
 * capped exponential back-off, and new flows fail fast until a retry works.
 *
 * Why `maxIdleMs`: servers bound the whole handshake, not just the greeting
 * (Xray's socks inbound: policy `handshake`, 4 s by default; dante:
 * `timeout.negotiate`, 30 s), so a warmed connection must be used or
 * recycled before that.
 *
 * @module
 */

import type { Logger } from "../core/log.ts";
import { nullLogger } from "../core/log.ts";

/** Pool health as the IPC `outbounds.list` shows it. */
export type PoolState = "up" | "down";

/** A connection the pool can hold. */
export interface PoolConn {
  close(): void;
}

/** Options of {@linkcode Socks5Pool}. */
export interface Socks5PoolOptions<S extends PoolConn> {
  /** Warm connections to keep (1..256). */
  readonly size: number;
  /** Opens one connection and runs greeting/auth; bounded by its own timeouts. */
  readonly open: () => Promise<S>;
  /** Non-blocking liveness check of an idle connection (false on EOF, RST, or stray data). */
  readonly isAlive: (conn: S) => boolean;
  /** Idle connections older than this are recycled. Default 3000 ms. */
  readonly maxIdleMs?: number;
  /** First retry delay after a failed open. Default 100 ms. */
  readonly backoffInitialMs?: number;
  /** Retry delay cap. Default 10 000 ms. */
  readonly backoffMaxMs?: number;
  /** Monotonic clock in ms; injectable for tests. */
  readonly now?: () => number;
  readonly logger?: Logger;
}

/** Counters and state of a pool. */
export interface PoolStats {
  state: PoolState;
  idle: number;
  opening: number;
  size: number;
  lastError: string | null;
  /** Flows served by a warm connection. */
  hits: number;
  /** Flows that found the pool empty (and dialled themselves). */
  misses: number;
  /** Flows refused at once because the server is known down. */
  failFast: number;
  /** Idle connections found dead or too old. */
  discarded: number;
  opened: number;
  openFailures: number;
}

/** The pool knows the SOCKS server is down; thrown at once instead of dialling. */
export class Socks5UnavailableError extends Error {
  /** Creates the error; `cause` is the last open failure. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "Socks5UnavailableError";
  }
}

interface Idle<S> {
  conn: S;
  since: number;
}

/** See the module doc. `start()` begins warming; `close()` ends everything. */
export class Socks5Pool<S extends PoolConn> {
  readonly #opts: Required<Omit<Socks5PoolOptions<S>, "logger">>;
  readonly #log: Logger;
  #idle: Idle<S>[] = [];
  #opening = 0;
  #state: PoolState = "up";
  #lastError: Error | null = null;
  #failures = 0;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #sweepTimer: ReturnType<typeof setInterval> | undefined;
  #closed = false;
  #started = false;
  #stats = { hits: 0, misses: 0, failFast: 0, discarded: 0, opened: 0, openFailures: 0 };

  /** Validates options; does no I/O until {@linkcode start}. */
  constructor(opts: Socks5PoolOptions<S>) {
    if (!Number.isInteger(opts.size) || opts.size < 1 || opts.size > 256) {
      throw new RangeError(`pool.size: ${opts.size}: want 1..256`);
    }
    const maxIdleMs = opts.maxIdleMs ?? 3000;
    if (!(maxIdleMs >= 100)) throw new RangeError(`pool.max_idle: ${maxIdleMs} ms: want >= 100`);
    this.#opts = {
      size: opts.size,
      open: opts.open,
      isAlive: opts.isAlive,
      maxIdleMs,
      backoffInitialMs: opts.backoffInitialMs ?? 100,
      backoffMaxMs: opts.backoffMaxMs ?? 10_000,
      now: opts.now ?? (() => performance.now()),
    };
    this.#log = opts.logger ?? nullLogger;
  }

  /** Current state. */
  get state(): PoolState {
    return this.#state;
  }

  /** Starts warming connections and the idle sweep. */
  start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    const every = Math.max(50, Math.floor(this.#opts.maxIdleMs / 2));
    const sweep = setInterval(() => this.#sweep(), every);
    Deno.unrefTimer(sweep);
    this.#sweepTimer = sweep;
    this.#fill();
  }

  /**
   * Takes a warm connection for one flow. Returns null when none is idle
   * (the caller dials itself); throws {@linkcode Socks5UnavailableError}
   * when the server is known down.
   */
  acquire(): S | null {
    if (this.#closed) throw new Socks5UnavailableError("SOCKS5 pool is closed");
    const now = this.#opts.now();
    let got: S | null = null;
    while (this.#idle.length > 0) {
      // Oldest first, so every warm connection is used before it ages out.
      const item = this.#idle.shift()!;
      if (now - item.since > this.#opts.maxIdleMs || !this.#isAlive(item.conn)) {
        this.#discard(item.conn);
        continue;
      }
      got = item.conn;
      break;
    }
    if (got) this.#stats.hits++;
    else if (this.#state === "down") {
      this.#stats.failFast++;
      this.#fill();
      throw new Socks5UnavailableError(
        `SOCKS5 server down: ${this.#lastError?.message ?? "unknown error"}`,
        { cause: this.#lastError },
      );
    } else this.#stats.misses++;
    this.#fill();
    return got;
  }

  /** A flow's own dial failed to reach the server: count it like a failed open. */
  reportFailure(err: Error): void {
    if (this.#closed) return;
    this.#markDown(err);
  }

  /** A flow's own dial reached the server: the server is up. */
  reportSuccess(): void {
    if (this.#closed) return;
    this.#markUp();
    this.#fill();
  }

  /** Counters and state. */
  stats(): PoolStats {
    return {
      state: this.#state,
      idle: this.#idle.length,
      opening: this.#opening,
      size: this.#opts.size,
      lastError: this.#lastError?.message ?? null,
      ...this.#stats,
    };
  }

  /** Closes every idle connection and stops warming; later opens are closed on arrival. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#sweepTimer);
    clearTimeout(this.#retryTimer);
    for (const item of this.#idle) item.conn.close();
    this.#idle = [];
  }

  #isAlive(conn: S): boolean {
    try {
      return this.#opts.isAlive(conn);
    } catch {
      return false;
    }
  }

  #discard(conn: S): void {
    this.#stats.discarded++;
    try {
      conn.close();
    } catch { /* already gone */ }
  }

  #sweep(): void {
    if (this.#closed) return;
    const now = this.#opts.now();
    const keep: Idle<S>[] = [];
    for (const item of this.#idle) {
      if (now - item.since > this.#opts.maxIdleMs || !this.#isAlive(item.conn)) {
        this.#discard(item.conn);
      } else keep.push(item);
    }
    this.#idle = keep;
    this.#fill();
  }

  #markDown(err: Error): void {
    this.#lastError = err;
    this.#failures++;
    if (this.#state !== "down") {
      this.#log.warn("SOCKS5 server down", { error: err.message });
      this.#state = "down";
    }
  }

  #markUp(): void {
    this.#failures = 0;
    if (this.#state !== "up") {
      this.#log.info("SOCKS5 server up");
      this.#state = "up";
    }
  }

  #fill(): void {
    if (this.#closed || !this.#started) return;
    if (this.#state === "down") {
      // One probe at a time, after the back-off delay.
      if (this.#opening > 0 || this.#retryTimer !== undefined) return;
      const delay = Math.min(
        this.#opts.backoffMaxMs,
        this.#opts.backoffInitialMs * 2 ** Math.min(30, Math.max(0, this.#failures - 1)),
      );
      this.#retryTimer = setTimeout(() => {
        this.#retryTimer = undefined;
        if (!this.#closed && this.#opening === 0) this.#openOne();
      }, delay);
      return;
    }
    while (this.#idle.length + this.#opening < this.#opts.size) this.#openOne();
  }

  #openOne(): void {
    this.#opening++;
    this.#opts.open().then(
      (conn) => {
        this.#opening--;
        if (this.#closed) {
          conn.close();
          return;
        }
        this.#stats.opened++;
        this.#markUp();
        if (this.#idle.length >= this.#opts.size) conn.close();
        else this.#idle.push({ conn, since: this.#opts.now() });
        this.#fill();
      },
      (err: unknown) => {
        this.#opening--;
        if (this.#closed) return;
        this.#stats.openFailures++;
        this.#markDown(err instanceof Error ? err : new Error(String(err)));
        this.#fill();
      },
    );
  }
}
