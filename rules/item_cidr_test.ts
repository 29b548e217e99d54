import assert from "node:assert/strict";
import { parseIp } from "../core/ip.ts";
import { cidrContains, CidrIndex, CidrIndexBuilder } from "./item_cidr.ts";
import type { Cidr } from "./spec.ts";

function c(text: string): Cidr {
  const [ip, p] = text.split("/");
  return { addr: parseIp(ip!)!, prefix: Number(p) };
}

function hits(prefixes: string[][], ip: string): number[] {
  const b = new CidrIndexBuilder();
  prefixes.forEach((ps, i) => b.add(i, ps.map(c)));
  const out = new Set<number>();
  b.build().lookup(parseIp(ip)!, (n) => out.add(n));
  return [...out].sort();
}

Deno.test("CidrIndex.lookup() finds every rule whose IPv4 prefix contains the address", () => {
  const rules = [["10.0.0.0/8"], ["10.1.0.0/16", "192.168.0.0/16"], ["10.1.2.3/32"], ["0.0.0.0/0"]];
  assert.deepEqual(hits(rules, "10.1.2.3"), [0, 1, 2, 3]);
  assert.deepEqual(hits(rules, "10.2.0.1"), [0, 3]);
  assert.deepEqual(hits(rules, "192.168.7.7"), [1, 3]);
  assert.deepEqual(hits(rules, "11.0.0.1"), [3]);
});

Deno.test("CidrIndex.lookup() handles IPv6 and keeps families apart", () => {
  const rules = [["2001:db8::/32"], ["2001:db8:1::/48"], ["::/0"], ["0.0.0.0/0"]];
  assert.deepEqual(hits(rules, "2001:db8:1::5"), [0, 1, 2]);
  assert.deepEqual(hits(rules, "2001:db9::1"), [2]);
  assert.deepEqual(hits(rules, "1.2.3.4"), [3]);
});

Deno.test("CidrIndex.lookup() respects odd prefix lengths", () => {
  const rules = [["172.16.0.0/12"], ["fe80::/10"]];
  assert.deepEqual(hits(rules, "172.31.255.255"), [0]);
  assert.deepEqual(hits(rules, "172.32.0.0"), []);
  assert.deepEqual(hits(rules, "febf::1"), [1]);
  assert.deepEqual(hits(rules, "fec0::1"), []);
});

Deno.test("cidrContains() agrees with the index on a sweep of addresses", () => {
  const prefixes = ["10.128.0.0/9", "10.0.0.0/31", "10.0.0.2/32"];
  for (let last = 0; last < 4; last++) {
    for (const second of [0, 127, 128, 255]) {
      const ip = `10.${second}.0.${last}`;
      const want = prefixes.map((p, i) => cidrContains(c(p), parseIp(ip)!) ? i : -1)
        .filter((i) => i >= 0);
      assert.deepEqual(hits(prefixes.map((p) => [p]), ip), want, ip);
    }
  }
});

Deno.test("CidrIndex.lookup() agrees with cidrContains() on random nested prefixes", () => {
  // Prefixes that share long runs of bits and addresses that leave them at
  // every possible bit, the jump table's 16 included.
  let seed = 0x51f7;
  const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
  for (let round = 0; round < 200; round++) {
    const v6 = round % 2 === 1, len = v6 ? 16 : 4;
    const base = Uint8Array.from({ length: len }, () => rnd(256));
    const cidrs: Cidr[] = [];
    for (let k = 0; k < 1 + rnd(6); k++) {
      const addr = base.slice();
      const prefix = rnd(len * 8 + 1);
      const at = rnd(len);
      if (rnd(2) === 1) addr[at] = addr[at]! ^ (1 << rnd(8)); // a sibling branch somewhere
      cidrs.push({ addr, prefix });
    }
    const b = new CidrIndexBuilder();
    cidrs.forEach((x, i) => b.add(i, [x]));
    const index = b.build();
    for (let t = 0; t < 60; t++) {
      const addr = base.slice();
      if (t > 0) {
        const bit = rnd(len * 8); // flip one bit: leaves the shared run there
        addr[bit >> 3] = addr[bit >> 3]! ^ (0x80 >> (bit & 7));
      }
      const want = cidrs.flatMap((x, i) => cidrContains(x, addr) ? [i] : []);
      const got = new Set<number>();
      index.lookup(addr, (n) => got.add(n));
      assert.deepEqual(
        [...got].sort((x, y) => x - y),
        want,
        `${[...addr]} in ${JSON.stringify(cidrs)}`,
      );
    }
  }
});

Deno.test("CidrIndex jump table: only the heads in use, found by rank at every bit position", () => {
  // Heads (first 16 bits) at the ends of the range and of 32-head words (bits 0 and 31),
  // next to each other, and under a short prefix only (no /16-or-longer below it).
  const heads = [0, 1, 30, 31, 32, 63, 64, 1000, 65503, 65534, 65535];
  const ipOf = (h: number, low = 7) => `${h >> 8}.${h & 255}.0.${low}`;
  const rules = heads.map((h) => [`${ipOf(h, 0)}/24`]);
  rules.push(["96.0.0.0/4"]); // heads 0x6000..0x6fff: above-only
  const b = new CidrIndexBuilder();
  rules.forEach((ps, i) => b.add(i, ps.map(c)));
  const img = b.buildImage();
  // 11 heads with a /24 below them + 4096 under the /4 (none of the 11 is in 96.0.0.0/4).
  assert.equal(img.v4!.jump.length, 2 * (heads.length + 4096));
  const index = new CidrIndex(img);
  const lookup = (ip: string) => {
    const out: number[] = [];
    index.lookup(parseIp(ip)!, (n) => out.push(n));
    return out.sort((x, y) => x - y);
  };
  heads.forEach((h, i) => {
    assert.deepEqual(lookup(ipOf(h)), [i], `head ${h}`);
    assert.deepEqual(lookup(`${h >> 8}.${h & 255}.1.7`), [], `head ${h}, outside its /24`);
  });
  for (const h of [2, 29, 33, 62, 65, 999, 65502]) {
    assert.deepEqual(lookup(ipOf(h)), [], `head ${h}`);
  }
  assert.deepEqual(lookup("96.0.0.1"), [heads.length]);
  assert.deepEqual(lookup("111.255.255.255"), [heads.length]);
  assert.deepEqual(lookup("112.0.0.0"), []);
});

Deno.test("index builders refuse a second build (their scratch may be another compile's by then)", () => {
  const b = new CidrIndexBuilder();
  b.add(0, [c("10.0.0.0/8")]);
  b.buildImage();
  assert.throws(() => b.buildImage(), /built twice/);
});
