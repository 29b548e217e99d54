/**
 * {@linkcode FdStream}: a non-blocking TCP socket fd driven by the reactor,
 * and {@linkcode connectTcp}, a non-blocking connect with mark, interface,
 * source address, TOS, timeout and abort signal.
 *
 * @module
 */

import type { Endpoint } from "../core/types.ts";
import { formatEndpoint } from "../core/ip.ts";
import { ClosedError, Errno, ErrnoError, TimeoutError } from "./errno.ts";
import { defaultReactor, type Reactor } from "./reactor.ts";
import { defaultTimerQueues, type TimeoutHandle, type TimerQueues } from "./timer_queues.ts";
import { familyOf } from "./sockaddr.ts";
import {
  applySocketOptions,
  bind,
  close as closeFd,
  connect,
  getpeername,
  getsockname,
  getsockoptInt,
  IP_BIND_ADDRESS_NO_PORT,
  MSG_PEEK,
  recv,
  send,
  setLingerZero,
  setsockoptInt,
  SHUT_WR,
  shutdown,
  SO_ERROR,
  SOCK_STREAM,
  socket,
  type SocketOptions,
  SOL_IP,
  SOL_SOCKET,
  SOL_TCP,
  TCP_NODELAY,
  WOULD_BLOCK,
} from "./socket.ts";

/** Options of {@linkcode FdStream}. */
export interface FdStreamOptions {
  /** Reactor to register with (default: {@linkcode defaultReactor}). */
  reactor?: Reactor;
}

/**
 * A connected, non-blocking TCP socket. Owns its fd: registers it with the
 * reactor on construction, unregisters and closes it in {@linkcode close}.
 * At most one read-side and one write-side operation may be pending at a
 * time (as with any stream).
 */
export class FdStream {
  /** The socket fd (-1 after close). */
  #fd: number;
  readonly #reactor: Reactor;
  #writeShut = false;

  /** Adopts `fd` (already non-blocking) and registers it. */
  constructor(fd: number, opts: FdStreamOptions = {}) {
    this.#fd = fd;
    this.#reactor = opts.reactor ?? defaultReactor();
    this.#reactor.register(fd);
  }

  /** The fd, or -1 once closed. */
  get fd(): number {
    return this.#fd;
  }

  /** The reactor this stream is registered with. */
  get reactor(): Reactor {
    return this.#reactor;
  }

  /** True after {@linkcode close} / {@linkcode resetAndClose}. */
  get closed(): boolean {
    return this.#fd < 0;
  }

  #live(op: string): number {
    if (this.#fd < 0) throw new ClosedError(`Cannot ${op}: stream is closed`);
    return this.#fd;
  }

