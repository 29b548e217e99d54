// Needs root (IP_TRANSPARENT). Traffic stays on loopback: datagrams sent
// straight to the inbound socket carry that socket's address as their
// original destination. End-to-end forwarding is in tests/netns/router_udp_test.ts.
import assert from "node:assert/strict";
import type { OutboundConfig, TproxyInbound } from "../config/schema.ts";
import { nullLogger } from "../core/log.ts";
import type { Decision, FlowMeta } from "../core/types.ts";
import { LOOP4 } from "../ffi/_test_util.ts";
import { bind, close, SOCK_DGRAM, socket } from "../ffi/socket.ts";
import { DatagramSender, sockaddrOf } from "../ffi/udp.ts";
import { Reactor } from "../ffi/reactor.ts";
import { UdpTproxyInbound } from "../inbound/tproxy_udp.ts";
import { UdpPlane, type UdpPlaneStats, type UdpRouteView } from "./udp_plane.ts";

const enc = new TextEncoder();

function client(): number {
  const fd = socket(2, SOCK_DGRAM);
  bind(fd, { addr: LOOP4, port: 0 });
  return fd;
}

function hexLines(file: string): Uint8Array[] {
  const text = Deno.readTextFileSync(new URL(`../tests/fixtures/quic/${file}`, import.meta.url));
  return text.trim().split("\n").map((l) =>
    new Uint8Array(l.trim().match(/../g)!.map((h) => parseInt(h, 16)))
  );
}

async function until<T>(f: () => T | null, what: string): Promise<T> {
  for (let i = 0; i < 400; i++) {
    const v = f();
    if (v !== null) return v;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`timed out waiting for ${what}`);
}

function inbound(extra: Partial<TproxyInbound> = {}): TproxyInbound {
  return {
    type: "tproxy",
    tag: "tp",
    listen: "127.0.0.1",
    listen_port: 0,
    network: ["udp"],
    mode: "tproxy",
    sniff: true,
    sniff_timeout_ms: 300,
    udp_timeout_ms: 60_000,
    udp_timeout_dns_ms: 10_000,
    udp_timeout_quic_ms: 30_000,
    udp_max_sessions: 8,
    tcp_idle_timeout_ms: 60_000,
    ...extra,
  };
}

/** A snapshot whose engine records every flow and sends all to `block`. */
function blockingView(seen: FlowMeta[]): UdpRouteView {
  const block: OutboundConfig = { type: "block", tag: "block", mode: "drop", implicit: false };
  return {
    generation: 1,
    engine: {
      match(flow: FlowMeta): Decision {
        seen.push({ ...flow });
        return { outbound: "block", rule: 0 };
      },
    },
    outbounds: new Map([["block", { config: block }]]),
    config: { route: { default_mark: 255 } },
    inbounds: new Map(),
  };
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
  const c = client();
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
  const reactor = new Reactor();
  const seen: FlowMeta[] = [];
  const plane = UdpPlane.open({
    inbound: inbound(),
    snapshot: () => blockingView(seen),
    logger: nullLogger,
    reactor,
  });
  const c = client();
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
    await plane.close();
    reactor.close();
  }
});

Deno.test("UdpPlane survives malformed and QUIC-looking junk: sessions routed without a name, nothing thrown", async () => {
  const reactor = new Reactor();
  const seen: FlowMeta[] = [];
  const plane = UdpPlane.open({
    inbound: inbound({ sniff_timeout_ms: 50 }),
    snapshot: () => blockingView(seen),
    logger: nullLogger,
    reactor,
  });
  const clients = Array.from({ length: 4 }, client);
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
    await plane.close();
    reactor.close();
  }
});

Deno.test("UdpPlane evicts the least recently used session at udp_max_sessions", async () => {
  const reactor = new Reactor();
  const plane = UdpPlane.open({
    inbound: inbound({ udp_max_sessions: 3, sniff: false }),
    snapshot: () => blockingView([]),
    logger: nullLogger,
    reactor,
  });
  const clients = Array.from({ length: 10 }, client);
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
    await plane.close();
    reactor.close();
  }
});
