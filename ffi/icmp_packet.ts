/**
 * Pure builders of ICMP "port unreachable" messages for UDP refusals
 * (RFC 792, RFC 4443): the router never sees the client's packet, only its
 * payload, so the quoted "invoking packet" — IPv4/IPv6 header plus UDP
 * header (with a correct UDP checksum over the whole payload) plus leading
 * payload bytes — is rebuilt from the session's addresses, ports and
 * payload. Linux matches an ICMP error to a socket by the quoted addresses
 * and ports, so a connected UDP socket of the client gets `ECONNREFUSED`.
 *
 * No I/O here; `icmp.ts` sends the messages.
 *
 * @module
 */

import type { Endpoint } from "../core/types.ts";

/** ICMPv4 type "destination unreachable". */
export const ICMP_DEST_UNREACH = 3;
/** ICMPv4 code "port unreachable". */
export const ICMP_PORT_UNREACH = 3;
/** ICMPv6 type "destination unreachable". */
export const ICMPV6_DEST_UNREACH = 1;
/** ICMPv6 code "port unreachable". */
export const ICMPV6_PORT_UNREACH = 4;
/** IP protocol number of UDP. */
export const PROTO_UDP = 17;
/** IP protocol number of ICMPv6 (next header of the ICMPv6 pseudo-header). */
export const PROTO_ICMPV6 = 58;
/** IPv6 minimum MTU: an ICMPv6 error (IPv6 header included) must fit in it (RFC 4443 §2.4c). */
export const IPV6_MIN_MTU = 1280;
/** Bytes of the invoking packet an ICMPv6 error can quote: 1280 − IPv6 (40) − ICMPv6 (8). */
export const ICMPV6_MAX_QUOTE = IPV6_MIN_MTU - 40 - 8;
/** Bytes of the invoking datagram an ICMPv4 error quotes after the IP header (RFC 792: 64 bits). */
export const ICMPV4_QUOTE_DATA = 8;

const IPV4_HEADER = 20;
const IPV6_HEADER = 40;
const UDP_HEADER = 8;
const ICMP_HEADER = 8;
/** Largest UDP payload that fits the 16-bit IPv4 total length. */
const MAX_V4_PAYLOAD = 0xffff - IPV4_HEADER - UDP_HEADER;
/** Largest UDP payload that fits the 16-bit UDP length (no jumbograms). */
const MAX_V6_PAYLOAD = 0xffff - UDP_HEADER;

/**
 * Adds `b[start..end)` as big-endian 16-bit words to the running sum `acc`
 * (an odd last byte is padded with zero). Segments before the last must be
 * of even length. Returns the unfolded sum.
 */
export function sum16(b: Uint8Array, acc = 0, start = 0, end: number = b.length): number {
  let s = acc;
  let i = start;
  for (; i + 1 < end; i += 2) s += (b[i]! << 8) | b[i + 1]!;
  if (i < end) s += b[i]! << 8;
  // Fold now and then so the sum stays an exact small integer.
  while (s > 0xffffffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
}

/** Folds a running {@linkcode sum16} to 16 bits and complements it: the Internet checksum (RFC 1071). */
export function finishChecksum(sum: number): number {
  let s = sum;
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return ~s & 0xffff;
}

/** The Internet checksum (RFC 1071) of `b`. */
export function internetChecksum(b: Uint8Array): number {
  return finishChecksum(sum16(b));
}

/** Sum of the UDP/ICMPv6 pseudo-header (addresses, upper-layer length, next header). */
function pseudoSum(src: Uint8Array, dst: Uint8Array, length: number, proto: number): number {
  let s = sum16(src) + sum16(dst) + proto;
  if (src.length === 16) s += Math.floor(length / 0x10000) + (length & 0xffff);
  else s += length;
  return s;
}

/**
 * The UDP checksum of a datagram from `src` to `dst` with `payload`
 * (RFC 768 / RFC 8200 §8.1 pseudo-header), computed without copying the
 * payload. A computed 0 is sent as 0xffff.
 */
export function udpChecksum(src: Endpoint, dst: Endpoint, payload: Uint8Array): number {
  const len = UDP_HEADER + payload.length;
  const hdr = udpHeader(src.port, dst.port, len, 0);
  const s = sum16(payload, sum16(hdr, pseudoSum(src.addr, dst.addr, len, PROTO_UDP)));
  return finishChecksum(s) || 0xffff;
}

function udpHeader(sport: number, dport: number, len: number, csum: number): Uint8Array {
  const h = new Uint8Array(UDP_HEADER);
  const v = new DataView(h.buffer);
  v.setUint16(0, sport);
  v.setUint16(2, dport);
  v.setUint16(4, len);
  v.setUint16(6, csum);
  return h;
}

/** Fields of the rebuilt invoking packet that the router cannot know; defaults are typical. */
export interface InvokingPacketOptions {
  /** IPv4 TTL / IPv6 hop limit (default 64). */
  ttl?: number;
  /** IPv4 TOS / IPv6 traffic class byte (default 0). */
  tos?: number;
  /** IPv4 identification (default 0). */
  id?: number;
}

function checkPair(client: Endpoint, dst: Endpoint): 4 | 16 {
  const n = client.addr.length;
  if ((n !== 4 && n !== 16) || dst.addr.length !== n) {
    throw new RangeError(
      `Cannot build a UDP packet from a ${n}-byte to a ${dst.addr.length}-byte address`,
    );
  }
  for (const [what, p] of [["source", client.port], ["destination", dst.port]] as const) {
    if (!Number.isInteger(p) || p < 0 || p > 0xffff) {
      throw new RangeError(`Cannot build a UDP packet: ${what} port ${p} out of range`);
    }
  }
  return n;
}

function byteOpt(what: string, v: number | undefined, dflt: number, max: number): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < 0 || v > max) {
    throw new RangeError(`Cannot build a UDP packet: ${what} ${v} out of range 0..${max}`);
  }
  return v;
}

