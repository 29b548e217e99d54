/**
 * The UDP inbound of TPROXY: one transparent UDP socket per address family
 * (`IP_TRANSPARENT` + `IP_RECVORIGDSTADDR`, `IPV6_TRANSPARENT` +
 * `IPV6_RECVORIGDSTADDR`), read in batches with `recvmmsg`; each datagram
 * reaches the handler with its client address and original destination
 * (from the cmsg). The handler runs synchronously and the datagram's bytes
 * are a view into a reused buffer: copy what must outlive the call.
 *
 * The hot path decodes nothing: each datagram first goes to
 * {@linkcode UdpDatagramSink.known} with a key built from the raw address
 * bytes; only when no session has that key is it decoded and handed to
 * {@linkcode UdpDatagramSink.fresh}.
 *
 * `listen: "::"` opens `0.0.0.0:PORT` and `[::]:PORT` (v6-only) side by
 * side; `"0.0.0.0"` or an IPv4 address opens IPv4 only; another IPv6
 * address, IPv6 only.
 *
 * @module
 */

import type { Endpoint } from "../core/types.ts";
import { formatEndpoint, parseIp } from "../core/ip.ts";
import { type Logger, nullLogger } from "../core/log.ts";
import { defaultReactor, isClosedError, type Reactor } from "../ffi/reactor.ts";
import { close as closeFd, getsockname, WOULD_BLOCK } from "../ffi/socket.ts";
import { openTransparentUdp, type ReceivedDatagram, RecvBatch } from "../ffi/udp.ts";

export type { ReceivedDatagram } from "../ffi/udp.ts";

/** Where the inbound delivers datagrams. */
export interface UdpDatagramSink {
  /**
   * A datagram of the (source, original destination) pair `key` (see
   * `RecvBatch.flowKey`). Returns false when the pair is unknown: the
   * inbound then decodes it and calls {@linkcode fresh}.
   */
  known(key: string, data: Uint8Array): boolean;
  /** The first datagram of an unknown pair, decoded. */
  fresh(key: string, d: ReceivedDatagram & { readonly destination: Endpoint }): void;
  /**
   * After the datagrams of one receive: the views passed to `known` and
   * `fresh` are overwritten by the next one, so whatever the sink batched
   * from them goes out now.
   */
  flush?(): void;
}

/** Options of {@linkcode UdpTproxyInbound.open}. */
export interface UdpInboundOptions {
  /** `"::"` (both families), `"0.0.0.0"`, or one address. */
  listen: string;
  /** Port; 0 picks one per socket (read back from `addresses`). */
  port: number;
  /** Receives every datagram that carries an original destination. */
  sink: UdpDatagramSink;
  /** Datagrams per `recvmmsg` (default 16). */
  batch?: number;
  /** `SO_RCVBUF` of the inbound sockets in bytes (default 4 MiB; the kernel caps it). */
  rcvbuf?: number;
  /** Longest stretch (ms) of back-to-back reads before yielding to the event loop (default 2). */
  maxBusyMs?: number;
  /** `SO_REUSEPORT` on the sockets (a successor may bind the same address: `router run --replace`). */
  reusePort?: boolean;
  logger?: Logger;
  reactor?: Reactor;
}

/** Counters of the inbound sockets. */
export interface UdpInboundCounters {
  /** Datagrams read. */
  received: number;
  /** Datagrams without an original-destination cmsg (not TPROXY'd): dropped. */
  noOrigDst: number;
  /** Datagrams cut by the buffer (never with the default 64 KiB slots): dropped. */
  truncated: number;
  /** Receive errors (logged, backed off). */
  errors: number;
}

/** The transparent UDP sockets of one inbound. */
export class UdpTproxyInbound {
  readonly #fds: number[];
  readonly #addresses: Endpoint[];
  readonly #reactor: Reactor;
  readonly #log: Logger;
  readonly #sink: UdpDatagramSink;
  readonly #batchSize: number;
  readonly #maxBusyMs: number;
  readonly #loops: Promise<void>[] = [];
  readonly #c: UdpInboundCounters = { received: 0, noOrigDst: 0, truncated: 0, errors: 0 };
  #closed = false;
  #drainBatch: RecvBatch | null = null;

  private constructor(fds: number[], opts: UdpInboundOptions) {
    this.#fds = fds;
    this.#reactor = opts.reactor ?? defaultReactor();
    this.#log = opts.logger ?? nullLogger;
    this.#sink = opts.sink;
    this.#batchSize = opts.batch ?? 16;
    this.#maxBusyMs = opts.maxBusyMs ?? 2;
    this.#addresses = fds.map((fd) => getsockname(fd));
    // Oneshot: while the loop reads, the datagrams that keep arriving must not
    // each make the reactor poll (see RegisterOptions.oneshot).
    for (const fd of fds) this.#reactor.register(fd, { oneshot: true });
    for (const fd of fds) this.#loops.push(this.#loop(fd));
  }

