/**
 * Relays bytes both ways between two connected {@linkcode FdStream}s until
 * both directions ended, the flow went idle, an error hit either side, or
 * the caller aborted. Bytes move with `splice(2)` through one pipe per
 * direction (zero copy, pipes from a bounded pool); where splice is not
 * possible it falls back to `recv`/`send` through a reused buffer.
 *
 * Half-close: EOF from one side becomes `shutdown(SHUT_WR)` on the other,
 * and the other direction keeps flowing. Reset: an error (ECONNRESET,
 * EPIPE, …) on either side closes both with a RST, so the peer that is
 * still there sees the failure. Both streams are closed exactly once when
 * the relay resolves.
 *
 * @module
 */

import type { FdStream } from "../ffi/stream.ts";
import { ClosedError, ErrnoError } from "../ffi/errno.ts";
import { defaultPipePool, type Pipe, type PipePool } from "../ffi/pipe_pool.ts";
import {
  recv,
  send,
  splice,
  SPLICE_F_MOVE,
  SPLICE_F_NONBLOCK,
  WOULD_BLOCK,
} from "../ffi/socket.ts";

/** Byte counters: `up` = a→b (client to remote), `down` = b→a. */
export interface RelayCounters {
  up: number;
  down: number;
}

/** Why a relay ended. */
export type RelayEndReason = "eof" | "idle" | "aborted" | "error";

/** Options of {@linkcode relay}. */
export interface RelayOptions {
  /** Close both sides when no byte moved either way for this long (ms, > 0). */
  idleTimeoutMs: number;
  /** Counters updated live as bytes are delivered (e.g. for `connections.list`). */
  counters?: RelayCounters;
  /** Aborting closes both sides (FIN) and resolves with reason `"aborted"`. */
  signal?: AbortSignal;
  /** `"splice"` (default when possible) or `"copy"` (recv/send through a buffer). */
  mode?: "splice" | "copy";
  /** Pipe pool for splice mode (default: the isolate's shared pool). */
  pipePool?: PipePool;
  /** Buffer size of copy mode (default 256 KiB). */
  copyBufferSize?: number;
  /**
   * Sees every chunk relayed b→a, before it is sent on (a view of the relay's
   * buffer: copy what you keep; it must not throw). That direction then
   * copies instead of splicing.
   */
  onDown?: (chunk: Uint8Array) => void;
}

/** What {@linkcode relay} resolves with. */
export interface RelayResult {
  /** Bytes delivered a→b. */
  up: number;
  /** Bytes delivered b→a. */
  down: number;
  /** `"eof"`: both directions ended normally. */
  reason: RelayEndReason;
  /** For reason `"error"`: which side failed and the errno code (e.g. `"ECONNRESET"`). */
  error?: { side: "a" | "b"; code: string; message: string };
}

interface FlowState {
  done: boolean;
  /** Set by every byte moved; the idle sweep clears it. */
  active: boolean;
  /** Idle-sweep ticks in a row without activity. */
  quiet: number;
  reason: RelayEndReason;
  error?: RelayResult["error"];
  onIdle: () => void;
}

/**
 * Idle detection for every relay of the isolate that shares one timeout:
 * one interval (a quarter of the timeout) walks the set and ends flows
 * quiet for four ticks in a row, i.e. idle for between 1 and 1.25 times
 * the timeout. No clock read and no timer per flow on the hot path.
 */
class IdleSweep {
  readonly #flows = new Set<FlowState>();
  readonly #tickMs: number;
  #timer: ReturnType<typeof setInterval> | null = null;

  constructor(idleTimeoutMs: number) {
    this.#tickMs = Math.max(1, Math.floor(idleTimeoutMs / 4));
  }

  add(st: FlowState): void {
    this.#flows.add(st);
    this.#timer ??= setInterval(() => this.#tick(), this.#tickMs);
  }

  delete(st: FlowState): void {
    this.#flows.delete(st);
    if (this.#flows.size === 0 && this.#timer !== null) {
      clearInterval(this.#timer);
      this.#timer = null;
    }
  }

  #tick(): void {
    for (const st of this.#flows) {
      if (st.active) {
        st.active = false;
        st.quiet = 0;
      } else if (++st.quiet >= 4) st.onIdle();
    }
  }
}

const idleSweeps = new Map<number, IdleSweep>();

function idleSweep(ms: number): IdleSweep {
  let s = idleSweeps.get(ms);
  if (!s) {
    s = new IdleSweep(ms);
    idleSweeps.set(ms, s);
  }
  return s;
}

interface Direction {
  readonly src: FdStream;
  readonly dst: FdStream;
  readonly key: "up" | "down";
  readonly srcSide: "a" | "b";
  /** Bytes sitting in the pipe (splice mode). */
  inPipe: number;
  /** Whether the last syscall read from src ("in") or wrote to dst ("out"). */
  phase: "in" | "out";
  pipe: Pipe | null;
}

const SPLICE_FLAGS = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;

/**
 * Relays between `a` (the accepted client) and `b` (the dialled remote).
 * Never rejects: failures end up in `reason`/`error`.
 */
