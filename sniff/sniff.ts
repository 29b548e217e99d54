/**
 * The TCP sniff loop: peeks at a stream's first bytes until TLS or HTTP
 * recognises them, a byte or time bound is hit, or the stream ends.
 *
 * @module
 */

import { sniffHttp } from "./http.ts";
import { NEED_MORE, NOT_THIS, type SniffResult } from "./result.ts";
import { sniffTls } from "./tls.ts";

/** Something whose buffered bytes can be looked at without consuming them. */
export interface PeekSource {
  /**
   * Resolves with ALL bytes currently buffered once more have arrived than
   * the previous call returned (the first call: once any have), or null at
   * end of stream. A call abandoned by a timeout must not lose data.
   */
  peek(): Promise<Uint8Array | null>;
  /**
   * The bytes buffered right now, without waiting (null when none or at end
   * of stream). Asked once when the time is up, so bytes that arrived just
   * as the timer fired (a stalled process sees both at once) still count.
   */
  peekNow?(): Uint8Array | null;
}

/** Timer functions, injectable for tests. */
export interface SniffClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
}

/** Options of {@linkcode sniffStream}. */
export interface SniffStreamOptions {
  /** Bytes looked at, at most; more buffered bytes are ignored. */
  maxBytes: number;
  /** Time waited for bytes, in ms, from the call. */
  timeoutMs: number;
  /** Aborting ends the wait with `need_more`. */
  signal?: AbortSignal;
  /** Clock and timers; the real ones by default. */
  clock?: SniffClock;
}

/** Result of {@linkcode sniffStream}: a sniff result and the time it took. */
export type StreamSniffResult = SniffResult & { waitedMs: number };

const realClock: SniffClock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id as number),
};

/** Runs the TLS and HTTP sniffers over the same bytes. */
export function sniffTcpBytes(data: Uint8Array): SniffResult {
  const tls = sniffTls(data);
  if (tls.status === "found") return tls;
  const http = sniffHttp(data);
  if (http.status === "found") return http;
  return tls.status === "not_this" && http.status === "not_this" ? NOT_THIS : NEED_MORE;
}

/**
 * Peeks at `source` until the TLS or HTTP sniffer says `found`, both say
 * `not_this`, or the stream ends, `maxBytes` are buffered, the time is up or
 * `signal` aborts — these last four give `need_more`. Anything but `found`
 * means "no server name": the caller connects by address, so a client that
 * waits for the server to speak first (SSH, SMTP) is connected after
 * `timeoutMs`. Rejects only when `peek()` rejects.
 */
export async function sniffStream(
  source: PeekSource,
  opts: SniffStreamOptions,
): Promise<StreamSniffResult> {
  const clock = opts.clock ?? realClock;
  const start = clock.now();
  const done = (r: SniffResult): StreamSniffResult => ({ ...r, waitedMs: clock.now() - start });
  if (opts.signal?.aborted) return done(NEED_MORE);

  let timer: unknown;
  let onAbort: (() => void) | undefined;
  const stop = new Promise<"stop">((resolve) => {
    timer = clock.setTimeout(() => resolve("stop"), Math.max(0, opts.timeoutMs));
    onAbort = () => resolve("stop");
    opts.signal?.addEventListener("abort", onAbort, { once: true });
  });
  try {
    let lastLength = -1;
    let stalls = 0;
    for (;;) {
      const peeked = source.peek();
      // If the timer wins, a late rejection of this peek must not go unhandled.
      peeked.catch(() => {});
      const data = await Promise.race([peeked, stop]);
      if (data === "stop") {
        // Time is up (or aborted): one last look at what is already there.
        const now = opts.signal?.aborted ? null : source.peekNow?.();
        if (!now || now.length <= lastLength) return done(NEED_MORE);
        const r = sniffTcpBytes(now.length > opts.maxBytes ? now.subarray(0, opts.maxBytes) : now);
        return done(r.status === "found" ? r : NEED_MORE);
      }
      if (data === null) return done(NEED_MORE);
      const view = data.length > opts.maxBytes ? data.subarray(0, opts.maxBytes) : data;
      // A source that returns without growth would spin the loop and starve
      // the timer: give up after a second such call.
      if (view.length <= lastLength && ++stalls >= 2) return done(NEED_MORE);
      lastLength = Math.max(lastLength, view.length);
      const r = sniffTcpBytes(view);
      if (r.status !== "need_more") return done(r);
      if (view.length >= opts.maxBytes) return done(NEED_MORE);
    }
  } finally {
    clock.clearTimeout(timer);
    if (onAbort) opts.signal?.removeEventListener("abort", onAbort);
  }
}
