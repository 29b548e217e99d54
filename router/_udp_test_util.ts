/**
 * Scaffolding shared by the UDP plane tests (`udp_plane_test.ts`,
 * `udp_plane_refuse_test.ts`): a loopback inbound config, a route view that
 * sends every session to a block outbound, loopback client sockets, a
 * started plane and a bounded wait.
 *
 * @module
 */

import type { OutboundConfig, TproxyInbound } from "../config/schema.ts";
import { nullLogger } from "../core/log.ts";
import type { Decision, Endpoint, FlowMeta } from "../core/types.ts";
import { LOOP4 } from "../ffi/_test_util.ts";
import type { IcmpRefuser } from "../ffi/icmp.ts";
import { Reactor } from "../ffi/reactor.ts";
import { bind, connect, SOCK_DGRAM, socket } from "../ffi/socket.ts";
import { UdpPlane, type UdpRouteView } from "./udp_plane.ts";

/** A UDP TPROXY inbound on 127.0.0.1, ephemeral port, sniffing on; `extra` overrides. */
export function testInbound(extra: Partial<TproxyInbound> = {}): TproxyInbound {
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
    udp_mapping: "endpoint_independent",
    udp_filtering: "address_port_dependent",
    tcp_idle_timeout_ms: 60_000,
    ...extra,
  };
}

/**
 * Every session goes to a block outbound of `mode`; `route.default_mark` is
 * `mark()`; each flow the engine sees is copied into `seen` when given.
 */
export function blockView(
  mode: "reset" | "drop",
  opts: { mark?: () => number; seen?: FlowMeta[] } = {},
): () => UdpRouteView {
  const block: OutboundConfig = { type: "block", tag: "block", mode, implicit: false };
  const mark = opts.mark ?? (() => 0);
  return () => ({
    generation: 1,
    engine: {
      match(flow: FlowMeta): Decision {
        opts.seen?.push({ ...flow });
        return { outbound: "block", rule: 0 };
      },
      decide: () => ({ outbound: "block", rule: 0 }),
      count: () => {},
    },
    outbounds: new Map([["block", { config: block }]]),
    config: { route: { default_mark: mark() } },
    inbounds: new Map(),
  });
}

/** A UDP socket bound on loopback (ephemeral port), connected to `to` when given. */
export function loopbackClient(to?: Endpoint): number {
  const fd = socket(2, SOCK_DGRAM);
  bind(fd, { addr: LOOP4, port: 0 });
  if (to) connect(fd, to);
  return fd;
}

/** A plane opened on its own reactor; `close()` closes both. */
export interface TestPlane {
  plane: UdpPlane;
  reactor: Reactor;
  close(): Promise<void>;
}

/** Opens a {@linkcode UdpPlane} with `nullLogger` on a fresh reactor. */
export function openTestPlane(
  inbound: TproxyInbound,
  snapshot: () => UdpRouteView,
  refuser?: IcmpRefuser,
): TestPlane {
  const reactor = new Reactor();
  const plane = UdpPlane.open({
    inbound,
    snapshot,
    logger: nullLogger,
    reactor,
    ...(refuser ? { refuser } : {}),
  });
  return {
    plane,
    reactor,
    close: async () => {
      await plane.close();
      reactor.close();
    },
  };
}

/** Polls `f` every 5 ms (at most 400 times) until it returns neither null nor false. */
export async function until<T>(f: () => T | null | false, what: string): Promise<T> {
  for (let i = 0; i < 400; i++) {
    const v = f();
    if (v !== null && v !== false) return v;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`timed out waiting for ${what}`);
}