export async function relay(
  a: FdStream,
  b: FdStream,
  opts: RelayOptions,
): Promise<RelayResult> {
  if (!(opts.idleTimeoutMs > 0)) {
    throw new RangeError(`Cannot relay: idleTimeoutMs ${opts.idleTimeoutMs} must be > 0`);
  }
  const counters = opts.counters ?? { up: 0, down: 0 };
  // active: true, so a flow gets at least the full timeout before its first quiet tick.
  const st: FlowState = {
    done: false,
    active: true,
    quiet: 0,
    reason: "eof",
    onIdle: () => finish("idle"),
  };
  const pool = opts.pipePool ?? defaultPipePool();
  const up: Direction = {
    src: a,
    dst: b,
    key: "up",
    srcSide: "a",
    inPipe: 0,
    pipe: null,
    phase: "in",
  };
  const down: Direction = {
    src: b,
    dst: a,
    key: "down",
    srcSide: "b",
    inPipe: 0,
    pipe: null,
    phase: "in",
  };

  const finish = (reason: RelayEndReason, error?: RelayResult["error"]) => {
    if (st.done) return;
    st.done = true;
    st.reason = reason;
    if (error) st.error = error;
    if (reason === "error") {
      a.resetAndClose();
      b.resetAndClose();
    } else {
      a.close();
      b.close();
    }
  };

  const sweep = idleSweep(opts.idleTimeoutMs);
  sweep.add(st);

  const onAbort = () => finish("aborted");
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  if (opts.signal?.aborted) finish("aborted");

  const run = async (d: Direction) => {
    try {
      const observe = d.key === "down" ? opts.onDown : undefined;
      if (opts.mode === "copy" || observe) {
        await pumpCopy(d, st, counters, opts.copyBufferSize ?? 1 << 18, observe);
      } else await pumpSplice(d, st, counters, pool);
    } catch (e) {
      if (st.done) return;
      if (e instanceof ErrnoError) {
        const side = d.phase === "out" ? (d.srcSide === "a" ? "b" : "a") : d.srcSide;
        finish("error", { side, code: e.code, message: e.message });
      } else if (e instanceof ClosedError) {
        finish("aborted");
      } else {
        const message = e instanceof Error ? e.message : String(e);
        finish("error", { side: d.srcSide, code: "EUNKNOWN", message });
      }
    }
  };

  try {
    await Promise.all([run(up), run(down)]);
  } finally {
    sweep.delete(st);
    opts.signal?.removeEventListener("abort", onAbort);
    finish("eof");
    for (const d of [up, down]) {
      if (d.pipe) pool.give(d.pipe, d.inPipe === 0);
      d.pipe = null;
    }
  }
  const result: RelayResult = { up: counters.up, down: counters.down, reason: st.reason };
  if (st.error) result.error = st.error;
  return result;
}

async function pumpSplice(
  d: Direction,
  st: FlowState,
  counters: RelayCounters,
  pool: PipePool,
): Promise<void> {
  const { src, dst } = d;
  let eof = false;
  for (;;) {
    if (st.done) return;
    // The pipe is held only while bytes are in flight: an idle flow holds
    // none (two fds less per direction), and the pool hands it back out.
    const pipe = d.pipe ??= pool.take();
    // Keep draining the source while the pipe has room, so the sender is
    // not stalled while the destination is slow.
    let srcBlocked = false;
    if (!eof && d.inPipe < pipe.size) {
      d.phase = "in";
      const n = splice(src.fd, pipe.w, pipe.size - d.inPipe, SPLICE_FLAGS);
      if (n === WOULD_BLOCK) srcBlocked = true;
      else if (n === 0) eof = true;
      else {
        d.inPipe += n;
        st.active = true;
      }
    }
    let dstBlocked = false;
    if (d.inPipe > 0) {
      d.phase = "out";
      const m = splice(pipe.r, dst.fd, d.inPipe, SPLICE_FLAGS);
      if (m === WOULD_BLOCK) dstBlocked = true;
      else {
        d.inPipe -= m;
        counters[d.key] += m;
        st.active = true;
      }
    }
    if (eof && d.inPipe === 0) {
      dst.shutdownWrite();
      return;
    }
    // With an empty pipe, EAGAIN from the source can only mean "no data".
    if (d.inPipe === 0 && srcBlocked) {
      pool.give(pipe, true);
      d.pipe = null;
      await src.reactor.readable(src.fd);
    } else if (dstBlocked && (srcBlocked || eof || d.inPipe >= pipe.size)) {
      await dst.reactor.writable(dst.fd);
    }
  }
}

async function pumpCopy(
  d: Direction,
  st: FlowState,
  counters: RelayCounters,
  bufSize: number,
  observe?: (chunk: Uint8Array) => void,
): Promise<void> {
  const { src, dst } = d;
  const reactor = src.reactor;
  const buf = new Uint8Array(bufSize);
  for (;;) {
    if (st.done) return;
    d.phase = "in";
    const n = recv(src.fd, buf);
    if (n === WOULD_BLOCK) {
      await reactor.readable(src.fd);
      continue;
    }
    if (n === 0) {
      dst.shutdownWrite();
      return;
    }
    st.active = true;
    observe?.(buf.subarray(0, n));
    let off = 0;
    while (off < n) {
      if (st.done) return;
      d.phase = "out";
      const m = send(dst.fd, off === 0 && n === buf.length ? buf : buf.subarray(off, n));
      if (m === WOULD_BLOCK) {
        await dst.reactor.writable(dst.fd);
        continue;
      }
      off += m;
      counters[d.key] += m;
      st.active = true;
    }
  }
}