  /**
   * Opens and binds the sockets. Throws `RangeError` for a bad address or
   * port, `ErrnoError` for a failing call (EPERM without CAP_NET_ADMIN,
   * EADDRINUSE); no fd leaks.
   */
  static open(opts: UdpInboundOptions): UdpTproxyInbound {
    const addr = parseIp(opts.listen);
    if (!addr) throw new RangeError(`listen: "${opts.listen}": not an IP address`);
    if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
      throw new RangeError(`listen_port: ${opts.port}: expected 0..65535`);
    }
    const binds: Endpoint[] = [];
    if (addr.length === 16 && addr.every((b) => b === 0)) {
      binds.push({ addr: new Uint8Array(4), port: opts.port }, { addr, port: opts.port });
    } else {
      binds.push({ addr, port: opts.port });
    }
    const rcvbuf = opts.rcvbuf ?? 4 << 20;
    const fds: number[] = [];
    try {
      for (const ep of binds) {
        fds.push(
          openTransparentUdp(ep, {
            rcvbuf,
            recvMark: true,
            recvTos: true,
            reusePort: opts.reusePort === true,
          }),
        );
      }
    } catch (e) {
      for (const fd of fds) closeFd(fd);
      throw e;
    }
    return new UdpTproxyInbound(fds, opts);
  }

  /** The bound addresses. */
  get addresses(): readonly Endpoint[] {
    return this.#addresses;
  }

  /** A copy of the counters. */
  counters(): UdpInboundCounters {
    return { ...this.#c };
  }

  /**
   * Reads and delivers what is queued on the sockets now, without waiting
   * (at most `maxBatches` `recvmmsg` calls per socket). A timer that is
   * about to act on "nothing more came" (the sniff wait) calls it first: in
   * a process that stalled, the timer and the datagrams are due together
   * and the timer may run first. Returns the datagrams read.
   */
  drainNow(maxBatches = 4): number {
    if (this.#closed) return 0;
    const batch = this.#drainBatch ??= new RecvBatch(this.#batchSize);
    let read = 0;
    for (const fd of this.#fds) {
      for (let k = 0; k < maxBatches; k++) {
        let n: number;
        try {
          n = batch.receive(fd);
        } catch {
          break; // the read loop meets the error and reports it
        }
        if (n === WOULD_BLOCK) break;
        for (let i = 0; i < n; i++) this.#deliver(batch, i);
        this.#flush();
        read += n;
      }
    }
    return read;
  }

  async #loop(fd: number): Promise<void> {
    const batch = new RecvBatch(this.#batchSize);
    let busySince = performance.now();
    let backoff = 10;
    while (!this.#closed) {
      let n: number;
      try {
        n = batch.receive(fd);
      } catch (e) {
        if (this.#closed || isClosedError(e)) return;
        this.#c.errors++;
        this.#log.warn("udp receive failed; backing off", { error: e, ms: backoff });
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, 1000);
        continue;
      }
      backoff = 10;
      if (n === WOULD_BLOCK) {
        try {
          await this.#reactor.readable(fd);
        } catch {
          return; // unregistered: closing
        }
        busySince = performance.now();
        continue;
      }
      for (let i = 0; i < n; i++) this.#deliver(batch, i);
      this.#flush();
      if (performance.now() - busySince > this.#maxBusyMs) {
        // Let timers (sniff waits, expiry sweeps) and other I/O run: the
        // reactor parks once (the event loop's turn), and the wait returns
        // right after it, the socket being readable still.
        this.#reactor.parkSoon();
        try {
          await this.#reactor.readable(fd);
        } catch {
          return; // unregistered: closing
        }
        busySince = performance.now();
      }
    }
  }

  #flush(): void {
    try {
      this.#sink.flush?.();
    } catch (e) {
      this.#log.error("udp datagram flush failed", { error: e });
    }
  }

  #deliver(batch: RecvBatch, i: number): void {
    this.#c.received++;
    if (batch.truncated(i)) {
      this.#c.truncated++;
      return;
    }
    const key = batch.flowKey(i);
    if (key === null) {
      this.#c.noOrigDst++;
      return;
    }
    let d: ReceivedDatagram | null = null;
    try {
      if (this.#sink.known(key, batch.data(i))) return;
      d = batch.get(i);
      if (!d.destination) throw new Error("no original destination");
      this.#sink.fresh(key, d as ReceivedDatagram & { readonly destination: Endpoint });
    } catch (e) {
      this.#log.error("udp datagram handler failed", {
        src: d ? formatEndpoint(d.source) : undefined,
        dst: d?.destination ? formatEndpoint(d.destination) : undefined,
        error: e,
      });
    }
  }

  /** Closes the sockets; the read loops end. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const fd of this.#fds) {
      this.#reactor.unregister(fd);
      closeFd(fd);
    }
    await Promise.allSettled(this.#loops);
  }
}
