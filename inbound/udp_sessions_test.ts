import assert from "node:assert/strict";
import type { Endpoint } from "../core/types.ts";
import {
  defaultUdpTimeouts,
  endpointKey,
  type RemoveReason,
  sessionTimeout,
  UdpSessionTable,
} from "./udp_sessions.ts";

interface S {
  name: string;
  lastActive: number;
  timeoutMs: number;
  orderedAt?: number;
}

function setup(max: number, reorderMs = 0) {
  let now = 0;
  const removed: [string, RemoveReason][] = [];
  const t = new UdpSessionTable<S>({
    maxSessions: max,
    now: () => now,
    onRemove: (s, r) => removed.push([s.name, r]),
    reorderMs,
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

Deno.test("UdpSessionTable with reorderMs moves a busy session at most once per interval yet expires it only when idle", () => {
  const { t, removed, mk, advance } = setup(2, 500);
  t.add("busy", mk("busy", 1000));
  t.add("other", mk("other", 1000));
  advance(100);
  t.touch("busy", t.get("busy")!); // within 500 ms of its last move: stays first
  assert.deepEqual([...t.values()].map((s) => s.name), ["busy", "other"]);
  advance(500);
  t.touch("busy", t.get("busy")!); // now it moves
  assert.deepEqual([...t.values()].map((s) => s.name), ["other", "busy"]);
  advance(450);
  t.touch("busy", t.get("busy")!);
  advance(600); // other idle 1650 ms, busy idle 600 ms
  assert.equal(t.sweep(), 1);
  assert.deepEqual(removed, [["other", "expired"]]);
  t.add("new", mk("new"));
  assert.equal(t.size, 2, "busy stays");
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

Deno.test("endpointKey() differs by address, port and family", () => {
  const keys = new Set([
    endpointKey(v4(9, 53)),
    endpointKey(v4(9, 54)),
    endpointKey(v4(8, 53)),
    endpointKey({ addr: new Uint8Array(16), port: 53 }),
  ]);
  assert.equal(keys.size, 4);
  assert.equal(endpointKey(v4(9, 53)), endpointKey(v4(9, 53)));
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
