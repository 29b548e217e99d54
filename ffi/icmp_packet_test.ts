import assert from "node:assert/strict";
import type { Endpoint } from "../core/types.ts";
import { parseIp } from "../core/ip.ts";
import {
  buildUdpPacket,
  icmpv4PortUnreachable,
  ICMPV6_MAX_QUOTE,
  icmpv6PortUnreachable,
  internetChecksum,
  portUnreachable,
  udpChecksum,
} from "./icmp_packet.ts";

const enc = new TextEncoder();

function ep(text: string, port: number): Endpoint {
  return { addr: parseIp(text)!, port };
}

const C4 = ep("10.1.2.3", 40000);
const D4 = ep("192.0.2.9", 53);
const C6 = ep("fd00::1", 40000);
const D6 = ep("2001:db8::9", 443);

/**
 * Reference Internet checksum, written differently from the code under
 * test: concatenate everything, read 16-bit words with a DataView, sum as a
 * BigInt, reduce modulo 0xffff (the end-around carry) and complement.
 */
function refChecksum(...parts: Uint8Array[]): number {
  const len = parts.reduce((n, p) => n + p.length, 0);
  const all = new Uint8Array(len + (len % 2));
  let off = 0;
  for (const p of parts) {
    all.set(p, off);
    off += p.length;
  }
  const dv = new DataView(all.buffer);
  let sum = 0n;
  for (let i = 0; i < all.length; i += 2) sum += BigInt(dv.getUint16(i));
  let folded = Number(sum % 0xffffn);
  if (folded === 0 && sum !== 0n) folded = 0xffff;
  return (~folded) & 0xffff;
}

function be16(n: number): Uint8Array {
  return Uint8Array.of(n >> 8, n & 0xff);
}