/**
 * The leading `limit` bytes of the IPv4 (20-byte header, no options) or
 * IPv6 (40-byte header, no extension headers) UDP packet `client` → `dst`
 * carrying `payload`, with correct lengths and checksums (IPv4 header and
 * UDP). The full packet is returned when `limit` is absent.
 */
export function buildUdpPacket(
  client: Endpoint,
  dst: Endpoint,
  payload: Uint8Array,
  opts: InvokingPacketOptions = {},
  limit = Infinity,
): Uint8Array {
  const family = checkPair(client, dst);
  const ttl = byteOpt("ttl", opts.ttl, 64, 255);
  const tos = byteOpt("tos", opts.tos, 0, 255);
  const id = byteOpt("id", opts.id, 0, 0xffff);
  const maxPayload = family === 4 ? MAX_V4_PAYLOAD : MAX_V6_PAYLOAD;
  if (payload.length > maxPayload) {
    throw new RangeError(
      `Cannot build a UDP packet: payload of ${payload.length} bytes exceeds ${maxPayload}`,
    );
  }
  const ipLen = family === 4 ? IPV4_HEADER : IPV6_HEADER;
  const udpLen = UDP_HEADER + payload.length;
  const total = ipLen + udpLen;
  const out = new Uint8Array(Math.min(total, Math.max(0, Math.floor(limit))));
  const full = new Uint8Array(ipLen + UDP_HEADER);
  const v = new DataView(full.buffer);
  if (family === 4) {
    v.setUint8(0, 0x45);
    v.setUint8(1, tos);
    v.setUint16(2, total);
    v.setUint16(4, id);
    v.setUint16(6, 0x4000); // DF, as Linux sends UDP with path MTU discovery on
    v.setUint8(8, ttl);
    v.setUint8(9, PROTO_UDP);
    full.set(client.addr, 12);
    full.set(dst.addr, 16);
    v.setUint16(10, internetChecksum(full.subarray(0, IPV4_HEADER)));
  } else {
    v.setUint32(0, (6 << 28) | (tos << 20));
    v.setUint16(4, udpLen);
    v.setUint8(6, PROTO_UDP);
    v.setUint8(7, ttl);
    full.set(client.addr, 8);
    full.set(dst.addr, 24);
  }
  full.set(udpHeader(client.port, dst.port, udpLen, udpChecksum(client, dst, payload)), ipLen);
  out.set(full.subarray(0, Math.min(full.length, out.length)));
  if (out.length > full.length) out.set(payload.subarray(0, out.length - full.length), full.length);
  return out;
}

/**
 * The ICMPv4 message (no outer IP header) "destination unreachable / port
 * unreachable" that `dst` would send to `client` for its UDP datagram with
 * `payload`: type 3, code 3, checksum, 4 unused bytes, then the invoking
 * packet's IP header and the first 8 bytes of its datagram (RFC 792).
 */
export function icmpv4PortUnreachable(
  client: Endpoint,
  dst: Endpoint,
  payload: Uint8Array,
  opts: InvokingPacketOptions = {},
): Uint8Array {
  if (client.addr.length !== 4) throw new RangeError("icmpv4PortUnreachable: IPv4 addresses only");
  const quote = buildUdpPacket(client, dst, payload, opts, IPV4_HEADER + ICMPV4_QUOTE_DATA);
  const msg = new Uint8Array(ICMP_HEADER + quote.length);
  msg[0] = ICMP_DEST_UNREACH;
  msg[1] = ICMP_PORT_UNREACH;
  msg.set(quote, ICMP_HEADER);
  new DataView(msg.buffer).setUint16(2, internetChecksum(msg));
  return msg;
}

/**
 * The ICMPv6 message "destination unreachable / port unreachable" (type 1,
 * code 4) that `dst` would send to `client` for its UDP datagram with
 * `payload`: as much of the invoking packet as keeps the error within 1280
 * bytes (RFC 4443 §3.1). The checksum covers the pseudo-header with `dst` as
 * source and `client` as destination (the kernel recomputes the same value
 * on a raw ICMPv6 socket).
 */
export function icmpv6PortUnreachable(
  client: Endpoint,
  dst: Endpoint,
  payload: Uint8Array,
  opts: InvokingPacketOptions = {},
): Uint8Array {
  if (client.addr.length !== 16) {
    throw new RangeError("icmpv6PortUnreachable: IPv6 addresses only");
  }
  const quote = buildUdpPacket(client, dst, payload, opts, ICMPV6_MAX_QUOTE);
  const msg = new Uint8Array(ICMP_HEADER + quote.length);
  msg[0] = ICMPV6_DEST_UNREACH;
  msg[1] = ICMPV6_PORT_UNREACH;
  msg.set(quote, ICMP_HEADER);
  const s = sum16(msg, pseudoSum(dst.addr, client.addr, msg.length, PROTO_ICMPV6));
  new DataView(msg.buffer).setUint16(2, finishChecksum(s));
  return msg;
}

/** The port-unreachable message of `client`'s family (see the two builders). */
export function portUnreachable(
  client: Endpoint,
  dst: Endpoint,
  payload: Uint8Array,
  opts: InvokingPacketOptions = {},
): Uint8Array {
  return client.addr.length === 4
    ? icmpv4PortUnreachable(client, dst, payload, opts)
    : icmpv6PortUnreachable(client, dst, payload, opts);
}
