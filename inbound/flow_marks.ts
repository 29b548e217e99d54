/**
 * What the rule engine's `fwmark` and `dscp` items see of a flow, derived
 * from what the kernel hands the inbound:
 *
 * - TCP: `SO_MARK` of the accepted socket, which carries the SYN's
 *   netfilter mark when `net.ipv4.tcp_fwmark_accept=1` (safe with the
 *   policy rules of `router tproxy-rules`, see docs/fwmark.md). DSCP is not
 *   readable from an accepted socket: for TCP the box's nftables turns DSCP
 *   into mark bits (`ip dscp ef meta mark set meta mark | 0x100`) and
 *   rules match those with `fwmark`; `FlowMeta.dscp` stays undefined.
 * - UDP: the `SOL_SOCKET`/`SO_MARK` cmsg of each datagram (`SO_RCVMARK`,
 *   Linux ≥ 5.19) and the `IP_TOS` (1 byte, `IP_RECVTOS`) /
 *   `IPV6_TCLASS` (an int, `IPV6_RECVTCLASS`) cmsg.
 *
 * Our nftables ruleset ORs a TPROXY bit into the mark the box already set
 * (`meta mark set meta mark | 0x1`); {@linkcode markForRules} strips it so
 * rules see the box's mark alone.
 *
 * @module
 */

import { type Cmsg, IP_TOS_CMSG, IPV6_TCLASS_CMSG } from "../ffi/cmsg.ts";

/** The mark bits `router tproxy-rules` ORs into steered packets by default (`--mark`). */
export const DEFAULT_TPROXY_MARK = 0x1;

const SOL_IP = 0;
const SOL_IPV6 = 41;

/**
 * The mark rules match: `rawMark` without the TPROXY bits `tproxyMask`
 * (unsigned 32-bit). `null`/`undefined` (mark unknown) gives `undefined`.
 *
 * @example
 * ```ts
 * markForRules(0x101, 0x1); // 0x100
 * ```
 */
export function markForRules(
  rawMark: number | null | undefined,
  tproxyMask: number = DEFAULT_TPROXY_MARK,
): number | undefined {
  if (rawMark === undefined || rawMark === null) return undefined;
  return (rawMark & ~tproxyMask) >>> 0;
}

/** DSCP (0..63) of an IPv4 TOS / IPv6 traffic-class byte: its upper six bits. */
export function dscpFromTos(tos: number): number {
  return (tos & 0xfc) >>> 2;
}

/**
 * The TOS / traffic-class byte of a received datagram from its cmsgs:
 * `SOL_IP`/`IP_TOS` (1 byte, with `IP_RECVTOS`) or `SOL_IPV6`/`IPV6_TCLASS`
 * (a native-endian int, with `IPV6_RECVTCLASS`); null when absent. An IPv4
 * datagram on a dual-stack socket arrives with `IP_TOS`.
 */
export function findTos(msgs: readonly Cmsg[]): number | null {
  for (const m of msgs) {
    if (m.level === SOL_IP && m.type === IP_TOS_CMSG && m.data.length >= 1) return m.data[0]!;
    if (m.level === SOL_IPV6 && m.type === IPV6_TCLASS_CMSG && m.data.length >= 4) {
      return new DataView(m.data.buffer, m.data.byteOffset, 4).getInt32(0, true) & 0xff;
    }
  }
  return null;
}

/** DSCP of a received datagram from its cmsgs ({@linkcode findTos}), undefined when absent. */
export function dscpFromCmsgs(msgs: readonly Cmsg[]): number | undefined {
  const tos = findTos(msgs);
  return tos === null ? undefined : dscpFromTos(tos);
}
