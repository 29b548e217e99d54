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

import { type Cmsg, findTos } from "../ffi/cmsg.ts";

export { findTos };

/** The mark bits `router tproxy-rules` ORs into steered packets by default (`--mark`). */
export const DEFAULT_TPROXY_MARK = 0x1;

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

/** DSCP of a received datagram from its cmsgs ({@linkcode findTos}), undefined when absent. */
export function dscpFromCmsgs(msgs: readonly Cmsg[]): number | undefined {
  const tos = findTos(msgs);
  return tos === null ? undefined : dscpFromTos(tos);
}
