/**
 * `struct sockaddr_in` / `struct sockaddr_in6` ↔ {@linkcode Endpoint}, as
 * pure functions over bytes. Layouts (Linux):
 *
 * ```
 * sockaddr_in  (16 bytes): u16 family=2 (host order) · u16 port (BE) · 4 addr · 8 zero
 * sockaddr_in6 (28 bytes): u16 family=10 · u16 port (BE) · u32 flowinfo · 16 addr · u32 scope_id
 * ```
 *
 * IPv4-mapped IPv6 addresses are normalised to 4 bytes on decode.
 *
 * @module
 */

import type { Endpoint } from "../core/types.ts";
import { unmapIpv4 } from "../core/ip.ts";

/** Address family IPv4. */
export const AF_INET = 2;
/** Address family IPv6. */
export const AF_INET6 = 10;
/** Size of `struct sockaddr_in`. */
export const SOCKADDR_IN_LEN = 16;
/** Size of `struct sockaddr_in6`. */
export const SOCKADDR_IN6_LEN = 28;
/** Size of `struct sockaddr_storage`: enough for any address we decode. */
export const SOCKADDR_STORAGE_LEN = 128;

/** The address family (`AF_INET` / `AF_INET6`) an endpoint needs. */
export function familyOf(addr: Uint8Array): number {
  if (addr.length === 4) return AF_INET;
  if (addr.length === 16) return AF_INET6;
  throw new RangeError(`Cannot use IP address of ${addr.length} bytes: expected 4 or 16`);
}

function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`Cannot encode port ${port}: expected an integer 0..65535`);
  }
}

/**
 * Encodes an endpoint as `sockaddr_in` (4-byte address) or `sockaddr_in6`
 * (16-byte address). Returns a new buffer of exactly the struct's size.
 */
export function encodeSockaddr(ep: Endpoint): Uint8Array {
  checkPort(ep.port);
  const family = familyOf(ep.addr);
  const out = new Uint8Array(family === AF_INET ? SOCKADDR_IN_LEN : SOCKADDR_IN6_LEN);
  const dv = new DataView(out.buffer);
  dv.setUint16(0, family, true);
  dv.setUint16(2, ep.port, false);
  out.set(ep.addr, family === AF_INET ? 4 : 8);
  return out;
}

/**
 * Encodes an IPv4 endpoint as an IPv4-mapped `sockaddr_in6` (for an
 * AF_INET6 dual-stack socket); IPv6 endpoints encode unchanged.
 */
export function encodeSockaddr6(ep: Endpoint): Uint8Array {
  if (ep.addr.length !== 4) return encodeSockaddr(ep);
  const mapped = new Uint8Array(16);
  mapped[10] = 0xff;
  mapped[11] = 0xff;
  mapped.set(ep.addr, 12);
  return encodeSockaddr({ addr: mapped, port: ep.port });
}

/**
 * Decodes `sockaddr_in` / `sockaddr_in6` from the first `len` bytes of
 * `buf` (the socklen_t the kernel returned). Throws a `RangeError` for an
 * unknown family or a short buffer.
 */
export function decodeSockaddr(buf: Uint8Array, len: number = buf.length): Endpoint {
  if (len < 2 || buf.length < len) {
    throw new RangeError(`Cannot decode sockaddr: ${len} bytes`);
  }
  const dv = new DataView(buf.buffer, buf.byteOffset, len);
  const family = dv.getUint16(0, true);
  if (family === AF_INET) {
    if (len < 8) throw new RangeError(`Cannot decode sockaddr_in: ${len} bytes, need 8`);
    return { addr: buf.slice(4, 8), port: dv.getUint16(2, false) };
  }
  if (family === AF_INET6) {
    if (len < 24) throw new RangeError(`Cannot decode sockaddr_in6: ${len} bytes, need 24`);
    return { addr: unmapIpv4(buf.slice(8, 24)), port: dv.getUint16(2, false) };
  }
  throw new RangeError(`Cannot decode sockaddr: unknown family ${family}`);
}

/**
 * Decodes the answer of `getsockopt(SOL_IP, SO_ORIGINAL_DST)` (a
 * `sockaddr_in`) or `getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST)` (a
 * `sockaddr_in6`): the destination before an nft `redirect`/`dnat`.
 */
export function decodeOriginalDst(buf: Uint8Array, len: number = buf.length): Endpoint {
  return decodeSockaddr(buf, len);
}
