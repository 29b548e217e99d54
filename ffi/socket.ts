/**
 * Safe wrappers over the libc socket calls. Failures throw
 * {@linkcode ErrnoError}; on the hot paths (`recv`, `send`, `accept`,
 * `splice`) "would block" (EAGAIN) is returned as the sentinel
 * {@linkcode WOULD_BLOCK} instead of being thrown. Every socket, pipe and
 * accepted fd is created non-blocking and close-on-exec.
 *
 * errno is read from a cached view as the first thing after a call returns
 * -1 (see DESIGN.md §3): keep it that way when editing.
 *
 * @module
 */

import type { Endpoint } from "../core/types.ts";
import { Errno, ErrnoError } from "./errno.ts";
import { errnoView, libc } from "./libc.ts";
import {
  AF_INET,
  AF_INET6,
  decodeSockaddr,
  encodeSockaddr,
  familyOf,
  SOCKADDR_STORAGE_LEN,
} from "./sockaddr.ts";

export { AF_INET, AF_INET6 } from "./sockaddr.ts";

/** Returned by hot-path calls instead of throwing when the call would block (EAGAIN). */
export const WOULD_BLOCK = -1;

/** `SOCK_STREAM`. */
export const SOCK_STREAM = 1;
/** `SOCK_DGRAM`. */
export const SOCK_DGRAM = 2;
/** `SOCK_NONBLOCK` (= `O_NONBLOCK`). */
export const SOCK_NONBLOCK = 0o4000;
/** `SOCK_CLOEXEC` (= `O_CLOEXEC`). */
export const SOCK_CLOEXEC = 0o2000000;

/** `SOL_SOCKET`. */
export const SOL_SOCKET = 1;
/** `SO_REUSEADDR`. */
export const SO_REUSEADDR = 2;
/** `SO_ERROR` (read: pending error, e.g. of a non-blocking connect). */
export const SO_ERROR = 4;
/** `SO_SNDBUF`. */
export const SO_SNDBUF = 7;
/** `SO_RCVBUF`. */
export const SO_RCVBUF = 8;
/** `SO_KEEPALIVE`. */
export const SO_KEEPALIVE = 9;
/** `SO_LINGER` (`struct linger { int l_onoff; int l_linger; }`). */
export const SO_LINGER = 13;
/** `SO_REUSEPORT`. */
export const SO_REUSEPORT = 15;
/** `SO_BINDTODEVICE` (value: interface name, NUL-terminated). */
export const SO_BINDTODEVICE = 25;
/** `SO_MARK` (needs CAP_NET_ADMIN to set). */
export const SO_MARK = 36;
/** `SO_RCVMARK`: deliver each datagram's mark as a SOL_SOCKET/SO_MARK cmsg (Linux ≥ 5.19). */
export const SO_RCVMARK = 75;

/** `SOL_IP` / `IPPROTO_IP`. */
export const SOL_IP = 0;
/** `SOL_IPV6` / `IPPROTO_IPV6`. */
export const SOL_IPV6 = 41;
/** `SOL_TCP` / `IPPROTO_TCP`. */
export const SOL_TCP = 6;
/** `IPPROTO_UDP`. */
export const IPPROTO_UDP = 17;

/** `IP_TOS` (int: DSCP << 2 | ECN). */
export const IP_TOS = 1;
/** `IP_RECVTOS`. */
export const IP_RECVTOS = 13;
/** `IP_FREEBIND`. */
export const IP_FREEBIND = 15;
/** `IP_TRANSPARENT`: accept/bind non-local addresses (TPROXY). Must be set before bind(). */
export const IP_TRANSPARENT = 19;
/** `IP_RECVORIGDSTADDR`: deliver `IP_ORIGDSTADDR` cmsgs on a UDP socket. */
export const IP_RECVORIGDSTADDR = 20;
/** `IP_BIND_ADDRESS_NO_PORT`: bind an address now, pick the port at connect(). */
export const IP_BIND_ADDRESS_NO_PORT = 24;
/** `SO_ORIGINAL_DST` at `SOL_IP`: destination before nft redirect/dnat (a sockaddr_in). */
export const SO_ORIGINAL_DST = 80;
/** `IPV6_V6ONLY`. */
export const IPV6_V6ONLY = 26;
/** `IPV6_RECVTCLASS`. */
export const IPV6_RECVTCLASS = 66;
/** `IPV6_TCLASS` (int: traffic class). */
export const IPV6_TCLASS = 67;
/** `IPV6_RECVORIGDSTADDR`: deliver `IPV6_ORIGDSTADDR` cmsgs. */
export const IPV6_RECVORIGDSTADDR = 74;
/** `IPV6_TRANSPARENT`: the IPv6 twin of `IP_TRANSPARENT`. */
export const IPV6_TRANSPARENT = 75;
/** `IPV6_FREEBIND`. */
export const IPV6_FREEBIND = 78;
/** `IP6T_SO_ORIGINAL_DST` at `SOL_IPV6`: the IPv6 original destination (a sockaddr_in6). */
export const IP6T_SO_ORIGINAL_DST = 80;
/** `TCP_NODELAY`. */
export const TCP_NODELAY = 1;

