// Needs root (IP_TRANSPARENT). Traffic stays on loopback: datagrams sent
// straight to the inbound socket carry that socket's address as their
// original destination. End-to-end forwarding is in tests/netns/router_udp_test.ts.
import assert from "node:assert/strict";
import type { OutboundConfig } from "../config/schema.ts";
import { nullLogger } from "../core/log.ts";
import type { FlowMeta } from "../core/types.ts";
import { LOOP4 } from "../ffi/_test_util.ts";
import { close, getsockoptInt, SO_RCVBUF, SOL_SOCKET } from "../ffi/socket.ts";
import { DatagramSender, openUdpUpstream, sockaddrKey, sockaddrOf } from "../ffi/udp.ts";
import { parseIp } from "../core/ip.ts";
import { encodeUdpDatagram } from "../outbound/socks5_udp.ts";
import { Reactor } from "../ffi/reactor.ts";
import { UdpTproxyInbound } from "../inbound/tproxy_udp.ts";
import {
  directOptions,
  socksSourceKey,
  type UdpHealth,
  UdpPlane,
  type UdpPlaneStats,
  type UdpRouteView,
  UPSTREAM_RCVBUF,
} from "./udp_plane.ts";
import { blockView, loopbackClient, openTestPlane, testInbound, until } from "./_udp_test_util.ts";

const enc = new TextEncoder();

function hexLines(file: string): Uint8Array[] {
  const text = Deno.readTextFileSync(new URL(`../tests/fixtures/quic/${file}`, import.meta.url));
  return text.trim().split("\n").map((l) =>
    new Uint8Array(l.trim().match(/../g)!.map((h) => parseInt(h, 16)))
  );
}

Deno.test("UdpTproxyInbound decodes only a pair's first datagram and hands the rest to known()", async () => {
  const reactor = new Reactor();
  const fresh: string[] = [];
  const known: string[] = [];
  const keys = new Set<string>();
  const ib = UdpTproxyInbound.open({
    listen: "127.0.0.1",
    port: 0,
    reactor,
    sink: {
      known: (key, data) => {
        if (!keys.has(key)) return false;
        known.push(new TextDecoder().decode(data));
        return true;
      },
      fresh: (key, d) => {
        keys.add(key);
        fresh.push(`${new TextDecoder().decode(d.data)}@${d.destination.port}`);
      },
    },
  });
  const c = loopbackClient();
  try {
    const to = sockaddrOf(ib.addresses[0]!);
    const s = new DatagramSender();
    for (const t of ["one", "two", "three"]) s.sendTo(c, enc.encode(t), to);
    await until(() => (fresh.length + known.length === 3 ? true : null), "3 datagrams");
    assert.deepEqual(fresh, [`one@${ib.addresses[0]!.port}`]);
    assert.deepEqual(known, ["two", "three"]);
    assert.deepEqual(ib.counters(), { received: 3, noOrigDst: 0, truncated: 0, errors: 0 });
  } finally {
    close(c);
    await ib.close();
    reactor.close();
  }
});

Deno.test("UdpPlane holds QUIC Initials for the sniffer and routes the session with its SNI", async () => {
  const seen: FlowMeta[] = [];
  const { plane, close: closePlane } = openTestPlane(testInbound(), blockView("drop", { seen }));
  const c = loopbackClient();
  try {
    const to = sockaddrOf(plane.addresses[0]!);
    const s = new DatagramSender();
    const flight = hexLines("chromium.hex");
    for (const d of flight) s.sendTo(c, d, to);
    const st = await until(
      () => (plane.stats().dropped === flight.length ? plane.stats() : null),
      "the blocked session to drop the held datagrams",
    );
    assert.equal(seen.length, 1, "one decision for the whole flight");
    assert.equal(seen[0]!.domain, "www.example.org");
    assert.equal(seen[0]!.protocol, "quic");
    assert.equal(seen[0]!.network, "udp");
    assert.equal(st.sniffed_quic, 1);
    assert.equal(st.sessions, 1);
    assert.deepEqual(st.outbounds, { block: 1 });
  } finally {
    close(c);
    await closePlane();
  }
});

