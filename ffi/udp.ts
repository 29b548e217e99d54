/**
 * UDP socket helpers over the libc FFI layer: the transparent receive socket
 * of the TPROXY inbound, reply sockets bound to a foreign (original
 * destination) address, per-session upstream sockets, a batched receive
 * (`recvmmsg`) with the original destination of every datagram, and a
 * `sendto` that reuses one `struct msghdr`.
 *
 * All sockets are non-blocking and close-on-exec (see `socket.ts`).
 *
 * @module
 */

import type { Endpoint } from "../core/types.ts";
import { findMark, findOrigDst, findTos, parseCmsgs } from "./cmsg.ts";
import { Errno, ErrnoError } from "./errno.ts";
import { errnoView, libc } from "./libc.ts";
import {
  AF_INET6,
  decodeSockaddr,
  encodeSockaddr,
  familyOf,
  SOCKADDR_STORAGE_LEN,
} from "./sockaddr.ts";
import {
  applySocketOptions,
  bind,
  close as closeFd,
  connect,
  IP_RECVORIGDSTADDR,
  IP_RECVTOS,
  IP_TRANSPARENT,
  IPV6_RECVORIGDSTADDR,
  IPV6_RECVTCLASS,
  IPV6_TRANSPARENT,
  IPV6_V6ONLY,
  MSG_NOSIGNAL,
  setsockoptInt,
  SO_RCVBUF,
  SO_RCVMARK,
  SO_REUSEADDR,
  SO_REUSEPORT,
  SO_SNDBUF,
  SOCK_DGRAM,
  socket,
  type SocketOptions,
  SOL_IP,
  SOL_IPV6,
  SOL_SOCKET,
  WOULD_BLOCK,
} from "./socket.ts";

/** Largest UDP payload (IPv6 jumbograms aside): receive buffers are this big. */
export const MAX_DATAGRAM = 65535;

/** `SO_RCVBUFFORCE`: like `SO_RCVBUF` but past `net.core.rmem_max` (CAP_NET_ADMIN). */
export const SO_RCVBUFFORCE = 33;

/**
 * Sets the receive buffer: `SO_RCVBUFFORCE` (ignores `net.core.rmem_max`,
 * needs CAP_NET_ADMIN), falling back to `SO_RCVBUF` (capped by the sysctl).
 */
export function setRecvBuffer(fd: number, bytes: number): void {
  try {
    setsockoptInt(fd, SOL_SOCKET, SO_RCVBUFFORCE, bytes);
  } catch {
    setsockoptInt(fd, SOL_SOCKET, SO_RCVBUF, bytes);
  }
}

const MSGHDR_LEN = 56;
const MMSGHDR_LEN = 64;
const IOVEC_LEN = 16;
const CONTROL_LEN = 128;

function ptrOf(buf: Uint8Array): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf)));
}

/** Options of {@linkcode openTransparentUdp}. */
export interface TransparentUdpOptions {
  /** For an IPv6 address: accept only IPv6 (`IPV6_V6ONLY`). Default true. */
  v6only?: boolean;
  /** `SO_RCVBUF` in bytes (the kernel doubles it); 0/absent leaves the default. */
  rcvbuf?: number;
  /** Ask for each datagram's netfilter mark (`SO_RCVMARK`, Linux ≥ 5.19; ignored if refused). */
  recvMark?: boolean;
  /** Ask for each datagram's TOS / traffic class (`IP_RECVTOS`, `IPV6_RECVTCLASS`). */
  recvTos?: boolean;
  /**
   * `SO_REUSEPORT`: another socket of the same user with it may bind the same
   * address (a successor router during a takeover); datagrams are spread
   * between them by flow hash.
   */
  reusePort?: boolean;
}

/**
 * Opens the UDP socket of a TPROXY inbound: `IP_TRANSPARENT` (or
 * `IPV6_TRANSPARENT`) before bind(), so nft `tproxy` may hand it datagrams
 * addressed anywhere, and `IP_RECVORIGDSTADDR` / `IPV6_RECVORIGDSTADDR`, so
 * each `recvmsg` carries the original destination as a cmsg. Needs
 * CAP_NET_ADMIN. Throws `ErrnoError`; the fd never leaks.
 */