  /**
   * Reads into `buf`: resolves with the byte count, 0 at EOF. Throws
   * `ErrnoError` (e.g. ECONNRESET) or `ClosedError` if closed meanwhile.
   */
  async read(buf: Uint8Array): Promise<number> {
    for (;;) {
      const n = recv(this.#live("read"), buf);
      if (n !== WOULD_BLOCK) return n;
      await this.#reactor.readable(this.#fd);
    }
  }

  /** Non-blocking read: bytes, 0 at EOF, or `WOULD_BLOCK` (-1). */
  tryRead(buf: Uint8Array): number {
    return recv(this.#live("read"), buf);
  }

  /**
   * Copies the bytes waiting in the receive queue into `buf` without
   * consuming them (MSG_PEEK). Waits until at least one byte or EOF is
   * there; 0 means EOF. For sniffers: call again after
   * {@linkcode waitReadable} to see more.
   */
  async peek(buf: Uint8Array): Promise<number> {
    for (;;) {
      const n = recv(this.#live("peek"), buf, MSG_PEEK);
      if (n !== WOULD_BLOCK) return n;
      await this.#reactor.readable(this.#fd);
    }
  }

  /** Non-blocking peek: bytes, 0 at EOF, or `WOULD_BLOCK` (-1). */
  tryPeek(buf: Uint8Array): number {
    return recv(this.#live("peek"), buf, MSG_PEEK);
  }

  /**
   * Waits for the next readability edge (new data, EOF or error) after the
   * last one consumed. Resolves true on readiness, false after `timeoutMs`.
   * May resolve true spuriously: re-check with a (peek) read.
   */
  async waitReadable(timeoutMs?: number): Promise<boolean> {
    const fd = this.#live("wait");
    if (timeoutMs === undefined) {
      await this.#reactor.readable(fd);
      return true;
    }
    const timeout = new TimeoutError(`no data within ${timeoutMs} ms`);
    const timer = setTimeout(() => this.#reactor.cancel(fd, "read", timeout), timeoutMs);
    try {
      await this.#reactor.readable(fd);
      return true;
    } catch (e) {
      if (e === timeout) return false;
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Waits until the socket is writable again. */
  waitWritable(): Promise<void> {
    return this.#reactor.writable(this.#live("wait"));
  }

  /** Non-blocking write: bytes written or `WOULD_BLOCK` (-1). Throws on EPIPE etc. */
  tryWrite(buf: Uint8Array): number {
    return send(this.#live("write"), buf);
  }

  /** Writes all of `buf`, waiting for writability as needed. */
  async writeAll(buf: Uint8Array): Promise<void> {
    let off = 0;
    while (off < buf.length) {
      const n = send(this.#live("write"), off === 0 ? buf : buf.subarray(off));
      if (n === WOULD_BLOCK) await this.#reactor.writable(this.#fd);
      else off += n;
    }
  }

  /** Sends FIN (shutdown(SHUT_WR)); idempotent; the read side keeps working. */
  shutdownWrite(): void {
    if (this.#fd < 0 || this.#writeShut) return;
    this.#writeShut = true;
    shutdown(this.#fd, SHUT_WR);
  }

  /** Unregisters and closes the fd. Idempotent; pending waits reject with `ClosedError`. */
  close(): void {
    const fd = this.#fd;
    if (fd < 0) return;
    this.#fd = -1;
    this.#reactor.unregister(fd);
    closeFd(fd);
  }

  /** Closes with `SO_LINGER {1, 0}` so the peer gets a RST instead of a FIN. Idempotent. */
  resetAndClose(): void {
    if (this.#fd < 0) return;
    try {
      setLingerZero(this.#fd);
    } catch {
      // The socket may already be dead; close it anyway.
    }
    this.close();
  }

  /** getsockname(): for a TPROXY-accepted socket, the original destination. */
  localAddress(): Endpoint {
    return getsockname(this.#live("getsockname"));
  }

  /** getpeername(). */
  remoteAddress(): Endpoint {
    return getpeername(this.#live("getpeername"));
  }

  /** Sets TCP_NODELAY. */
  setNoDelay(on = true): void {
    setsockoptInt(this.#live("setsockopt"), SOL_TCP, TCP_NODELAY, on ? 1 : 0);
  }
}

/** Options of {@linkcode connectTcp}. */
export interface ConnectOptions {
  /** `SO_MARK` of the socket (0 or absent: none). */
  mark?: number;
  /** `SO_BINDTODEVICE` interface. */
  bindInterface?: string;
  /** Source address (4 bytes for an IPv4 destination, 16 for IPv6); port chosen at connect. */
  bindAddress?: Uint8Array;
  /** `IP_TOS` / `IPV6_TCLASS` byte. */
  tos?: number;
  /** Give up after this long with a `TimeoutError`. */
  timeoutMs: number;
  /** Abort the connect; rejects with `signal.reason`. */
  signal?: AbortSignal;
  /** Reactor (default: {@linkcode defaultReactor}). */
  reactor?: Reactor;
  /** Timer queues for the connect timeout (default: the isolate's shared ones). */
  timers?: TimerQueues;
  /** `TCP_NODELAY` (default true: a relay must not add Nagle delays of its own). */
  noDelay?: boolean;
}

/**
 * Opens a TCP connection without blocking: socket options, optional bind,
 * connect (EINPROGRESS → wait writable → `SO_ERROR`). Rejects with
 * `ErrnoError` (e.g. ECONNREFUSED, ENETUNREACH), a `TimeoutError` after
 * `timeoutMs`, or the signal's reason. The socket never leaks on failure.
 */
export async function connectTcp(dst: Endpoint, opts: ConnectOptions): Promise<FdStream> {
  opts.signal?.throwIfAborted();
  const family = familyOf(dst.addr);
  const reactor = opts.reactor ?? defaultReactor();
  const fd = socket(family, SOCK_STREAM);
  let stream: FdStream | null = null;
  const timers = opts.timers ?? defaultTimerQueues();
  let timer: TimeoutHandle | undefined;
  let onAbort: (() => void) | undefined;
  try {
    const so: SocketOptions = {};
    if (opts.mark !== undefined) so.mark = opts.mark;
    if (opts.bindInterface !== undefined) so.bindInterface = opts.bindInterface;
    if (opts.tos !== undefined) so.tos = opts.tos;
    applySocketOptions(fd, family, so);
    if (opts.noDelay ?? true) setsockoptInt(fd, SOL_TCP, TCP_NODELAY, 1);
    if (opts.bindAddress) {
      if (opts.bindAddress.length !== dst.addr.length) {
        throw new RangeError(
          `Cannot bind ${opts.bindAddress.length}-byte source address for ${
            formatEndpoint(dst)
          }: family mismatch`,
        );
      }
      // Pick the port at connect() time so many flows can share the address.
      setsockoptInt(fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1);
      bind(fd, { addr: opts.bindAddress, port: 0 });
    }
    let done: boolean;
    try {
      done = connect(fd, dst);
    } catch (e) {
      if (e instanceof ErrnoError) throw new ErrnoError("connect", e.errno, formatEndpoint(dst));
      throw e;
    }
    stream = new FdStream(fd, { reactor });
    if (done) return stream;
    let failure: Error | null = null;
    const cancel = (e: Error) => {
      failure = e;
      reactor.cancel(fd, "write", e);
    };
    timer = timers.set(
      opts.timeoutMs,
      () =>
        cancel(
          new TimeoutError(
            `connect to ${formatEndpoint(dst)} timed out after ${opts.timeoutMs} ms`,
          ),
        ),
    );
    if (opts.signal) {
      const signal = opts.signal;
      onAbort = () => cancel(signal.reason instanceof Error ? signal.reason : new Error("aborted"));
      signal.addEventListener("abort", onAbort, { once: true });
    }
    for (;;) {
      await reactor.writable(fd);
      if (failure) throw failure;
      const err = getsockoptInt(fd, SOL_SOCKET, SO_ERROR);
      if (err !== 0) throw new ErrnoError("connect", err, formatEndpoint(dst));
      try {
        getpeername(fd);
        return stream;
      } catch (e) {
        // Spurious wake-up while still connecting: wait again.
        if (!(e instanceof ErrnoError && e.errno === Errno.ENOTCONN)) throw e;
      }
    }
  } catch (e) {
    if (stream) stream.close();
    else closeFd(fd);
    throw e;
  } finally {
    if (timer !== undefined) timers.clear(timer);
    if (onAbort) opts.signal?.removeEventListener("abort", onAbort);
  }
}