Deno.test("UdpTproxyInbound.drainNow() delivers what is queued without waiting for the read loop", async () => {
  const reactor = new Reactor();
  const got: string[] = [];
  const ib = UdpTproxyInbound.open({
    listen: "127.0.0.1",
    port: 0,
    reactor,
    sink: {
      known: () => false,
      fresh: (_key, d) => void got.push(new TextDecoder().decode(d.data)),
    },
  });
  const c = loopbackClient();
  try {
    const to = sockaddrOf(ib.addresses[0]!);
    const s = new DatagramSender();
    // No await from here on: the read loop is parked and cannot take them.
    for (const t of ["a", "b", "c"]) s.sendTo(c, enc.encode(t), to);
    assert.equal(ib.drainNow(), 3);
    assert.deepEqual(got, ["a", "b", "c"]);
    assert.equal(ib.drainNow(), 0, "nothing left");
    assert.equal(ib.counters().received, 3);
  } finally {
    close(c);
    await ib.close();
    reactor.close();
  }
  assert.equal(ib.drainNow(), 0, "closed: reads nothing");
});

Deno.test("UdpPlane: a flight that arrived while the process stalled past the sniff timeout is still sniffed", async () => {
  const seen: FlowMeta[] = [];
  const { plane, close: closePlane } = openTestPlane(
    testInbound({ sniff_timeout_ms: 30 }),
    blockView("drop", { seen }),
  );
  const c = loopbackClient();
  try {
    const to = sockaddrOf(plane.addresses[0]!);
    const s = new DatagramSender();
    const flight = hexLines("chromium.hex");
    assert.ok(flight.length > 1, "the SNI spans several Initials");
    s.sendTo(c, flight[0]!, to);
    await until(() => (plane.stats().created === 1 ? true : null), "the session");
    // A stall: the rest arrives and the sniff timer falls due while the
    // thread is busy; whichever the event loop runs first, the name is found.
    for (const d of flight.slice(1)) s.sendTo(c, d, to);
    const end = performance.now() + 80;
    while (performance.now() < end) { /* busy */ }
    await until(() => (seen.length === 1 ? true : null), "the decision");
    assert.equal(seen[0]!.domain, "www.example.org");
    assert.equal(plane.stats().sniff_timeouts, 0);
  } finally {
    close(c);
    await closePlane();
  }
});

Deno.test("UdpPlane survives malformed and QUIC-looking junk: sessions routed without a name, nothing thrown", async () => {
  const seen: FlowMeta[] = [];
  const { plane, close: closePlane } = openTestPlane(
    testInbound({ sniff_timeout_ms: 50 }),
    blockView("drop", { seen }),
  );
  const clients = Array.from({ length: 4 }, () => loopbackClient());
  try {
    const to = sockaddrOf(plane.addresses[0]!);
    const s = new DatagramSender();
    const junk = [
      new Uint8Array([0xc3, 0, 0, 0, 1, 0xff]), // long header, CID length past the end
      new Uint8Array([0xc0, 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0x44]), // truncated Initial
      new Uint8Array(0), // empty datagram
      enc.encode("plain text"),
    ];
    junk.forEach((d, i) => s.sendTo(clients[i]!, d, to));
    const st: UdpPlaneStats = await until(
      () => (seen.length === 4 && plane.stats().dropped === 4 ? plane.stats() : null),
      "4 decisions",
    );
    assert.ok(seen.every((m) => m.domain === undefined), "no name from junk");
    assert.equal(st.created, 4);
  } finally {
    for (const c of clients) close(c);
    await closePlane();
  }
});

Deno.test("UdpPlane evicts the least recently used session at udp_max_sessions", async () => {
  const { plane, close: closePlane } = openTestPlane(
    testInbound({ udp_max_sessions: 3, sniff: false }),
    blockView("drop"),
  );
  const clients = Array.from({ length: 10 }, () => loopbackClient());
  try {
    const to = sockaddrOf(plane.addresses[0]!);
    const s = new DatagramSender();
    for (const c of clients) s.sendTo(c, enc.encode("x"), to);
    const st = await until(
      () => (plane.stats().created === 10 ? plane.stats() : null),
      "10 sessions",
    );
    assert.equal(st.sessions, 3);
    assert.equal(st.evicted, 7);
  } finally {
    for (const c of clients) close(c);
    await closePlane();
  }
});