/** `shutdown()` how: stop receiving. */
export const SHUT_RD = 0;
/** `shutdown()` how: send FIN. */
export const SHUT_WR = 1;
/** `shutdown()` how: both. */
export const SHUT_RDWR = 2;

/** `MSG_PEEK`. */
export const MSG_PEEK = 2;
/** `MSG_TRUNC`. */
export const MSG_TRUNC = 0x20;
/** `MSG_DONTWAIT`. */
export const MSG_DONTWAIT = 0x40;
/** `MSG_NOSIGNAL` (SIGPIPE is ignored by Deno anyway; EPIPE is returned). */
export const MSG_NOSIGNAL = 0x4000;

/** `F_GETFL`. */
export const F_GETFL = 3;
/** `F_SETFL`. */
export const F_SETFL = 4;
/** `F_SETPIPE_SZ`. */
export const F_SETPIPE_SZ = 1031;
/** `F_GETPIPE_SZ`. */
export const F_GETPIPE_SZ = 1032;
/** `SPLICE_F_MOVE`. */
export const SPLICE_F_MOVE = 1;
/** `SPLICE_F_NONBLOCK`. */
export const SPLICE_F_NONBLOCK = 2;
/** `RLIMIT_NOFILE`. */
export const RLIMIT_NOFILE = 7;

const encoder = new TextEncoder();

// Scratch buffers of the synchronous wrappers below: the kernel fills them
// during the call and we decode (copy) before returning, so one set per
// isolate serves every call without allocating (hot per-flow path).
const scratchInt = new Int32Array(1);
const scratchIntBytes = new Uint8Array(scratchInt.buffer);
const scratchLen = new Uint32Array(1);
const scratchLenBytes = new Uint8Array(scratchLen.buffer);
const scratchAddr = new Uint8Array(SOCKADDR_STORAGE_LEN);

function fail(syscall: string, errno: number, detail?: string): never {
  throw new ErrnoError(syscall, errno, detail);
}

/** Creates a non-blocking, close-on-exec socket. */
export function socket(family: number, type: number, protocol = 0): number {
  const E = errnoView();
  const fd = libc().socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
  if (fd < 0) fail("socket", E[0]!);
  return fd;
}

/** Creates a non-blocking TCP socket of the family that `addr` (4 or 16 bytes) needs. */
export function tcpSocketFor(addr: Uint8Array): number {
  return socket(familyOf(addr), SOCK_STREAM);
}

/** Sets an `int` socket option. */
export function setsockoptInt(fd: number, level: number, opt: number, value: number): void {
  const E = errnoView();
  scratchInt[0] = value;
  const r = libc().setsockopt(fd, level, opt, scratchIntBytes, 4);
  if (r < 0) fail("setsockopt", E[0]!, `level=${level} opt=${opt}`);
}

/** Sets a socket option to raw bytes. */
export function setsockoptBytes(fd: number, level: number, opt: number, value: Uint8Array): void {
  const E = errnoView();
  const r = libc().setsockopt(fd, level, opt, value, value.length);
  if (r < 0) fail("setsockopt", E[0]!, `level=${level} opt=${opt}`);
}

/** Reads an `int` socket option. */
export function getsockoptInt(fd: number, level: number, opt: number): number {
  const E = errnoView();
  scratchInt[0] = 0;
  scratchLen[0] = 4;
  const r = libc().getsockopt(fd, level, opt, scratchIntBytes, scratchLenBytes);
  if (r < 0) fail("getsockopt", E[0]!, `level=${level} opt=${opt}`);
  return scratchInt[0]!;
}

