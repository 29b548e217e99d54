/**
 * Ancillary data (`struct cmsghdr` sequences) as pure functions over bytes.
 * Layout on 64-bit Linux:
 *
 * ```
 * cmsghdr: size_t cmsg_len (8) · int cmsg_level (4) · int cmsg_type (4) · data … pad to 8
 * CMSG_LEN(n) = 16 + n        CMSG_SPACE(n) = 16 + align8(n)
 * ```
 *
 * @module
 */

import type { Endpoint } from "../core/types.ts";
import { decodeSockaddr } from "./sockaddr.ts";

/** One control message. `data` is a view into the parsed buffer (copy it to keep it). */
export interface Cmsg {
  readonly level: number;
  readonly type: number;
  readonly data: Uint8Array;
}

/** Size of `struct cmsghdr` on 64-bit Linux. */
export const CMSG_HDR_LEN = 16;

/** `CMSG_ALIGN`: rounds up to the 8-byte alignment of `size_t`. */
export function cmsgAlign(n: number): number {
  return (n + 7) & ~7;
}

/** `CMSG_SPACE(n)`: bytes one message with `n` data bytes occupies, padding included. */
export function cmsgSpace(n: number): number {
  return CMSG_HDR_LEN + cmsgAlign(n);
}

/** `CMSG_LEN(n)`: the `cmsg_len` value of a message with `n` data bytes. */
export function cmsgLen(n: number): number {
  return CMSG_HDR_LEN + n;
}

const SOL_IP = 0;
const SOL_IPV6 = 41;
/** `IP_ORIGDSTADDR` cmsg type (a `sockaddr_in`), enabled by `IP_RECVORIGDSTADDR`. */
export const IP_ORIGDSTADDR = 20;
/** `IPV6_ORIGDSTADDR` cmsg type (a `sockaddr_in6`), enabled by `IPV6_RECVORIGDSTADDR`. */
export const IPV6_ORIGDSTADDR = 74;
/** `SO_MARK` cmsg type at `SOL_SOCKET` (delivered when `SO_RCVMARK` is on). */
export const SCM_MARK = 36;
/** `IP_TOS` cmsg type (1 byte), enabled by `IP_RECVTOS`. */
export const IP_TOS_CMSG = 1;
/** `IPV6_TCLASS` cmsg type (an int), enabled by `IPV6_RECVTCLASS`. */
export const IPV6_TCLASS_CMSG = 67;

/**
 * Parses the first `len` bytes of a control buffer (msg_controllen after
 * recvmsg). Stops at a truncated or malformed header instead of throwing.
 */
export function parseCmsgs(buf: Uint8Array, len: number = buf.length): Cmsg[] {
  const out: Cmsg[] = [];
  const end = Math.min(len, buf.length);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let off = 0;
  while (off + CMSG_HDR_LEN <= end) {
    const cmsgLenValue = Number(dv.getBigUint64(off, true));
    if (cmsgLenValue < CMSG_HDR_LEN || off + cmsgLenValue > end) break;
    out.push({
      level: dv.getInt32(off + 8, true),
      type: dv.getInt32(off + 12, true),
      data: buf.subarray(off + CMSG_HDR_LEN, off + cmsgLenValue),
    });
    off += cmsgAlign(cmsgLenValue);
  }
  return out;
}

/** Builds a control buffer holding `msgs`, each padded to `CMSG_SPACE`. */
export function buildCmsgs(msgs: readonly Cmsg[]): Uint8Array {
  let total = 0;
  for (const m of msgs) total += cmsgSpace(m.data.length);
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  let off = 0;
  for (const m of msgs) {
    dv.setBigUint64(off, BigInt(cmsgLen(m.data.length)), true);
    dv.setInt32(off + 8, m.level, true);
    dv.setInt32(off + 12, m.type, true);
    out.set(m.data, off + CMSG_HDR_LEN);
    off += cmsgSpace(m.data.length);
  }
  return out;
}

/**
 * The original destination of a TPROXY'd UDP datagram: the data of an
 * `IP_ORIGDSTADDR` (level 0, type 20) or `IPV6_ORIGDSTADDR` (level 41,
 * type 74) message; null when absent.
 */
export function findOrigDst(msgs: readonly Cmsg[]): Endpoint | null {
  for (const m of msgs) {
    if (
      (m.level === SOL_IP && m.type === IP_ORIGDSTADDR) ||
      (m.level === SOL_IPV6 && m.type === IPV6_ORIGDSTADDR)
    ) {
      return decodeSockaddr(m.data);
    }
  }
  return null;
}

/** The `SO_MARK` of a received packet (SOL_SOCKET / SCM_MARK, a u32), or null. */
export function findMark(msgs: readonly Cmsg[], solSocket = 1): number | null {
  for (const m of msgs) {
    if (m.level === solSocket && m.type === SCM_MARK && m.data.length >= 4) {
      return new DataView(m.data.buffer, m.data.byteOffset, 4).getUint32(0, true);
    }
  }
  return null;
}

/**
 * The TOS / traffic-class byte of a received datagram from its cmsgs:
 * `SOL_IP`/`IP_TOS` (1 byte, with `IP_RECVTOS`) or `SOL_IPV6`/`IPV6_TCLASS`
 * (a native-endian int, with `IPV6_RECVTCLASS`); null when absent. An IPv4
 * datagram on a dual-stack socket arrives with `IP_TOS`.
 */
export function findTos(msgs: readonly Cmsg[]): number | null {
  for (const m of msgs) {
    if (m.level === 0 /* SOL_IP */ && m.type === IP_TOS_CMSG && m.data.length >= 1) {
      return m.data[0]!;
    }
    if (m.level === 41 /* SOL_IPV6 */ && m.type === IPV6_TCLASS_CMSG && m.data.length >= 4) {
      return new DataView(m.data.buffer, m.data.byteOffset, 4).getInt32(0, true) & 0xff;
    }
  }
  return null;
}