Deno.test("UdpPlane: a rule engine that throws fails that session only; the plane goes on", async () => {
  const view = blockView("drop");
  let calls = 0;
  const throwing = () => {
    const v = view();
    return {
      ...v,
      engine: {
        ...v.engine,
        match: (f: Parameters<typeof v.engine.match>[0]) => {
          if (calls++ === 0) throw new Error("rule engine used after it was retired");
          return v.engine.match(f);
        },
      },
    };
  };
  const { plane, close: closePlane } = openTestPlane(testInbound({ sniff: false }), throwing);
  const clients = [loopbackClient(), loopbackClient()];
  try {
    const to = sockaddrOf(plane.addresses[0]!);
    const s = new DatagramSender();
    s.sendTo(clients[0]!, enc.encode("x"), to);
    // The session failed (not left half-routed): its datagram, and the next, are dropped.
    await until(() => plane.stats().dropped === 1, "the failed session's datagram dropped");
    s.sendTo(clients[0]!, enc.encode("x2"), to);
    await until(() => plane.stats().dropped === 2, "the next one dropped too");
    s.sendTo(clients[1]!, enc.encode("y"), to);
    const st = await until(
      () => (plane.stats().created === 2 ? plane.stats() : null),
      "a second session after the failure",
    );
    assert.equal(calls, 2);
    assert.deepEqual(st.outbounds, { block: 1 }, "only the second was routed");
  } finally {
    for (const c of clients) close(c);
    await closePlane();
  }
});

Deno.test("UdpTproxyInbound under a flood lets timers run (it parks the reactor when it yields)", async () => {
  // A reactor with nothing else to wait for: each yield of the inbound would
  // otherwise restart the reactor's loop fresh, which then never parks.
  const reactor = new Reactor();
  let delivered = 0;
  const ib = UdpTproxyInbound.open({
    listen: "127.0.0.1",
    port: 0,
    reactor,
    sink: {
      // 20 µs a datagram: slower than the flood, so the inbound never runs dry.
      known: () => {
        const until = performance.now() + 0.02;
        while (performance.now() < until) { /* busy */ }
        delivered++;
        return true;
      },
      fresh: () => {
        delivered++;
      },
    },
  });
  // Another process floods the inbound for at most 3 s (or 3,000,000 datagrams).
  const flood = new Deno.Command("python3", {
    args: [
      "-c",
      "import socket,sys,time\n" +
      "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n" +
      "print('go',flush=True)\n" +
      "end=time.time()+3\n" +
      "for i in range(3000000):\n" +
      "  s.sendto(b'x',('127.0.0.1',int(sys.argv[1])))\n" +
      "  if i%1000==0 and time.time()>end: break\n",
      String(ib.addresses[0]!.port),
    ],
    stdout: "piped",
  }).spawn();
  const reader = flood.stdout.getReader();
  let ended = false;
  const done = flood.status.then(() => ended = true);
  try {
    await reader.read(); // "go"
    await until(() => (delivered > 1000 ? true : null), "the flood to arrive");
    const during = await new Promise<boolean>((r) => setTimeout(() => r(!ended), 0));
    assert.ok(during, "the timer ran only after the flood ended");
  } finally {
    try {
      flood.kill();
    } catch { /* already gone */ }
    reader.releaseLock();
    await flood.stdout.cancel().catch(() => {});
    await done;
    await ib.close();
    reactor.close();
  }
});

Deno.test("UdpPlane reports a failed UDP ASSOCIATE to health and fails sessions at once while the outbound is down", async () => {
  // A SOCKS outbound whose server port is closed: the ASSOCIATE's control
  // connection is refused.
  const gone = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (gone.addr as Deno.NetAddr).port;
  gone.close();
  const socks: OutboundConfig = {
    type: "socks",
    tag: "proxy",
    kind: "socks",
    server: "127.0.0.1",
    server_port: port,
    version: "5",
    username: null,
    password: null,
    pool: { size: 0, max_idle_ms: null },
    domain_strategy: "ip",
    routing_mark: null,
    dscp: null,
    connect_timeout_ms: 2000,
  };
  const calls: string[] = [];
  let down = false;
  const health: UdpHealth = {
    admit: (tag) => {
      calls.push(`admit ${tag}`);
      return !down;
    },
    reportSuccess: (tag) => void calls.push(`success ${tag}`),
    reportFailure: (tag, err, dst) => {
      calls.push(`failure ${tag} ${(err as { code?: string }).code ?? err} ${dst?.port}`);
      down = true; // as a HealthChecker past its threshold would
    },
  };
  const view = (): UdpRouteView => ({
    generation: 1,
    engine: {
      match: () => ({ outbound: "proxy", rule: 0 }),
      decide: () => ({ outbound: "proxy", rule: 0 }),
      count: () => {},
    },
    outbounds: new Map([["proxy", { config: socks }]]),
    config: { route: { default_mark: 0 } },
    inbounds: new Map(),
  });
  const reactor = new Reactor();
  const plane = UdpPlane.open({
    inbound: testInbound({ sniff: false }),
    snapshot: view,
    logger: nullLogger,
    reactor,
    health,
  });
  const a = loopbackClient(), b = loopbackClient();
  try {
    const to = sockaddrOf(plane.addresses[0]!);
    const s = new DatagramSender();
    s.sendTo(a, enc.encode("first"), to);
    await until(() => calls.some((c) => c.startsWith("failure")), "the failed ASSOCIATE");
    assert.deepEqual(calls, [
      "admit proxy",
      `failure proxy ECONNREFUSED ${plane.addresses[0]!.port}`,
    ]);
    // Another client, another session: refused at once, nothing dialled.
    s.sendTo(b, enc.encode("second"), to);
    await until(() => (plane.stats().fail_fast === 1 ? true : null), "the fail-fast session");
    assert.deepEqual(calls.slice(2), ["admit proxy"]);
    const st = plane.stats();
    assert.equal(st.created, 2);
    assert.equal(st.outbounds["proxy"], 2);
  } finally {
    close(a);
    close(b);
    await plane.close();
    reactor.close();
  }
});

