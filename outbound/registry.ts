/**
 * The one explicit registry of outbound kinds: turns validated outbound
 * configs into live {@linkcode Outbound}s, and on reload decides which
 * survive unchanged (keeping their pools), which are replaced and which go.
 *
 * @module
 */

import type {
  DirectOutbound as DirectOutboundConfig,
  OutboundConfig,
  RouteConfig,
} from "../config/schema.ts";
import { parseEndpoint, parseIp } from "../core/ip.ts";
import type { Logger } from "../core/log.ts";
import type { Endpoint } from "../core/types.ts";
import type { Reactor } from "../ffi/reactor.ts";
import { connectTcp, type FdStream } from "../ffi/stream.ts";
import { BlockOutbound } from "./block.ts";
import { DirectOutbound } from "./direct.ts";
import type { HealthSpec } from "./health.ts";
import {
  directVerdict,
  redialProbe,
  socksGreetingProbe,
  socksVerdict,
  tcpConnectProbe,
} from "./health_probe.ts";
import type { Outbound, OutboundHealth } from "./outbound.ts";
import { fdStreamIsIdleAlive, Socks5Outbound } from "./socks5.ts";

/** A socks outbound as built here: a passed health probe lets its pool refill at once. */
interface SocksLive extends Outbound {
  noteServerUp(): void;
}

/** What building an outbound needs from the process. */
export interface OutboundDeps {
  readonly logger: Logger;
  readonly reactor?: Reactor;
}

/** DSCP (0..63) to the IP_TOS / IPV6_TCLASS byte (ECN bits zero). */
function dscpToTos(dscp: number | null): number | undefined {
  return dscp === null ? undefined : dscp << 2;
}

/** The direct dialer of `cfg` (interface, source address, mark, TOS) with a given timeout. */
function newDirect(
  cfg: DirectOutboundConfig,
  timeoutMs: number,
  route: Pick<RouteConfig, "default_mark">,
  deps: OutboundDeps,
): DirectOutbound {
  return new DirectOutbound({
    tag: cfg.tag,
    connect_timeout_ms: timeoutMs,
    ...(cfg.bind_interface !== null ? { bind_interface: cfg.bind_interface } : {}),
    ...(cfg.inet4_bind_address !== null ? { inet4_bind_address: cfg.inet4_bind_address } : {}),
    ...(cfg.inet6_bind_address !== null ? { inet6_bind_address: cfg.inet6_bind_address } : {}),
    ...(cfg.routing_mark !== null ? { routing_mark: cfg.routing_mark } : {}),
    ...(cfg.dscp !== null ? { tos: dscpToTos(cfg.dscp)! } : {}),
  }, {
    default_mark: route.default_mark,
    ...(deps.reactor ? { reactor: deps.reactor } : {}),
  });
}

/** Default `health_check.interval` (ms). */
export const DEFAULT_HEALTH_INTERVAL_MS = 30_000;
/** Default `health_check.timeout` (ms). */
export const DEFAULT_HEALTH_TIMEOUT_MS = 3000;

/**
 * How the health checker watches an outbound built from `cfg`:
 *
 * - socks: active, a TCP connect + SOCKS5 greeting (and auth) to the server
 *   with the outbound's mark and TOS, never a CONNECT;
 * - direct with `health_check.target`: active, a TCP connect to the target
 *   through the outbound's interface / source address / mark;
 * - direct without: passive, from flow dials (`outbound` re-dials the last
 *   failed destination while down);
 * - block: static, always up.
 */