/** Reads a socket option as bytes (at most `maxLen`); returns the bytes the kernel wrote. */
export function getsockoptBytes(
  fd: number,
  level: number,
  opt: number,
  maxLen: number,
): Uint8Array {
  const E = errnoView();
  const buf = new Uint8Array(maxLen);
  const len = new Uint32Array([maxLen]);
  const r = libc().getsockopt(fd, level, opt, buf, new Uint8Array(len.buffer));
  if (r < 0) fail("getsockopt", E[0]!, `level=${level} opt=${opt}`);
  return buf.subarray(0, Math.min(len[0]!, maxLen));
}

/** `SO_BINDTODEVICE`: send only through interface `name` (validated: 1..15 bytes, no NUL). */
export function bindToDevice(fd: number, name: string): void {
  if (name.length === 0 || name.length > 15 || name.includes("\0") || name.includes("/")) {
    throw new RangeError(`Cannot bind to interface "${name}": invalid interface name`);
  }
  setsockoptBytes(fd, SOL_SOCKET, SO_BINDTODEVICE, encoder.encode(name + "\0"));
}

/** Binds `fd` to `ep`. */
export function bind(fd: number, ep: Endpoint): void {
  const E = errnoView();
  const sa = encodeSockaddr(ep);
  const r = libc().bind(fd, sa, sa.length);
  if (r < 0) fail("bind", E[0]!);
}

/** Marks `fd` as a listening socket. */
export function listen(fd: number, backlog: number): void {
  const E = errnoView();
  const r = libc().listen(fd, backlog);
  if (r < 0) fail("listen", E[0]!);
}

/**
 * Accepts one connection (non-blocking, close-on-exec). Returns the new fd
 * or {@linkcode WOULD_BLOCK}; throws `ErrnoError` otherwise (EMFILE,
 * ECONNABORTED, …: callers decide which to survive).
 */
