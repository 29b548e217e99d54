/**
 * The TCP inbound: a listener for nftables `tproxy` (original destination =
 * the accepted socket's local address, thanks to `IP_TRANSPARENT`) or
 * `redirect` (original destination from `SO_ORIGINAL_DST` /
 * `IP6T_SO_ORIGINAL_DST`). Accepted connections come out of an async
 * iterator as {@linkcode AcceptedConn}.
 *
 * `listen: "::"` opens one dual-stack AF_INET6 socket (`IPV6_V6ONLY` = 0):
 * nft `tproxy ip to 127.0.0.1:PORT` finds it for IPv4 flows too, because the
 * kernel's IPv4 listener lookup matches a v6 socket bound to `::` that is not
 * v6-only, and `IPV6_TRANSPARENT` sets the same transparent bit that the
 * tproxy lookup checks (see docs/ffi.md).
 *
 * The accept loop survives EMFILE/ENFILE/ENOBUFS/ENOMEM: it logs a warning,
 * backs off (doubling, bounded by `maxBackoffMs`) and keeps serving.
 *
 * @module
 */

import type { Endpoint } from "../core/types.ts";
import { formatEndpoint, parseIp } from "../core/ip.ts";
import { type Logger, nullLogger } from "../core/log.ts";
import { ClosedError, Errno, ErrnoError } from "../ffi/errno.ts";
import { defaultReactor, type Reactor } from "../ffi/reactor.ts";
import { decodeOriginalDst, familyOf, SOCKADDR_IN6_LEN, SOCKADDR_IN_LEN } from "../ffi/sockaddr.ts";
import {
  accept,
  AF_INET6,
  bind,
  close as closeFd,
  getpeername,
  getsockname,
  getsockoptBytes,
  getsockoptInt,
  IP6T_SO_ORIGINAL_DST,
  IP_TRANSPARENT,
  IPV6_TRANSPARENT,
  IPV6_V6ONLY,
  listen,
  setsockoptInt,
  SO_MARK,
  SO_ORIGINAL_DST,
  SO_REUSEADDR,
  SO_REUSEPORT,
  SOCK_STREAM,
  socket,
  SOL_IP,
  SOL_IPV6,
  SOL_SOCKET,
  SOL_TCP,
  TCP_NODELAY,
  WOULD_BLOCK,
} from "../ffi/socket.ts";
import { FdStream } from "../ffi/stream.ts";

/** How the original destination reaches us. */
export type TcpListenMode = "tproxy" | "redirect";

/** Options of {@linkcode TcpListener.open}. */
export interface TcpListenerOptions {
  mode: TcpListenMode;
  /** Listen address: `"::"` (both families), `"0.0.0.0"`, or one address. */
  listen: string;
  /** Listen port; 0 picks one (read it back from {@linkcode TcpListener.addresses}). */
  port: number;
  /** listen() backlog (default 1024). */
  backlog?: number;
  /** Set `SO_REUSEPORT` (one listener per isolate/worker). */
  reusePort?: boolean;
  /** Accepted connections queued before the accept loop pauses (default 128). */
  maxQueued?: number;
  /** Upper bound of the back-off after EMFILE & co. (default 1000 ms). */
  maxBackoffMs?: number;
  logger?: Logger;
  reactor?: Reactor;
}

/** One accepted client connection. */
export interface AcceptedConn {
  /** The client socket (owned by the receiver: relay or close it). */
  readonly stream: FdStream;
  /** The client's address. */
  readonly source: Endpoint;
  /** Where the client wanted to go (IPv4-mapped addresses normalised to 4 bytes). */
  readonly destination: Endpoint;
  /**
   * SO_MARK of the accepted socket, raw: the SYN's mark (the box's bits |
   * our TPROXY bit) when `net.ipv4.tcp_fwmark_accept=1`, else 0. Rules want
   * `markForRules(mark)` (inbound/flow_marks.ts).
   */
  readonly mark: number;
}

/**
 * The getsockopt to read the pre-NAT destination in redirect mode: an IPv4
 * client (also one on a dual-stack socket) → `SOL_IP`/`SO_ORIGINAL_DST`
 * (a sockaddr_in), an IPv6 client → `SOL_IPV6`/`IP6T_SO_ORIGINAL_DST` (a
 * sockaddr_in6).
 */
