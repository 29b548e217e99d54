// Needs root (IP_TRANSPARENT, raw ICMP sockets). Traffic stays on loopback:
// datagrams sent straight to the inbound socket carry that socket's address
// as their original destination, so the refusal comes from it. Through the
// real router in namespaces: tests/netns/router_udp_block_test.ts.
import assert from "node:assert/strict";
import type { OutboundConfig, TproxyInbound } from "../config/schema.ts";
import { nullLogger } from "../core/log.ts";
import type { Decision } from "../core/types.ts";
import { LOOP4 } from "../ffi/_test_util.ts";
import { IcmpRefuser, type IcmpSocketOps } from "../ffi/icmp.ts";
import { portUnreachable } from "../ffi/icmp_packet.ts";
import { Reactor } from "../ffi/reactor.ts";
import {
  bind,
  close,
  connect,
  getsockname,
  recv,
  send,
  SOCK_DGRAM,
  socket,
  WOULD_BLOCK,
} from "../ffi/socket.ts";
import { UdpPlane, type UdpRouteView } from "./udp_plane.ts";

const enc = new TextEncoder();

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

/** Every session goes to a block outbound of `mode`; `route.default_mark` is `mark()`. */
function blockView(mode: "reset" | "drop", mark: () => number = () => 0): () => UdpRouteView {
  const block: OutboundConfig = { type: "block", tag: "block", mode, implicit: false };
  return () => ({
    generation: 1,
    engine: { match: (): Decision => ({ outbound: "block", rule: 0 }) },
    outbounds: new Map([["block", { config: block }]]),
    config: { route: { default_mark: mark() } },
    inbounds: new Map(),
  });
}

/** A UDP socket on loopback connected to `plane`'s inbound address. */
function connectedClient(plane: UdpPlane): number {
  const fd = socket(2, SOCK_DGRAM);
  bind(fd, { addr: LOOP4, port: 0 });
  connect(fd, plane.addresses[0]!);
  return fd;
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** What a non-blocking recv sees within `tries` × 10 ms: `data`, an errno code or "nothing". */
async function recvOutcome(fd: number, tries: number): Promise<string> {
  const buf = new Uint8Array(64);
  for (let i = 0; i < tries; i++) {
    try {
      if (recv(fd, buf) !== WOULD_BLOCK) return "data";
    } catch (e) {
      return (e as { code?: string }).code ?? String(e);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  return "nothing";
}

Deno.test("UdpPlane refuses a `reset` block session with ICMP: the client's connected socket gets ECONNREFUSED, once a second", async () => {
  const reactor = new Reactor();
  // Sniffing on: the first datagram is held, then refused when the session is routed.
  const plane = UdpPlane.open({
    inbound: inbound(),
    snapshot: blockView("reset"),
    logger: nullLogger,
    reactor,
  });
  const c = connectedClient(plane);
  try {
    send(c, enc.encode("dns?"));
    assert.equal(await recvOutcome(c, 200), "ECONNREFUSED");
    // The same session again within a second: dropped without ICMP.
    send(c, enc.encode("again"));
    assert.equal(await recvOutcome(c, 20), "nothing");
    const st = plane.stats();
    assert.equal(st.refused, 1);
    assert.equal(st.refused_limited, 1);
    assert.equal(st.refused_errors, 0);
    assert.equal(st.dropped, 2);
  } finally {
    close(c);
    await plane.close();
    reactor.close();
  }
});

Deno.test("UdpPlane drops a `drop` block session's datagrams without ICMP", async () => {
  const reactor = new Reactor();
  const plane = UdpPlane.open({
    inbound: inbound({ sniff: false }),
    snapshot: blockView("drop"),
    logger: nullLogger,
    reactor,
  });
  const c = connectedClient(plane);
  try {
    send(c, enc.encode("x"));
    assert.equal(await recvOutcome(c, 30), "nothing");
    const st = plane.stats();
    assert.equal(st.dropped, 1);
    assert.deepEqual([st.refused, st.refused_limited, st.refused_errors], [0, 0, 0]);
  } finally {
    close(c);
    await plane.close();
    reactor.close();
  }
});

Deno.test("UdpPlane quotes the session's addresses and marks the raw socket with route.default_mark (reopened when it changes)", async () => {
  const reactor = new Reactor();
  const sent: { msg: Uint8Array; to: Uint8Array; source: Uint8Array }[] = [];
  const opened: number[] = [];
  const ops: IcmpSocketOps = {
    open: (_family, mark) => (opened.push(mark), 1000 + opened.length),
    send: (_fd, msg, to, source) => (sent.push({ msg, to, source }), true),
    close: () => {},
  };
  const refuser = new IcmpRefuser({ ops });
  let mark = 255;
  const plane = UdpPlane.open({
    inbound: inbound({ sniff: false }),
    snapshot: blockView("reset", () => mark),
    logger: nullLogger,
    reactor,
    refuser,
  });
  const c = connectedClient(plane);
  const c2 = connectedClient(plane);
  try {
    const payload = enc.encode("quoted payload");
    send(c, payload);
    await until(() => sent.length === 1, "the first refusal");
    const me = getsockname(c);
    const dst = plane.addresses[0]!;
    assert.deepEqual(sent[0]!.to, me.addr);
    assert.deepEqual(sent[0]!.source, dst.addr, "from the original destination");
    assert.deepEqual(sent[0]!.msg, portUnreachable(me, dst, payload));
    mark = 7; // a reload changed route.default_mark
    send(c2, payload);
    await until(() => sent.length === 2, "the second refusal");
    assert.deepEqual(opened, [255, 7]);
  } finally {
    close(c);
    close(c2);
    await plane.close();
    reactor.close();
    refuser.close();
  }
});