export function accept(fd: number): number {
  const E = errnoView();
  const r = libc().accept4(fd, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (r >= 0) return r;
  const e = E[0]!;
  if (e === Errno.EAGAIN) return WOULD_BLOCK;
  fail("accept4", e);
}

/**
 * Starts a connect. Returns true when connected at once, false when in
 * progress (EINPROGRESS: wait writable, then read `SO_ERROR`).
 */
export function connect(fd: number, ep: Endpoint): boolean {
  const E = errnoView();
  const sa = encodeSockaddr(ep);
  const r = libc().connect(fd, sa, sa.length);
  if (r === 0) return true;
  const e = E[0]!;
  if (e === Errno.EINPROGRESS || e === Errno.EINTR) return false;
  fail("connect", e);
}

/** The local address of `fd` (for a TPROXY-accepted socket: the original destination). */
export function getsockname(fd: number): Endpoint {
  const E = errnoView();
  scratchLen[0] = SOCKADDR_STORAGE_LEN;
  const r = libc().getsockname(fd, scratchAddr, scratchLenBytes);
  if (r < 0) fail("getsockname", E[0]!);
  return decodeSockaddr(scratchAddr, scratchLen[0]!);
}

/** The peer address of `fd`. */
export function getpeername(fd: number): Endpoint {
  const E = errnoView();
  scratchLen[0] = SOCKADDR_STORAGE_LEN;
  const r = libc().getpeername(fd, scratchAddr, scratchLenBytes);
  if (r < 0) fail("getpeername", E[0]!);
  return decodeSockaddr(scratchAddr, scratchLen[0]!);
}

/** `SO_DOMAIN`: the socket's address family. */
export const SO_DOMAIN = 39;

/** The address family of a socket (`AF_INET` / `AF_INET6`), via `SO_DOMAIN`. */
export function socketFamily(fd: number): number {
  return getsockoptInt(fd, SOL_SOCKET, SO_DOMAIN);
}

/** `recv`: bytes read (0 = EOF) or {@linkcode WOULD_BLOCK}. */
export function recv(fd: number, buf: Uint8Array, flags = 0): number {
  const E = errnoView();
  const r = libc().recv(fd, buf, buf.length, flags);
  if (r >= 0) return r;
  const e = E[0]!;
  if (e === Errno.EAGAIN) return WOULD_BLOCK;
  if (e === Errno.EINTR) return recv(fd, buf, flags);
  fail("recv", e);
}

/** `send` with MSG_NOSIGNAL: bytes written or {@linkcode WOULD_BLOCK}. */
export function send(fd: number, buf: Uint8Array, flags = 0): number {
  const E = errnoView();
  const r = libc().send(fd, buf, buf.length, flags | MSG_NOSIGNAL);
  if (r >= 0) return r;
  const e = E[0]!;
  if (e === Errno.EAGAIN) return WOULD_BLOCK;
  if (e === Errno.EINTR) return send(fd, buf, flags);
  fail("send", e);
}

/** `shutdown`; ENOTCONN (peer already gone) is ignored. */
export function shutdown(fd: number, how: number): void {
  const E = errnoView();
  const r = libc().shutdown(fd, how);
  if (r < 0) {
    const e = E[0]!;
    if (e !== Errno.ENOTCONN) fail("shutdown", e);
  }
}

/** `close`; EINTR is not retried (Linux releases the fd anyway). */
export function close(fd: number): void {
  const E = errnoView();
  const r = libc().close(fd);
  if (r < 0) {
    const e = E[0]!;
    if (e !== Errno.EINTR) fail("close", e);
  }
}

/** Sets `SO_LINGER {on, 0}` so that close() sends a RST instead of a FIN. */
export function setLingerZero(fd: number): void {
  setsockoptBytes(fd, SOL_SOCKET, SO_LINGER, LINGER_ZERO);
}

/** `struct linger { 1, 0 }`, read-only input of {@linkcode setLingerZero}. */
const LINGER_ZERO = new Uint8Array(new Int32Array([1, 0]).buffer);

/** Creates a non-blocking, close-on-exec pipe: `[readFd, writeFd]`. */
export function pipe(): [number, number] {
  const E = errnoView();
  const fds = new Int32Array(2);
  const r = libc().pipe2(new Uint8Array(fds.buffer), SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (r < 0) fail("pipe2", E[0]!);
  return [fds[0]!, fds[1]!];
}

/** `fcntl(fd, cmd, arg)` (int form). */
export function fcntl(fd: number, cmd: number, arg: number): number {
  const E = errnoView();
  const r = libc().fcntl(fd, cmd, arg);
  if (r < 0) fail("fcntl", E[0]!, `cmd=${cmd}`);
  return r;
}

/**
 * Tries to resize a pipe to `size` bytes; returns the size in force
 * (unchanged when the kernel refuses, e.g. above fs.pipe-max-size).
 */
export function setPipeSize(fd: number, size: number): number {
  const E = errnoView();
  const r = libc().fcntl(fd, F_SETPIPE_SZ, size);
  if (r >= 0) return r;
  const e = E[0]!;
  if (e === Errno.EPERM || e === Errno.EBUSY || e === Errno.EINVAL) {
    return fcntl(fd, F_GETPIPE_SZ, 0);
  }
  fail("fcntl", e, "F_SETPIPE_SZ");
}

/**
 * `splice(fdIn, NULL, fdOut, NULL, len, flags)`: bytes moved (0 = EOF on
 * fdIn) or {@linkcode WOULD_BLOCK}.
 */
export function splice(fdIn: number, fdOut: number, len: number, flags: number): number {
  const E = errnoView();
  const r = libc().splice(fdIn, null, fdOut, null, len, flags);
  if (r >= 0) return r;
  const e = E[0]!;
  if (e === Errno.EAGAIN) return WOULD_BLOCK;
  if (e === Errno.EINTR) return splice(fdIn, fdOut, len, flags);
  fail("splice", e);
}

/** `read` on a non-blocking fd: bytes read or {@linkcode WOULD_BLOCK}. */
export function read(fd: number, buf: Uint8Array): number {
  const E = errnoView();
  const r = libc().read(fd, buf, buf.length);
  if (r >= 0) return r;
  const e = E[0]!;
  if (e === Errno.EAGAIN) return WOULD_BLOCK;
  fail("read", e);
}

/** `write` on a non-blocking fd: bytes written or {@linkcode WOULD_BLOCK}. */
export function write(fd: number, buf: Uint8Array): number {
  const E = errnoView();
  const r = libc().write(fd, buf, buf.length);
  if (r >= 0) return r;
  const e = E[0]!;
  if (e === Errno.EAGAIN) return WOULD_BLOCK;
  fail("write", e);
}

/** `if_nametoindex`; throws ErrnoError (ENODEV) for an unknown interface. */
export function ifNameToIndex(name: string): number {
  const E = errnoView();
  const r = libc().if_nametoindex(encoder.encode(name + "\0"));
  if (r === 0) fail("if_nametoindex", E[0]! || Errno.ENODEV, name);
  return r;
}

/** Reads `RLIMIT_NOFILE` as `{ soft, hard }` (numbers; "unlimited" is 2^64-1 rounded). */
export function getNofileLimit(): { soft: number; hard: number } {
  const E = errnoView();
  const v = new BigUint64Array(2);
  const r = libc().getrlimit(RLIMIT_NOFILE, new Uint8Array(v.buffer));
  if (r < 0) fail("getrlimit", E[0]!);
  return { soft: Number(v[0]!), hard: Number(v[1]!) };
}

/** Sets `RLIMIT_NOFILE` (used by tests to provoke EMFILE). */
export function setNofileLimit(soft: number, hard: number): void {
  const E = errnoView();
  const v = new BigUint64Array([BigInt(soft), BigInt(hard)]);
  const r = libc().setrlimit(RLIMIT_NOFILE, new Uint8Array(v.buffer));
  if (r < 0) fail("setrlimit", E[0]!);
}

/** Options applied to a fresh socket before bind/connect. */
export interface SocketOptions {
  /** `SO_MARK` (fwmark) for policy routing; 0 leaves it unset. */
  mark?: number;
  /** `SO_BINDTODEVICE` interface name. */
  bindInterface?: string;
  /** `IP_TOS` (IPv4) / `IPV6_TCLASS` (IPv6) byte, 0..255. */
  tos?: number;
}

/** Applies {@linkcode SocketOptions} to `fd` of the given family. */
export function applySocketOptions(fd: number, family: number, opts: SocketOptions): void {
  if (opts.mark !== undefined && opts.mark !== 0) {
    if (!Number.isInteger(opts.mark) || opts.mark < 0 || opts.mark > 0xffffffff) {
      throw new RangeError(`Cannot set mark ${opts.mark}: expected 0..0xffffffff`);
    }
    setsockoptInt(fd, SOL_SOCKET, SO_MARK, opts.mark | 0);
  }
  if (opts.bindInterface !== undefined) bindToDevice(fd, opts.bindInterface);
  if (opts.tos !== undefined) {
    if (!Number.isInteger(opts.tos) || opts.tos < 0 || opts.tos > 255) {
      throw new RangeError(`Cannot set tos ${opts.tos}: expected 0..255`);
    }
    if (family === AF_INET) setsockoptInt(fd, SOL_IP, IP_TOS, opts.tos);
    else setsockoptInt(fd, SOL_IPV6, IPV6_TCLASS, opts.tos);
  }
}

/** Family constant for a family number, for messages. */
export function familyName(family: number): string {
  return family === AF_INET ? "AF_INET" : family === AF_INET6 ? "AF_INET6" : `AF_${family}`;
}

/**
 * Reusable buffers for {@linkcode recvMsg}: a `struct msghdr` with one
 * iovec over `data`, a control buffer and a name buffer. After a receive,
 * `nameLen`, `controlLen` and `flags` hold what the kernel wrote.
 */
export class MsgBuffers {
  /** Payload buffer. */
  readonly data: Uint8Array;
  /** Control (cmsg) buffer; parse `control.subarray(0, controlLen)` with `parseCmsgs`. */
  readonly control: Uint8Array;
  /** Source address buffer; decode with `decodeSockaddr(name, nameLen)`. */
  readonly name: Uint8Array;
  /** Bytes of `name` written by the last receive. */
  nameLen = 0;
  /** Bytes of `control` written by the last receive. */
  controlLen = 0;
  /** `msg_flags` of the last receive (MSG_TRUNC, MSG_CTRUNC, …). */
  flags = 0;
  readonly #hdr: Uint8Array;
  readonly #hdrView: DataView;
  readonly #iov: Uint8Array;

  /** Allocates the buffers (off-heap, so their addresses are stable). */
  constructor(dataSize: number, controlSize = 256, nameSize = SOCKADDR_STORAGE_LEN) {
    this.data = new Uint8Array(new ArrayBuffer(dataSize));
    this.control = new Uint8Array(new ArrayBuffer(Math.max(controlSize, 8)));
    this.name = new Uint8Array(new ArrayBuffer(Math.max(nameSize, 8)));
    this.#hdr = new Uint8Array(new ArrayBuffer(MSGHDR_LEN));
    this.#hdrView = new DataView(this.#hdr.buffer);
    this.#iov = new Uint8Array(new ArrayBuffer(IOVEC_LEN));
    const iv = new DataView(this.#iov.buffer);
    iv.setBigUint64(0, ptrOf(this.data), true);
    iv.setBigUint64(8, BigInt(dataSize), true);
    const h = this.#hdrView;
    h.setBigUint64(0, ptrOf(this.name), true);
    h.setBigUint64(16, ptrOf(this.#iov), true);
    h.setBigUint64(24, 1n, true);
    h.setBigUint64(32, ptrOf(this.control), true);
  }

  /** The msghdr, reset for a receive (lengths restored to the buffer sizes). */
  prepare(): Uint8Array {
    const h = this.#hdrView;
    h.setUint32(8, this.name.length, true);
    h.setBigUint64(40, BigInt(this.control.length), true);
    h.setInt32(48, 0, true);
    return this.#hdr;
  }

  /** Reads back lengths and flags after a receive. */
  finish(): void {
    const h = this.#hdrView;
    this.nameLen = h.getUint32(8, true);
    this.controlLen = Number(h.getBigUint64(40, true));
    this.flags = h.getInt32(48, true);
  }
}

const MSGHDR_LEN = 56;
const IOVEC_LEN = 16;

function ptrOf(buf: Uint8Array): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf)));
}

/** `recvmsg` into `m`: bytes received or {@linkcode WOULD_BLOCK}. */
export function recvMsg(fd: number, m: MsgBuffers, flags = 0): number {
  const E = errnoView();
  const hdr = m.prepare();
  const r = libc().recvmsg(fd, hdr, flags);
  if (r >= 0) {
    m.finish();
    return r;
  }
  const e = E[0]!;
  if (e === Errno.EAGAIN) return WOULD_BLOCK;
  if (e === Errno.EINTR) return recvMsg(fd, m, flags);
  fail("recvmsg", e);
}

/**
 * `sendmsg` of one buffer, optionally to `dest` and with a control buffer
 * (from `buildCmsgs`): bytes sent or {@linkcode WOULD_BLOCK}.
 */
export function sendMsg(
  fd: number,
  data: Uint8Array,
  dest: Endpoint | null,
  control: Uint8Array | null = null,
  flags = 0,
): number {
  const E0 = errnoView();
  const hdr = new Uint8Array(new ArrayBuffer(MSGHDR_LEN));
  const iov = new Uint8Array(new ArrayBuffer(IOVEC_LEN));
  const h = new DataView(hdr.buffer);
  const iv = new DataView(iov.buffer);
  // Copy small payloads off-heap so their address is stable for the call.
  const body = data.length > 0 ? data : new Uint8Array(new ArrayBuffer(1)).subarray(0, 0);
  iv.setBigUint64(0, body.length > 0 ? ptrOf(body) : 0n, true);
  iv.setBigUint64(8, BigInt(body.length), true);
  let sa: Uint8Array | null = null;
  if (dest) {
    const enc = encodeSockaddr(dest);
    sa = new Uint8Array(new ArrayBuffer(enc.length));
    sa.set(enc);
    h.setBigUint64(0, ptrOf(sa), true);
    h.setUint32(8, sa.length, true);
  }
  h.setBigUint64(16, ptrOf(iov), true);
  h.setBigUint64(24, 1n, true);
  if (control && control.length > 0) {
    h.setBigUint64(32, ptrOf(control), true);
    h.setBigUint64(40, BigInt(control.length), true);
  }
  const r = libc().sendmsg(fd, hdr, flags | MSG_NOSIGNAL);
  if (r >= 0) return r;
  const e = E0[0]!;
  // Keep the buffers referenced until after the call.
  void sa;
  if (e === Errno.EAGAIN) return WOULD_BLOCK;
  fail("sendmsg", e);
}