export function originalDstQuery(source: Endpoint): { level: number; opt: number; len: number } {
  return source.addr.length === 4
    ? { level: SOL_IP, opt: SO_ORIGINAL_DST, len: SOCKADDR_IN_LEN }
    : { level: SOL_IPV6, opt: IP6T_SO_ORIGINAL_DST, len: SOCKADDR_IN6_LEN };
}

/** Errors of accept4 that mean "out of resources": back off, keep serving. */
const RESOURCE_ERRNOS: ReadonlySet<number> = new Set([
  Errno.EMFILE,
  Errno.ENFILE,
  Errno.ENOBUFS,
  Errno.ENOMEM,
]);

/** A TPROXY / REDIRECT TCP listener. Iterate it to receive connections. */
export class TcpListener implements AsyncIterable<AcceptedConn> {
  readonly #fds: number[];
  readonly #addresses: Endpoint[];
  readonly #mode: TcpListenMode;
  readonly #reactor: Reactor;
  readonly #log: Logger;
  readonly #maxQueued: number;
  readonly #maxBackoffMs: number;
  readonly #queue: AcceptedConn[] = [];
  #takers: ((c: AcceptedConn | null) => void)[] = [];
  #spaceWaiters: (() => void)[] = [];
  #closed = false;
  readonly #sleeps = new Set<() => void>();
  readonly #loops: Promise<void>[] = [];
  #accepted = 0;
  #resourceErrors = 0;

  private constructor(fds: number[], opts: TcpListenerOptions) {
    this.#fds = fds;
    this.#mode = opts.mode;
    this.#reactor = opts.reactor ?? defaultReactor();
    this.#log = opts.logger ?? nullLogger;
    this.#maxQueued = opts.maxQueued ?? 128;
    this.#maxBackoffMs = opts.maxBackoffMs ?? 1000;
    this.#addresses = fds.map((fd) => getsockname(fd));
    for (const fd of fds) this.#reactor.register(fd);
    for (const fd of fds) this.#loops.push(this.#acceptLoop(fd));
  }

