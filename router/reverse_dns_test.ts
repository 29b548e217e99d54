import assert from "node:assert/strict";
import { parseIp } from "../core/ip.ts";
import { ReverseDnsMap } from "./reverse_dns.ts";

const answer = (name: string, ...ips: [string, number][]) => ({
  name,
  addresses: ips.map(([ip, ttl]) => ({ addr: parseIp(ip)!, ttl })),
});

Deno.test("ReverseDnsMap gives an address the name last answered for it, for its TTL within bounds", () => {
  let now = 0;
  const m = new ReverseDnsMap({ minTtlMs: 10_000, maxTtlMs: 100_000, now: () => now });
  m.record(answer("a.example", ["192.0.2.1", 1], ["2001:db8::1", 50]));
  m.record(answer("b.example", ["192.0.2.2", 1000]));
  assert.equal(m.lookup(parseIp("192.0.2.1")!), "a.example");
  assert.equal(m.lookup(parseIp("2001:db8::1")!), "a.example");
  assert.equal(m.lookup(parseIp("192.0.2.9")!), undefined);
  assert.equal(m.answers, 2);
  now = 9_999;
  assert.equal(m.lookup(parseIp("192.0.2.1")!), "a.example", "kept at least minTtlMs");
  now = 10_000;
  assert.equal(m.lookup(parseIp("192.0.2.1")!), undefined, "a TTL of 1 s: gone after 10 s");
  assert.equal(m.lookup(parseIp("2001:db8::1")!), "a.example", "its own TTL, 50 s");
  now = 100_000;
  assert.equal(m.lookup(parseIp("192.0.2.2")!), undefined, "1000 s capped at 100 s");
  // A later answer for an address wins.
  m.record(answer("c.example", ["2001:db8::1", 60]));
  assert.equal(m.lookup(parseIp("2001:db8::1")!), "c.example");
});

Deno.test("ReverseDnsMap holds at most maxEntries addresses, dropping the least recently answered", () => {
  const m = new ReverseDnsMap({ maxEntries: 2 });
  m.record(answer("a.example", ["192.0.2.1", 60]));
  m.record(answer("b.example", ["192.0.2.2", 60]));
  m.record(answer("a.example", ["192.0.2.1", 60])); // answered again: now the most recent
  m.record(answer("c.example", ["192.0.2.3", 60]));
  assert.equal(m.size, 2);
  assert.equal(m.lookup(parseIp("192.0.2.2")!), undefined);
  assert.equal(m.lookup(parseIp("192.0.2.1")!), "a.example");
  assert.equal(m.lookup(parseIp("192.0.2.3")!), "c.example");
  m.clear();
  assert.equal(m.size, 0);
  assert.throws(() => new ReverseDnsMap({ maxEntries: 0 }), /maxEntries/);
});