export function openTransparentUdp(ep: Endpoint, opts: TransparentUdpOptions = {}): number {
  const family = familyOf(ep.addr);
  const fd = socket(family, SOCK_DGRAM);
  try {
    setsockoptInt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    if (opts.reusePort) setsockoptInt(fd, SOL_SOCKET, SO_REUSEPORT, 1);
    if (family === AF_INET6) {
      setsockoptInt(fd, SOL_IPV6, IPV6_V6ONLY, opts.v6only === false ? 0 : 1);
      setsockoptInt(fd, SOL_IPV6, IPV6_TRANSPARENT, 1);
      setsockoptInt(fd, SOL_IPV6, IPV6_RECVORIGDSTADDR, 1);
      // A dual-stack socket also gets IPv4 datagrams: ask for their cmsg too.
      if (opts.v6only === false) setsockoptInt(fd, SOL_IP, IP_RECVORIGDSTADDR, 1);
    } else {
      setsockoptInt(fd, SOL_IP, IP_TRANSPARENT, 1);
      setsockoptInt(fd, SOL_IP, IP_RECVORIGDSTADDR, 1);
    }
    if (opts.rcvbuf) setRecvBuffer(fd, opts.rcvbuf);
    if (opts.recvTos) {
      // DSCP for `dscp` rules: IPv4 TOS and IPv6 traffic class of each datagram
      // (a dual-stack socket gets both kinds).
      if (family === AF_INET6) setsockoptInt(fd, SOL_IPV6, IPV6_RECVTCLASS, 1);
      if (family !== AF_INET6 || opts.v6only === false) setsockoptInt(fd, SOL_IP, IP_RECVTOS, 1);
    }
    if (opts.recvMark) {
      try {
        setsockoptInt(fd, SOL_SOCKET, SO_RCVMARK, 1);
      } catch { /* older kernel: no per-datagram mark */ }
    }
    bind(fd, ep);
  } catch (e) {
    closeFd(fd);
    throw e;
  }
  return fd;
}

/**
 * Opens a reply socket for datagrams that must reach a client from `ep`
 * (the original destination it talked to): `IP_TRANSPARENT` lets it bind a
 * non-local address and `SO_REUSEADDR` lets it share that address:port
 * with other sockets. It stays unconnected, so nft `tproxy`'s
 * established-socket lookup skips it and client datagrams keep reaching the
 * inbound socket; one reply socket serves every client of `ep`.
 */
export function openReplySocket(
  ep: Endpoint,
  opts: { mark?: number; sndbuf?: number } = {},
): number {
  const family = familyOf(ep.addr);
  const fd = socket(family, SOCK_DGRAM);
  try {
    setsockoptInt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    if (family === AF_INET6) {
      setsockoptInt(fd, SOL_IPV6, IPV6_V6ONLY, 1);
      setsockoptInt(fd, SOL_IPV6, IPV6_TRANSPARENT, 1);
    } else {
      setsockoptInt(fd, SOL_IP, IP_TRANSPARENT, 1);
    }
    if (opts.sndbuf) setsockoptInt(fd, SOL_SOCKET, SO_SNDBUF, opts.sndbuf);
    applySocketOptions(fd, family, opts.mark !== undefined ? { mark: opts.mark } : {});
    bind(fd, ep);
  } catch (e) {
    closeFd(fd);
    throw e;
  }
  return fd;
}

/** Options of {@linkcode openUdpUpstream}: marks, interface and TOS plus a source address. */
export interface UdpUpstreamOptions extends SocketOptions {
  /** Source address of the family of the destination (port chosen by the kernel). */
  bindAddress?: Uint8Array;
  /** `SO_RCVBUF` in bytes; 0/absent leaves the default. */
  rcvbuf?: number;
}

/**
 * Opens a UDP socket for one session towards `dst`: socket options (mark,
 * interface, TOS), optional source address, then `connect()` so the kernel
 * only lets `dst`'s replies in and `send()` needs no address.
 */