  /**
   * Opens, binds and listens. Throws `RangeError` for a bad address or
   * port, `ErrnoError` for a failing socket call (EADDRINUSE, EPERM without
   * CAP_NET_ADMIN for IP_TRANSPARENT, …).
   */
  static open(opts: TcpListenerOptions): TcpListener {
    const addr = parseIp(opts.listen);
    if (!addr) throw new RangeError(`listen: "${opts.listen}": not an IP address`);
    if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
      throw new RangeError(`listen_port: ${opts.port}: expected 0..65535`);
    }
    if (opts.mode !== "tproxy" && opts.mode !== "redirect") {
      throw new RangeError(`mode: "${opts.mode}": expected "tproxy" or "redirect"`);
    }
    const family = familyOf(addr);
    const fd = socket(family, SOCK_STREAM);
    try {
      setsockoptInt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
      if (opts.reusePort) setsockoptInt(fd, SOL_SOCKET, SO_REUSEPORT, 1);
      if (family === AF_INET6) {
        // "::" serves both families from one socket (v4 peers appear as
        // ::ffff:a.b.c.d and are normalised on accept).
        setsockoptInt(fd, SOL_IPV6, IPV6_V6ONLY, 0);
      }
      if (opts.mode === "tproxy") {
        // IP_TRANSPARENT / IPV6_TRANSPARENT must be set BEFORE bind(): it lets
        // the socket accept connections addressed to any (non-local) address,
        // and nft tproxy only hands flows to transparent sockets.
        if (family === AF_INET6) setsockoptInt(fd, SOL_IPV6, IPV6_TRANSPARENT, 1);
        else setsockoptInt(fd, SOL_IP, IP_TRANSPARENT, 1);
      }
      // Accepted sockets inherit TCP_NODELAY from the listener: a relay must
      // not add Nagle delays of its own to small writes, and this costs no
      // syscall per flow.
      setsockoptInt(fd, SOL_TCP, TCP_NODELAY, 1);
      bind(fd, { addr, port: opts.port });
      listen(fd, opts.backlog ?? 1024);
    } catch (e) {
      closeFd(fd);
      throw e;
    }
    return new TcpListener([fd], opts);
  }

  /** The bound addresses (with the real port when 0 was asked for). */
  get addresses(): readonly Endpoint[] {
    return this.#addresses;
  }

  /** Connections accepted so far. */
  get accepted(): number {
    return this.#accepted;
  }

  /** Resource errors (EMFILE & co.) the accept loop backed off from. */
  get resourceErrors(): number {
    return this.#resourceErrors;
  }

  /** True after {@linkcode close}. */
  get closed(): boolean {
    return this.#closed;
  }

  /** The next connection, or null once the listener is closed. */
  accept(): Promise<AcceptedConn | null> {
    const c = this.#queue.shift();
    if (c) {
      this.#spaceWaiters.shift()?.();
      return Promise.resolve(c);
    }
    if (this.#closed) return Promise.resolve(null);
    return new Promise((resolve) => this.#takers.push(resolve));
  }

  /** Iterates connections until {@linkcode close}. */
  async *[Symbol.asyncIterator](): AsyncIterator<AcceptedConn> {
    for (;;) {
      const c = await this.accept();
      if (!c) return;
      yield c;
    }
  }

  #deliver(c: AcceptedConn): void {
    const taker = this.#takers.shift();
    if (taker) taker(c);
    else this.#queue.push(c);
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#sleeps.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#sleeps.add(done);
    });
  }

  async #acceptLoop(lfd: number): Promise<void> {
    let backoff = 0;
    while (!this.#closed) {
      if (this.#queue.length >= this.#maxQueued) {
        await new Promise<void>((r) => this.#spaceWaiters.push(r));
        continue;
      }
      let fd: number;
      try {
        fd = accept(lfd);
      } catch (e) {
        if (this.#closed) return;
        if (e instanceof ErrnoError && RESOURCE_ERRNOS.has(e.errno)) {
          this.#resourceErrors++;
          backoff = Math.min(this.#maxBackoffMs, backoff === 0 ? 10 : backoff * 2);
          this.#log.warn("accept: out of resources, backing off", {
            code: e.code,
            backoff_ms: backoff,
          });
          await this.#sleep(backoff);
          continue;
        }
        if (e instanceof ErrnoError && (e.errno === Errno.ECONNABORTED || e.errno === 71)) {
          continue; // the client gave up before we accepted (71 = EPROTO)
        }
        this.#log.error("accept failed", { error: e });
        backoff = Math.min(this.#maxBackoffMs, backoff === 0 ? 10 : backoff * 2);
        await this.#sleep(backoff);
        continue;
      }
      if (fd === WOULD_BLOCK) {
        try {
          await this.#reactor.readable(lfd);
        } catch (e) {
          if (this.#closed || e instanceof ClosedError) return;
          throw e;
        }
        continue;
      }
      backoff = 0;
      const conn = this.#adopt(fd);
      if (conn) {
        this.#accepted++;
        this.#deliver(conn);
      }
    }
  }

  #adopt(fd: number): AcceptedConn | null {
    let stream: FdStream | null = null;
    try {
      const source = getpeername(fd);
      let destination: Endpoint;
      if (this.#mode === "tproxy") {
        destination = getsockname(fd);
      } else {
        const q = originalDstQuery(source);
        destination = decodeOriginalDst(getsockoptBytes(fd, q.level, q.opt, q.len));
      }
      const mark = getsockoptInt(fd, SOL_SOCKET, SO_MARK) >>> 0;
      stream = new FdStream(fd, { reactor: this.#reactor });
      if (this.#log.enabled("debug")) {
        this.#log.debug("accepted", {
          src: formatEndpoint(source),
          dst: formatEndpoint(destination),
          mark,
        });
      }
      return { stream, source, destination, mark };
    } catch (e) {
      // The client may have reset already (ENOTCONN), or no conntrack entry
      // exists in redirect mode (ENOENT): drop this one, keep serving.
      this.#log.debug("dropping accepted connection", { error: e });
      if (stream) stream.close();
      else closeFd(fd);
      return null;
    }
  }

  /**
   * Stops accepting and closes the listening sockets. Queued, not yet
   * taken connections are closed; pending `accept()` calls resolve null.
   * Resolves when the accept loops have ended.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const wake of [...this.#sleeps]) wake();
    for (const r of this.#spaceWaiters.splice(0)) r();
    for (const fd of this.#fds) {
      this.#reactor.unregister(fd);
      closeFd(fd);
    }
    for (const c of this.#queue.splice(0)) c.stream.close();
    for (const t of this.#takers.splice(0)) t(null);
    await Promise.allSettled(this.#loops);
  }
}
