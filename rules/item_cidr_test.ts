import assert from "node:assert/strict";
import { parseIp } from "../core/ip.ts";
import { cidrContains, CidrIndexBuilder } from "./item_cidr.ts";
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