export function openUdpUpstream(dst: Endpoint, opts: UdpUpstreamOptions = {}): number {
  const family = familyOf(dst.addr);
  const fd = socket(family, SOCK_DGRAM);
  try {
    applySocketOptions(fd, family, opts);
    if (opts.rcvbuf) setRecvBuffer(fd, opts.rcvbuf);
    if (opts.bindAddress) {
      if (opts.bindAddress.length !== dst.addr.length) {
        throw new RangeError(
          `Cannot bind a ${opts.bindAddress.length}-byte source address for a ${dst.addr.length}-byte destination`,
        );
      }
      bind(fd, { addr: opts.bindAddress, port: 0 });
    }
    connect(fd, dst);
  } catch (e) {
    closeFd(fd);
    throw e;
  }
  return fd;
}

/**
 * Opens an unconnected UDP socket of the family of `dst` for datagrams to
 * any destination (endpoint-independent mapping: one source port for all
 * of them), with the options of {@linkcode openUdpUpstream}; bound to
 * `opts.bindAddress` or the wildcard address, port chosen by the kernel.
 */
export function openUdpShared(dst: Endpoint, opts: UdpUpstreamOptions = {}): number {
  const family = familyOf(dst.addr);
  if (opts.bindAddress && opts.bindAddress.length !== dst.addr.length) {
    throw new RangeError(
      `Cannot bind a ${opts.bindAddress.length}-byte source address for a ${dst.addr.length}-byte destination`,
    );
  }
  const fd = socket(family, SOCK_DGRAM);
  try {
    applySocketOptions(fd, family, opts);
    if (opts.rcvbuf) setRecvBuffer(fd, opts.rcvbuf);
    bind(fd, { addr: opts.bindAddress ?? new Uint8Array(dst.addr.length), port: 0 });
  } catch (e) {
    closeFd(fd);
    throw e;
  }
  return fd;
}

/**
 * Opens an unconnected UDP socket bound to `local` (port 0 = any), with
 * socket options; used for a SOCKS5 UDP association before its relay is known.
 */
export function openUdpBound(local: Endpoint, opts: SocketOptions = {}): number {
  const family = familyOf(local.addr);
  const fd = socket(family, SOCK_DGRAM);
  try {
    applySocketOptions(fd, family, opts);
    bind(fd, local);
  } catch (e) {
    closeFd(fd);
    throw e;
  }
  return fd;
}

/** One datagram of a {@linkcode RecvBatch}: views valid until the next receive. */
export interface ReceivedDatagram {
  /** Payload (a view into the batch buffer). */
  readonly data: Uint8Array;
  /** Sender. */
  readonly source: Endpoint;
  /** Original destination (from the cmsg), or null when absent. */
  readonly destination: Endpoint | null;
  /** Netfilter mark (with `SO_RCVMARK`), or null. */
  readonly mark: number | null;
  /** TOS / traffic class byte (with `recvTos`), or null. */
  readonly tos: number | null;
  /** True when the payload was cut (larger than the slot). */
  readonly truncated: boolean;
}

const MSG_TRUNC_FLAG = 0x20;

/**
 * Buffers for `recvmmsg(2)`: `count` slots, each a `struct mmsghdr` with one
 * iovec of `slotSize` bytes, a name and a control buffer, all off-heap so
 * their addresses stay put. One call fills up to `count` datagrams.
 */
export class RecvBatch {
  /** Number of slots. */
  readonly count: number;
  readonly #slotSize: number;
  readonly #vec: Uint8Array;
  readonly #vecView: DataView;
  readonly #data: Uint8Array;
  readonly #names: Uint8Array;
  readonly #controls: Uint8Array;
  readonly #controlsView: DataView;
  readonly #iovs: Uint8Array;