export function buildHealthSpec(
  cfg: OutboundConfig,
  outbound: Outbound,
  route: Pick<RouteConfig, "default_mark">,
  deps: OutboundDeps,
): HealthSpec {
  switch (cfg.type) {
    case "block":
      return { mode: "static", intervalMs: 1, timeoutMs: 1, classify: () => "neutral" };
    case "socks": {
      const hc = cfg.health_check;
      const timeoutMs = hc?.timeout_ms ?? DEFAULT_HEALTH_TIMEOUT_MS;
      const mark = cfg.routing_mark ?? route.default_mark;
      const tos = dscpToTos(cfg.dscp);
      const server = parseIp(cfg.server);
      if (!server) throw new TypeError(`outbound ${cfg.tag}: server: "${cfg.server}": not an IP`);
      const greet = socksGreetingProbe<FdStream>({
        server: { addr: server, port: cfg.server_port },
        auth: cfg.username !== null && cfg.password !== null
          ? { username: cfg.username, password: cfg.password }
          : undefined,
        timeoutMs,
        connect: (dst, o) =>
          connectTcp(dst, {
            ...o,
            ...(mark !== 0 ? { mark } : {}),
            ...(tos !== undefined ? { tos } : {}),
            ...(deps.reactor ? { reactor: deps.reactor } : {}),
          }),
      });
      return {
        mode: "active",
        intervalMs: hc?.interval_ms ?? DEFAULT_HEALTH_INTERVAL_MS,
        timeoutMs,
        classify: socksVerdict,
        probe: async (ctx) => {
          await greet(ctx);
          // The pool keeps its own back-off; tell it the server is back.
          if ("noteServerUp" in outbound) (outbound as SocksLive).noteServerUp();
        },
      };
    }
    case "direct": {
      const hc = cfg.health_check;
      if (hc?.target) {
        const target = parseEndpoint(hc.target);
        if (!target) {
          throw new TypeError(`outbound ${cfg.tag}: health_check.target: "${hc.target}": bad`);
        }
        const dialer = newDirect(cfg, hc.timeout_ms, route, deps);
        return {
          mode: "active",
          intervalMs: hc.interval_ms,
          timeoutMs: hc.timeout_ms,
          classify: directVerdict,
          probe: tcpConnectProbe(target, (dst, signal) => dialer.dialTcp(dst, signal)),
        };
      }
      return {
        mode: "passive",
        intervalMs: hc?.interval_ms ?? DEFAULT_HEALTH_INTERVAL_MS,
        timeoutMs: hc?.timeout_ms ?? DEFAULT_HEALTH_TIMEOUT_MS,
        classify: directVerdict,
        probe: redialProbe((dst, signal) => outbound.dialTcp(dst, undefined, signal)),
      };
    }
  }
}

/** A key that changes whenever anything that shapes the live outbound changes. */
export function outboundKey(cfg: OutboundConfig, route: Pick<RouteConfig, "default_mark">): string {
  return JSON.stringify([cfg, route.default_mark]);
}

/** Builds the live outbound for one validated config. */
export function buildOutbound(
  cfg: OutboundConfig,
  route: Pick<RouteConfig, "default_mark">,
  deps: OutboundDeps,
): Outbound {
  const log = deps.logger.child(`outbound/${cfg.tag}`);
  switch (cfg.type) {
    case "direct": {
      const direct = newDirect(cfg, cfg.connect_timeout_ms, route, deps);
      const health: OutboundHealth = { state: "unknown" };
      return {
        tag: cfg.tag,
        type: "direct",
        kind: cfg.kind,
        async dialTcp(dst: Endpoint, _domain: string | undefined, signal?: AbortSignal) {
          return await direct.dialTcp(dst, signal);
        },
        health: () => health,
        describe: () => ({
          bind_interface: cfg.bind_interface,
          routing_mark: cfg.routing_mark ?? route.default_mark,
          dscp: cfg.dscp,
        }),
        close() {},
      };
    }
    case "socks": {
      const tos = dscpToTos(cfg.dscp);
      const socks = new Socks5Outbound<FdStream>({
        tag: cfg.tag,
        kind: cfg.kind,
        server: cfg.server,
        serverPort: cfg.server_port,
        username: cfg.username ?? undefined,
        password: cfg.password ?? undefined,
        domainStrategy: cfg.domain_strategy,
        routingMark: cfg.routing_mark ?? undefined,
        defaultMark: route.default_mark,
        tos,
        connectTimeoutMs: cfg.connect_timeout_ms,
        pool: cfg.pool.size > 0
          ? {
            size: cfg.pool.size,
            ...(cfg.pool.max_idle_ms !== null ? { maxIdleMs: cfg.pool.max_idle_ms } : {}),
          }
          : undefined,
      }, {
        connect: (dst, opts) =>
          connectTcp(dst, { ...opts, ...(deps.reactor ? { reactor: deps.reactor } : {}) }),
        isAlive: fdStreamIsIdleAlive,
        logger: log,
      });
      const live: SocksLive = {
        tag: cfg.tag,
        type: "socks",
        kind: cfg.kind,
        dialTcp: (dst, domain, signal) => socks.dialTcp(dst, domain, signal),
        health: () => socks.health(),
        describe: () => socks.describe(),
        close: () => socks.close(),
        noteServerUp: () => socks.noteServerUp(),
      };
      return live;
    }
    case "block": {
      const block = new BlockOutbound({ tag: cfg.tag, mode: cfg.mode });
      return {
        tag: cfg.tag,
        type: "block",
        kind: "block",
        dialTcp: (dst, domain, signal) => block.dialTcp(dst, domain, signal),
        health: () => ({ state: "up" }),
        describe: () => ({ mode: cfg.mode }),
        close: () => block.close(),
      };
    }
  }
}