function be32(n: number): Uint8Array {
  return Uint8Array.of(n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
}

function refUdpChecksum(src: Endpoint, dst: Endpoint, payload: Uint8Array): number {
  const len = 8 + payload.length;
  const pseudo = src.addr.length === 4
    ? [src.addr, dst.addr, Uint8Array.of(0, 17), be16(len)]
    : [src.addr, dst.addr, be32(len), Uint8Array.of(0, 0, 0, 17)];
  const udp = [be16(src.port), be16(dst.port), be16(len), be16(0), payload];
  return refChecksum(...pseudo, ...udp) || 0xffff;
}

function hex(text: string): Uint8Array {
  const h = text.replace(/\s+/g, "");
  return Uint8Array.from(h.match(/../g)!, (x) => parseInt(x, 16));
}

function u16(b: Uint8Array, off: number): number {
  return (b[off]! << 8) | b[off + 1]!;
}

Deno.test("internetChecksum() matches RFC 1071's example and a real IPv4 header", () => {
  // RFC 1071 §3: 0001 f203 f4f5 f6f7 sums to ddf2, checksum 220d.
  assert.equal(internetChecksum(Uint8Array.of(0, 1, 0xf2, 3, 0xf4, 0xf5, 0xf6, 0xf7)), 0x220d);
  // A real IPv4 header (Wikipedia's example) with its checksum field zeroed.
  const hdr = hex("4500 0073 0000 4000 4011 0000 c0a8 0001 c0a8 00c7");
  assert.equal(internetChecksum(hdr), 0xb861);
  // An odd length pads the last byte with zero.
  assert.equal(
    internetChecksum(Uint8Array.of(0x12, 0x34, 0x56)),
    refChecksum(Uint8Array.of(0x12, 0x34, 0x56)),
  );
});

Deno.test("udpChecksum() agrees with the reference on random v4/v6 datagrams of every parity", () => {
  for (let i = 0; i < 200; i++) {
    const payload = crypto.getRandomValues(new Uint8Array(i * 7 % 1500));
    const v6 = i % 2 === 1;
    const src = {
      addr: crypto.getRandomValues(new Uint8Array(v6 ? 16 : 4)),
      port: i * 331 % 65536,
    };
    const dst = { addr: crypto.getRandomValues(new Uint8Array(v6 ? 16 : 4)), port: 65535 - i };
    assert.equal(udpChecksum(src, dst, payload), refUdpChecksum(src, dst, payload), `case ${i}`);
  }
});

Deno.test("udpChecksum() sends a computed 0 as 0xffff", () => {
  // With a 4-byte payload the rest of the sum is fixed; a last word equal to
  // the checksum of an all-zero payload makes the sum 0xffff: checksum 0.
  const c0 = udpChecksum(C4, D4, new Uint8Array(4));
  const p = Uint8Array.of(0, 0, c0 >> 8, c0 & 0xff);
  assert.equal(
    refChecksum(
      C4.addr,
      D4.addr,
      Uint8Array.of(0, 17),
      be16(12),
      be16(C4.port),
      be16(D4.port),
      be16(12),
      be16(0),
      p,
    ),
    0,
  );
  assert.equal(udpChecksum(C4, D4, p), 0xffff);
});

Deno.test("buildUdpPacket() writes an IPv4 header and UDP header byte for byte", () => {
  const payload = enc.encode("hello");
  const p = buildUdpPacket(C4, D4, payload, { ttl: 61, tos: 0xb8, id: 0x1234 });
  assert.equal(p.length, 20 + 8 + 5);
  assert.deepEqual([...p.subarray(0, 10)], [0x45, 0xb8, 0, 33, 0x12, 0x34, 0x40, 0, 61, 17]);
  assert.deepEqual([...p.subarray(12, 16)], [10, 1, 2, 3]);
  assert.deepEqual([...p.subarray(16, 20)], [192, 0, 2, 9]);
  assert.equal(internetChecksum(p.subarray(0, 20)), 0, "IPv4 header checksum verifies");
  const zeroed = p.slice(0, 20);
  zeroed[10] = zeroed[11] = 0;
  assert.equal(u16(p, 10), refChecksum(zeroed));
  assert.deepEqual([u16(p, 20), u16(p, 22), u16(p, 24)], [40000, 53, 13]);
  assert.equal(u16(p, 26), refUdpChecksum(C4, D4, payload));
  assert.deepEqual(p.subarray(28), payload);
});

Deno.test("buildUdpPacket() writes an IPv6 header and cuts the packet at `limit`", () => {
  const payload = enc.encode("0123456789");
  const p = buildUdpPacket(C6, D6, payload, { ttl: 7, tos: 0x28 });
  assert.equal(p.length, 40 + 8 + 10);
  assert.deepEqual([...p.subarray(0, 8)], [0x62, 0x80, 0, 0, 0, 18, 17, 7]);
  assert.deepEqual(p.subarray(8, 24), C6.addr);
  assert.deepEqual(p.subarray(24, 40), D6.addr);
  assert.deepEqual([u16(p, 40), u16(p, 42), u16(p, 44)], [40000, 443, 18]);
  assert.equal(u16(p, 46), refUdpChecksum(C6, D6, payload));
  const plain = buildUdpPacket(C6, D6, payload);
  assert.deepEqual([...plain.subarray(0, 8)], [0x60, 0, 0, 0, 0, 18, 17, 64], "defaults");
  assert.deepEqual(buildUdpPacket(C6, D6, payload, {}, 45), plain.subarray(0, 45));
  assert.equal(buildUdpPacket(C6, D6, payload, {}, 52).length, 52);
});

Deno.test("buildUdpPacket() rejects mixed families, bad ports, bad options and oversize payloads", () => {
  assert.throws(() => buildUdpPacket(C4, D6, new Uint8Array(1)), /4-byte to a 16-byte/);
  assert.throws(
    () => buildUdpPacket({ ...C4, port: 70000 }, D4, new Uint8Array(1)),
    /source port 70000/,
  );
  assert.throws(() => buildUdpPacket(C4, D4, new Uint8Array(1), { ttl: 256 }), /ttl 256/);
  assert.throws(() => buildUdpPacket(C4, D4, new Uint8Array(65508)), /exceeds 65507/);
  assert.equal(buildUdpPacket(C4, D4, new Uint8Array(65507), {}, 28).length, 28);
});

Deno.test("icmpv4PortUnreachable() is type 3 code 3 quoting the IP header and 8 bytes, with a valid checksum", () => {
  const payload = enc.encode("x".repeat(300));
  const m = icmpv4PortUnreachable(C4, D4, payload, { tos: 0x10 });
  assert.equal(m.length, 8 + 20 + 8);
  assert.deepEqual([...m.subarray(0, 2)], [3, 3]);
  assert.deepEqual([...m.subarray(4, 8)], [0, 0, 0, 0], "unused word");
  assert.equal(internetChecksum(m), 0, "ICMP checksum verifies");
  const zeroed = m.slice();
  zeroed[2] = zeroed[3] = 0;
  assert.equal(u16(m, 2), refChecksum(zeroed));
  assert.deepEqual(m.subarray(8), buildUdpPacket(C4, D4, payload, { tos: 0x10 }).subarray(0, 28));
  assert.equal(u16(m, 8 + 2), 20 + 8 + 300, "quoted total length is the full datagram's");
  assert.equal(u16(m, 8 + 26), refUdpChecksum(C4, D4, payload), "quoted UDP checksum");
  assert.throws(() => icmpv4PortUnreachable(C6, D6, payload), /IPv4 addresses only/);
});

Deno.test("icmpv6PortUnreachable() is type 1 code 4, fits 1280 bytes and checksums the pseudo-header", () => {
  for (const size of [0, 5, 1184, 1185, 3000]) {
    const payload = crypto.getRandomValues(new Uint8Array(size));
    const m = icmpv6PortUnreachable(C6, D6, payload);
    assert.equal(m.length, 8 + Math.min(48 + size, ICMPV6_MAX_QUOTE), `size ${size}`);
    assert.ok(40 + m.length <= 1280);
    assert.deepEqual([...m.subarray(0, 2)], [1, 4]);
    assert.deepEqual(m.subarray(8), buildUdpPacket(C6, D6, payload).subarray(0, m.length - 8));
    const zeroed = m.slice();
    zeroed[2] = zeroed[3] = 0;
    // Pseudo-header: the refusal goes from the original destination to the client.
    const pseudo = [D6.addr, C6.addr, be32(m.length), Uint8Array.of(0, 0, 0, 58)];
    assert.equal(u16(m, 2), refChecksum(...pseudo, zeroed), `size ${size}`);
  }
  assert.throws(() => icmpv6PortUnreachable(C4, D4, new Uint8Array(1)), /IPv6 addresses only/);
});

Deno.test("portUnreachable() picks the builder of the client's family", () => {
  const p = enc.encode("q");
  assert.deepEqual(portUnreachable(C4, D4, p), icmpv4PortUnreachable(C4, D4, p));
  assert.deepEqual(portUnreachable(C6, D6, p), icmpv6PortUnreachable(C6, D6, p));
});