  /** Allocates `count` slots of `slotSize` bytes (default 16 × 64 KiB). */
  constructor(count = 16, slotSize = MAX_DATAGRAM) {
    if (!Number.isInteger(count) || count < 1 || count > 1024) {
      throw new RangeError(`RecvBatch count ${count}: expected 1..1024`);
    }
    this.count = count;
    this.#slotSize = slotSize;
    this.#vec = new Uint8Array(new ArrayBuffer(MMSGHDR_LEN * count));
    this.#vecView = new DataView(this.#vec.buffer);
    this.#data = new Uint8Array(new ArrayBuffer(slotSize * count));
    this.#names = new Uint8Array(new ArrayBuffer(SOCKADDR_STORAGE_LEN * count));
    this.#controls = new Uint8Array(new ArrayBuffer(CONTROL_LEN * count));
    this.#controlsView = new DataView(this.#controls.buffer);
    this.#iovs = new Uint8Array(new ArrayBuffer(IOVEC_LEN * count));
    const iv = new DataView(this.#iovs.buffer);
    const dataBase = ptrOf(this.#data);
    const nameBase = ptrOf(this.#names);
    const ctlBase = ptrOf(this.#controls);
    const iovBase = ptrOf(this.#iovs);
    const h = this.#vecView;
    for (let i = 0; i < count; i++) {
      iv.setBigUint64(i * IOVEC_LEN, dataBase + BigInt(i * slotSize), true);
      iv.setBigUint64(i * IOVEC_LEN + 8, BigInt(slotSize), true);
      const o = i * MMSGHDR_LEN;
      h.setBigUint64(o, nameBase + BigInt(i * SOCKADDR_STORAGE_LEN), true);
      h.setBigUint64(o + 16, iovBase + BigInt(i * IOVEC_LEN), true);
      h.setBigUint64(o + 24, 1n, true);
      h.setBigUint64(o + 32, ctlBase + BigInt(i * CONTROL_LEN), true);
    }
  }

  /**
   * One `recvmmsg` on `fd` (non-blocking): the number of datagrams
   * received, or {@linkcode WOULD_BLOCK}. Read them with {@linkcode get}.
   */
  receive(fd: number): number {
    const h = this.#vecView;
    for (let i = 0; i < this.count; i++) {
      const o = i * MMSGHDR_LEN;
      h.setUint32(o + 8, SOCKADDR_STORAGE_LEN, true);
      h.setUint32(o + 40, CONTROL_LEN, true);
      h.setUint32(o + 44, 0, true);
      h.setInt32(o + 48, 0, true);
    }
    const E = errnoView();
    const r = libc().recvmmsg(fd, this.#vec, this.count, 0, null);
    if (r >= 0) return r;
    const e = E[0]!;
    if (e === Errno.EAGAIN) return WOULD_BLOCK;
    if (e === Errno.EINTR) return this.receive(fd);
    throw new ErrnoError("recvmmsg", e);
  }

  /** Payload of slot `i` of the last receive (a view into the batch buffer). */
  data(i: number): Uint8Array {
    const len = this.#vecView.getUint32(i * MMSGHDR_LEN + 56, true);
    const start = i * this.#slotSize;
    return this.#data.subarray(start, start + Math.min(len, this.#slotSize));
  }

  /** True when slot `i` was cut to the slot size (`MSG_TRUNC`). */
  truncated(i: number): boolean {
    return (this.#vecView.getInt32(i * MMSGHDR_LEN + 48, true) & MSG_TRUNC_FLAG) !== 0;
  }

  /**
   * A string key for (source, original destination) of slot `i`, built from
   * the raw sockaddr bytes without decoding anything: the same pair always
   * gives the same key on one socket. Null when the datagram carries no
   * original-destination cmsg. The hot path looks sessions up by it and
   * decodes (with {@linkcode get}) only for a new session.
   */
  flowKey(i: number): string | null {
    const n = this.#names;
    const no = i * SOCKADDR_STORAGE_LEN;
    const co = i * CONTROL_LEN;
    const h = this.#vecView;
    const ctlLen = Math.min(Number(h.getUint32(i * MMSGHDR_LEN + 40, true)), CONTROL_LEN);
    const c = this.#controls;
    const cv = this.#controlsView;
    let off = 0, dst = -1;
    while (off + 16 <= ctlLen) {
      const len = cv.getUint32(co + off, true);
      if (len < 16 || off + len > ctlLen) break;
      const level = cv.getInt32(co + off + 8, true);
      const type = cv.getInt32(co + off + 12, true);
      if ((level === SOL_IP && type === 20) || (level === SOL_IPV6 && type === 74)) {
        dst = co + off + 16;
        break;
      }
      off += (len + 7) & ~7;
    }
    if (dst < 0) return null;
    let k = addrChars(n, no);
    k += addrChars(c, dst);
    return k;
  }

  /**
   * The sender of slot `i` as a short string: {@linkcode sockaddrKey} of its
   * sockaddr (so a reply's sender finds the session that sent to it). No
   * decoding.
   */
  sourceKey(i: number): string {
    return addrChars(this.#names, i * SOCKADDR_STORAGE_LEN);
  }

  /** Slot `i` of the last receive, decoded (name, cmsgs). */
  get(i: number): ReceivedDatagram {
    const h = this.#vecView;
    const o = i * MMSGHDR_LEN;
    const nameLen = h.getUint32(o + 8, true);
    const ctlLen = Number(h.getBigUint64(o + 40, true));
    const flags = h.getInt32(o + 48, true);
    const len = h.getUint32(o + 56, true);
    const data = this.#data.subarray(
      i * this.#slotSize,
      i * this.#slotSize + Math.min(len, this.#slotSize),
    );
    const name = this.#names.subarray(i * SOCKADDR_STORAGE_LEN, (i + 1) * SOCKADDR_STORAGE_LEN);
    const ctl = this.#controls.subarray(
      i * CONTROL_LEN,
      i * CONTROL_LEN + Math.min(ctlLen, CONTROL_LEN),
    );
    const cmsgs = parseCmsgs(ctl);
    return {
      data,
      source: decodeSockaddr(name, nameLen),
      destination: findOrigDst(cmsgs),
      mark: findMark(cmsgs),
      tos: findTos(cmsgs),
      truncated: (flags & MSG_TRUNC_FLAG) !== 0,
    };
  }
}

/**
 * An encoded sockaddr (see {@linkcode sockaddrOf}) as the short string
 * {@linkcode RecvBatch.sourceKey} gives for a datagram from that address.
 */
export function sockaddrKey(sockaddr: Uint8Array): string {
  return addrChars(sockaddr, 0);
}

/** Port and address bytes of the sockaddr at `off` as a short binary string. */
function addrChars(b: Uint8Array, off: number): string {
  const fc = String.fromCharCode;
  if (b[off] === 2 && b[off + 1] === 0) {
    // sockaddr_in: port (2) + address (4)
    return fc(4, b[off + 2]!, b[off + 3]!, b[off + 4]!, b[off + 5]!, b[off + 6]!, b[off + 7]!);
  }
  // sockaddr_in6: port (2) + address (16)
  let k = fc(16, b[off + 2]!, b[off + 3]!);
  for (let j = off + 8; j < off + 24; j += 4) k += fc(b[j]!, b[j + 1]!, b[j + 2]!, b[j + 3]!);
  return k;
}

/**
 * `sendto(2)` through one reused `struct msghdr`: the destination is given
 * as encoded sockaddr bytes (see {@linkcode encodeSockaddr}), so a session
 * encodes its client's address once.
 */
export class DatagramSender {
  readonly #hdr = new Uint8Array(new ArrayBuffer(MSGHDR_LEN));
  readonly #hv = new DataView(this.#hdr.buffer);
  readonly #iov = new Uint8Array(new ArrayBuffer(IOVEC_LEN));
  readonly #iv = new DataView(this.#iov.buffer);
  readonly #name = new Uint8Array(new ArrayBuffer(SOCKADDR_STORAGE_LEN));

  /** Prepares the header. */
  constructor() {
    this.#hv.setBigUint64(0, ptrOf(this.#name), true);
    this.#hv.setBigUint64(16, ptrOf(this.#iov), true);
    this.#hv.setBigUint64(24, 1n, true);
  }

  /**
   * Sends `data` to `sockaddr` on `fd`: bytes sent or
   * {@linkcode WOULD_BLOCK}; throws `ErrnoError` for other failures.
   */
  sendTo(fd: number, data: Uint8Array, sockaddr: Uint8Array): number {
    this.#name.set(sockaddr);
    this.#hv.setUint32(8, sockaddr.length, true);
    const body = data.length > 0 ? data : this.#name.subarray(0, 0);
    this.#iv.setBigUint64(0, data.length > 0 ? ptrOf(body) : 0n, true);
    this.#iv.setBigUint64(8, BigInt(data.length), true);
    const E = errnoView();
    const r = libc().sendmsg(fd, this.#hdr, MSG_NOSIGNAL);
    if (r >= 0) return r;
    const e = E[0]!;
    if (e === Errno.EAGAIN) return WOULD_BLOCK;
    if (e === Errno.EINTR) return this.sendTo(fd, data, sockaddr);
    throw new ErrnoError("sendmsg", e);
  }
}

const SOL_UDP = 17;
const UDP_SEGMENT = 103;
/** `CMSG_SPACE(sizeof(uint16_t))`. */
const GSO_CONTROL_LEN = 24;
/** The kernel's `UDP_MAX_SEGMENTS` (older kernels; newer ones allow 128). */
const GSO_MAX_SEGMENTS = 64;
/**
 * A GSO refusal (EINVAL) for segments above this many bytes is taken for a
 * segment bigger than the path MTU (IPv6's minimum MTU is 1,280): smaller
 * segments may still be sent with GSO. At or below it, never again.
 */
const GSO_RETRY_ABOVE = 1280;
/** Largest UDP payload of one GSO send (IPv4's limit; the kernel checks the exact one). */
const GSO_MAX_BYTES = 65507;
const TWO_32 = 2 ** 32;

/**
 * Datagrams to send on one socket in one go: each added buffer is kept as a
 * pointer (no copy), so it must stay unchanged until {@linkcode flush} —
 * the datagrams of a `RecvBatch` just received, say — and so is an optional
 * prefix of each (a SOCKS5 UDP header). A flush sends them as one UDP GSO
 * send (`UDP_SEGMENT`: one trip through the stack, split by the kernel or
 * the NIC) when they have one size (the last may be shorter), otherwise with
 * one `sendmmsg(2)`.
 */
export class SendBatch {
  /** Most datagrams one flush takes. */
  readonly capacity: number;
  #n = 0;
  #bytes = 0;
  readonly #sizes: Int32Array;
  /** Iovecs in use: one per datagram, two with a prefix, in order (GSO sends them all). */
  #iovs = 0;
  readonly #iovBase: number;
  readonly #vec: Uint8Array;
  readonly #vecView: DataView;
  readonly #iovView: DataView;
  readonly #gsoHdr: Uint8Array;
  readonly #gsoView: DataView;
  readonly #control: Uint8Array;
  readonly #controlView: DataView;
  readonly #name = new Uint8Array(new ArrayBuffer(SOCKADDR_STORAGE_LEN));
  readonly #namePtr = ptrOf(this.#name);
  /** Base address of each buffer seen (looked up once per buffer). */
  readonly #bases = new WeakMap<ArrayBufferLike, number>();
  #gsoRefused = false;
  #gsoLimit = Infinity;
  #sentBytes = 0;

  /** Room for `capacity` datagrams (1..1024, default {@linkcode GSO_MAX_SEGMENTS}). */
  constructor(capacity = GSO_MAX_SEGMENTS) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > 1024) {
      throw new RangeError(`SendBatch capacity ${capacity}: expected 1..1024`);
    }
    this.capacity = capacity;
    this.#sizes = new Int32Array(capacity);
    this.#vec = new Uint8Array(new ArrayBuffer(MMSGHDR_LEN * capacity));
    this.#vecView = new DataView(this.#vec.buffer);
    const iovs = new Uint8Array(new ArrayBuffer(IOVEC_LEN * 2 * capacity));
    this.#iovView = new DataView(iovs.buffer);
    this.#gsoHdr = new Uint8Array(new ArrayBuffer(MSGHDR_LEN));
    this.#gsoView = new DataView(this.#gsoHdr.buffer);
    this.#control = new Uint8Array(new ArrayBuffer(GSO_CONTROL_LEN));
    this.#controlView = new DataView(this.#control.buffer);
    const iovBase = ptrOf(iovs);
    this.#iovBase = Number(iovBase);
    // The GSO send: all the iovecs, one cmsg (level, type, u16 segment size).
    this.#gsoView.setBigUint64(16, iovBase, true);
    this.#gsoView.setBigUint64(32, ptrOf(this.#control), true);
    this.#gsoView.setBigUint64(40, BigInt(GSO_CONTROL_LEN), true);
    this.#controlView.setBigUint64(0, 18n, true); // CMSG_LEN(2)
    this.#controlView.setInt32(8, SOL_UDP, true);
    this.#controlView.setInt32(12, UDP_SEGMENT, true);
  }

  /** Datagrams added since the last flush. */
  get length(): number {
    return this.#n;
  }

  /** Bytes the last {@linkcode flush} sent. */
  get sentBytes(): number {
    return this.#sentBytes;
  }

  /** True when the last {@linkcode flush} found GSO refused by the socket (it fell back). */
  get gsoRefused(): boolean {
    return this.#gsoRefused;
  }

  /**
   * After a {@linkcode flush}: the largest segment the socket may still be
   * offered GSO for (pass it as the next flush's `gso`). Infinity unless the
   * flush's GSO send was refused; then one below the refused segment size
   * when that was EINVAL for a segment above 1,280 bytes (most likely one
   * bigger than the path MTU: smaller runs may still go as one send), else
   * 0 (UDP checksums off, IPsec, a kernel without GSO: never again).
   */
  get gsoLimit(): number {
    return this.#gsoLimit;
  }

  /**
   * Adds a datagram: `prefix` (if any) then `data`, both read at the flush.
   * Returns false, adding nothing, when the batch is full.
   */
  add(data: Uint8Array, prefix?: Uint8Array): boolean {
    const i = this.#n;
    if (i === this.capacity) return false;
    const first = this.#iovs;
    if (prefix !== undefined && prefix.length > 0) this.#iov(prefix);
    this.#iov(data);
    const count = this.#iovs - first;
    const v = this.#vecView;
    const o = i * MMSGHDR_LEN;
    const p = this.#iovBase + first * IOVEC_LEN;
    v.setUint32(o + 16, p % TWO_32, true);
    v.setUint32(o + 20, Math.floor(p / TWO_32), true);
    v.setUint32(o + 24, count, true);
    v.setUint32(o + 28, 0, true);
    const size = data.length + (prefix?.length ?? 0);
    this.#sizes[i] = size;
    this.#bytes += size;
    this.#n = i + 1;
    return true;
  }

  /** Writes the next iovec: `buf`'s address (its buffer's base looked up once) and length. */
  #iov(buf: Uint8Array): void {
    const ab = buf.buffer;
    let base = this.#bases.get(ab);
    if (base === undefined) {
      base = Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(new Uint8Array(ab))));
      this.#bases.set(ab, base);
    }
    const p = base + buf.byteOffset;
    const iv = this.#iovView;
    const o = this.#iovs * IOVEC_LEN;
    iv.setUint32(o, p % TWO_32, true);
    iv.setUint32(o + 4, Math.floor(p / TWO_32), true);
    iv.setUint32(o + 8, buf.length, true);
    iv.setUint32(o + 12, 0, true);
    this.#iovs++;
  }

  /** Forgets what was added. */
  clear(): void {
    this.#n = 0;
    this.#iovs = 0;
    this.#bytes = 0;
  }

  /**
   * Sends what was added on `fd` — to `sockaddr` (encoded, see
   * {@linkcode sockaddrOf}) or, with null, to the connected peer — and
   * clears the batch. `gso` false skips the GSO attempt (a socket that
   * refused it before: see {@linkcode gsoRefused}). Datagrams the socket
   * does not take are dropped, as a single `send` would drop them: on
   * `EAGAIN` the rest of the batch, on another error (an earlier ICMP
   * error reported now, `ENOBUFS`, `EMSGSIZE`) that datagram. Returns the
   * number sent.
   */
  flush(fd: number, sockaddr: Uint8Array | null, gso: boolean | number = true): number {
    const n = this.#n;
    this.#gsoRefused = false;
    this.#gsoLimit = Infinity;
    this.#sentBytes = 0;
    if (n === 0) return 0;
    let nameLen = 0;
    if (sockaddr !== null) {
      this.#name.set(sockaddr);
      nameLen = sockaddr.length;
    }
    const namePtr = nameLen > 0 ? this.#namePtr : 0n;
    try {
      const limit = gso === true ? Infinity : gso === false ? 0 : gso;
      if (n > 1 && this.#sizes[0]! <= limit && this.#uniform()) {
        const r = this.#sendGso(fd, namePtr, nameLen);
        if (r !== null) return r;
      }
      return this.#sendEach(fd, namePtr, nameLen);
    } finally {
      this.clear();
    }
  }

  /** One size for all but the last (which may be shorter), and within the kernel's bounds. */
  #uniform(): boolean {
    const n = this.#n;
    const size = this.#sizes[0]!;
    if (size === 0 || n > GSO_MAX_SEGMENTS || this.#bytes > GSO_MAX_BYTES) return false;
    for (let i = 1; i < n - 1; i++) if (this.#sizes[i] !== size) return false;
    return this.#sizes[n - 1]! <= size;
  }

  /** The GSO send: the count sent (all or none), or null to fall back to {@linkcode #sendEach}. */
  #sendGso(fd: number, namePtr: bigint, nameLen: number): number | null {
    const h = this.#gsoView;
    h.setBigUint64(0, namePtr, true);
    h.setUint32(8, nameLen, true);
    h.setBigUint64(24, BigInt(this.#iovs), true);
    this.#controlView.setUint16(16, this.#sizes[0]!, true);
    const E = errnoView();
    for (;;) {
      const r = libc().sendmsg(fd, this.#gsoHdr, MSG_NOSIGNAL);
      if (r >= 0) {
        this.#sentBytes = this.#bytes;
        return this.#n;
      }
      const e = E[0]!;
      if (e === Errno.EINTR) continue;
      if (e === Errno.EAGAIN) return 0;
      // EINVAL (a segment bigger than the path MTU, UDP checksums off), EIO
      // (IPsec), ENOPROTOOPT/EOPNOTSUPP (an old kernel): the socket cannot
      // take GSO, or not for segments this big (see gsoLimit). Anything else
      // (a pending ICMP error) is one datagram's business: the one-by-one
      // send sorts it out.
      this.#gsoRefused = e === Errno.EINVAL || e === Errno.EIO || e === Errno.ENOPROTOOPT ||
        e === Errno.EOPNOTSUPP;
      if (this.#gsoRefused) {
        const size = this.#sizes[0]!;
        this.#gsoLimit = e === Errno.EINVAL && size > GSO_RETRY_ABOVE ? size - 1 : 0;
      }
      return null;
    }
  }

  #sendEach(fd: number, namePtr: bigint, nameLen: number): number {
    const n = this.#n;
    const v = this.#vecView;
    for (let i = 0; i < n; i++) {
      const o = i * MMSGHDR_LEN;
      v.setBigUint64(o, namePtr, true);
      v.setUint32(o + 8, nameLen, true);
    }
    const E = errnoView();
    let i = 0, sent = 0;
    while (i < n) {
      const vec = i === 0 ? this.#vec : this.#vec.subarray(i * MMSGHDR_LEN);
      const r = libc().sendmmsg(fd, vec, n - i, MSG_NOSIGNAL);
      if (r > 0) {
        for (let k = i; k < i + r; k++) this.#sentBytes += this.#sizes[k]!;
        i += r;
        sent += r;
        continue;
      }
      if (r === 0) break;
      const e = E[0]!;
      if (e === Errno.EINTR) continue;
      if (e === Errno.EAGAIN) break;
      i++; // this datagram fails: drop it, go on with the next
    }
    return sent;
  }
}

/** Encodes the destination sockaddr once for {@linkcode DatagramSender.sendTo}. */
export function sockaddrOf(ep: Endpoint): Uint8Array {
  return encodeSockaddr(ep);
}
