import assert from "node:assert/strict";
import type { Endpoint } from "../core/types.ts";
import {
  defaultUdpTimeouts,
  endpointKey,
  type RemoveReason,
  sessionKey,
  sessionTimeout,
  UdpSessionTable,
} from "./udp_sessions.ts";

interface S {
  name: string;
  lastActive: number;
  timeoutMs: number;
}

function setup(max: number) {
  let now = 0;
  const removed: [string, RemoveReason][] = [];
  const t = new UdpSessionTable<S>({
    maxSessions: max,
    now: () => now,
    onRemove: (s, r) => removed.push([s.name, r]),
  });
  const mk = (name: string, timeoutMs = 1000): S => ({ name, lastActive: -1, timeoutMs });
  return { t, removed, mk, advance: (ms: number) => (now += ms) };
}

Deno.test("UdpSessionTable.add() evicts the least recently active session when full", () => {
  const { t, removed, mk } = setup(3);
  for (const n of ["a", "b", "c"]) t.add(n, mk(n));
  t.touch("a", t.get("a")!);
  t.add("d", mk("d"));
  assert.deepEqual(removed, [["b", "evicted"]]);
  assert.equal(t.size, 3);
  assert.deepEqual([...t.values()].map((s) => s.name), ["c", "a", "d"]);
  assert.deepEqual(t.counters(), { created: 4, expired: 0, evicted: 1, closed: 0, dropped: 0 });
});

Deno.test("UdpSessionTable.sweep() expires sessions idle for their own timeout, not active ones", () => {
  const { t, removed, mk, advance } = setup(10);
  t.add("dns", mk("dns", 100));
  t.add("long", mk("long", 1000));
  t.add("busy", mk("busy", 100));
  advance(60);
  t.touch("busy", t.get("busy")!);
  advance(60);
  assert.equal(t.sweep(), 1);
  assert.deepEqual(removed, [["dns", "expired"]]);
  advance(60);
  assert.equal(t.sweep(), 1, "busy expires 100 ms after its last datagram");
  assert.deepEqual(removed.at(-1), ["busy", "expired"]);
  assert.ok(t.get("long"));
  advance(1000);
  assert.equal(t.sweep(), 1);
  assert.equal(t.size, 0);
  assert.equal(t.counters().expired, 3);
});

Deno.test("UdpSessionTable stays bounded under churn and counts drops and closes", () => {
  const { t, removed, mk } = setup(50);
  for (let i = 0; i < 20_000; i++) {
    t.add(`s${i}`, mk(`s${i}`));
    assert.ok(t.size <= 50);
  }
  assert.equal(t.counters().evicted, 20_000 - 50);
  assert.equal(t.delete("s19999"), true);
  assert.equal(t.delete("s19999"), false);
  t.drop(3);
  t.clear();
  const c = t.counters();
  assert.equal(c.closed, 50);
  assert.equal(c.dropped, 3);
  assert.equal(removed.length, 20_000);
  assert.throws(() => setup(0), /udp_max_sessions: 0/);
});

const v4 = (a: number, port: number): Endpoint => ({ addr: new Uint8Array([10, 0, 0, a]), port });

Deno.test("sessionKey() differs for each destination of one client and each client of one destination", () => {
  const keys = new Set([
    sessionKey(v4(1, 5000), v4(9, 53)),
    sessionKey(v4(1, 5000), v4(8, 53)),
    sessionKey(v4(1, 5000), v4(9, 54)),
    sessionKey(v4(2, 5000), v4(9, 53)),
    sessionKey(v4(1, 5001), v4(9, 53)),
    sessionKey({ addr: new Uint8Array(16), port: 5000 }, v4(9, 53)),
  ]);
  assert.equal(keys.size, 6);
  assert.equal(sessionKey(v4(1, 5000), v4(9, 53)), sessionKey(v4(1, 5000), v4(9, 53)));
  assert.notEqual(endpointKey(v4(9, 53)), endpointKey(v4(9, 54)));
});

Deno.test("sessionTimeout() gives DNS and QUIC shorter timeouts, capped by udp_timeout", () => {
  const t = defaultUdpTimeouts();
  assert.equal(sessionTimeout(t, v4(1, 53), undefined), 10_000);
  assert.equal(sessionTimeout(t, v4(1, 443), "quic"), 30_000);
  assert.equal(sessionTimeout(t, v4(1, 8443), "quic"), 30_000);
  assert.equal(sessionTimeout(t, v4(1, 443), undefined), 30_000);
  assert.equal(sessionTimeout(t, v4(1, 5000), undefined), 300_000);
  const short = defaultUdpTimeouts(2000);
  assert.equal(sessionTimeout(short, v4(1, 53), undefined), 2000);
  assert.equal(sessionTimeout(short, v4(1, 443), "quic"), 2000);
});