Deno.test("directOptions(): a session's upstream socket gets a 4 MiB receive buffer (SO_RCVBUFFORCE)", () => {
  const direct: Extract<OutboundConfig, { type: "direct" }> = {
    type: "direct",
    tag: "direct",
    kind: "direct",
    bind_interface: null,
    inet4_bind_address: null,
    inet6_bind_address: null,
    routing_mark: null,
    dscp: null,
    connect_timeout_ms: 5000,
  };
  const dst = { addr: LOOP4, port: 9 };
  const opts = directOptions(direct, { config: { route: { default_mark: 0 } } }, dst);
  const fd = openUdpUpstream(dst, opts);
  try {
    // The kernel reports twice what was set (its bookkeeping share).
    assert.equal(getsockoptInt(fd, SOL_SOCKET, SO_RCVBUF), 2 * UPSTREAM_RCVBUF);
  } finally {
    close(fd);
  }
});

Deno.test("socksSourceKey() names a relay datagram's sender as sockaddrKey() names that address", () => {
  const payload = new TextEncoder().encode("hi");
  for (const ip of ["203.0.113.9", "2001:db8::1:2"]) {
    for (const port of [53, 443, 65535]) {
      const ep = { addr: parseIp(ip)!, port };
      const buf = encodeUdpDatagram({ address: { kind: "ip", addr: ep.addr }, port }, payload);
      const got = socksSourceKey(buf)!;
      assert.equal(got.key, sockaddrKey(sockaddrOf(ep)), `${ip}:${port}`);
      assert.deepEqual(buf.subarray(got.start), payload);
    }
  }
  const v4 = encodeUdpDatagram(
    { address: { kind: "ip", addr: parseIp("198.51.100.1")! }, port: 9 },
    payload,
  );
  const fragmented = v4.slice();
  fragmented[2] = 1;
  assert.equal(socksSourceKey(fragmented), null, "FRAG != 0");
  const reserved = v4.slice();
  reserved[0] = 1;
  assert.equal(socksSourceKey(reserved), null, "RSV != 0");
  assert.equal(socksSourceKey(v4.subarray(0, 9)), null, "shorter than its header");
  const domain = encodeUdpDatagram(
    { address: { kind: "domain", host: "example.com" }, port: 9 },
    payload,
  );
  assert.equal(socksSourceKey(domain), null, "a domain names no address");
  const v6 = encodeUdpDatagram(
    { address: { kind: "ip", addr: parseIp("::1")! }, port: 9 },
    payload,
  );
  assert.equal(socksSourceKey(v6.subarray(0, 21)), null, "IPv6 header cut short");
  // A relay on a dual-stack socket may name an IPv4 sender in its mapped form.
  const mapped = encodeUdpDatagram(
    { address: { kind: "ip", addr: parseIp("::ffff:203.0.113.9")! }, port: 53 },
    payload,
  );
  assert.equal(mapped[3], 4, "sent as an IPv6 address");
  const got = socksSourceKey(mapped)!;
  assert.equal(got.key, sockaddrKey(sockaddrOf({ addr: parseIp("203.0.113.9")!, port: 53 })));
  assert.deepEqual(mapped.subarray(got.start), payload);
  const almost = encodeUdpDatagram(
    { address: { kind: "ip", addr: parseIp("::fffe:203.0.113.9")! }, port: 53 },
    payload,
  );
  assert.equal(socksSourceKey(almost)!.key.length, 19, "not mapped: keyed as IPv6");
});
