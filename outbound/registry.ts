/**
 * The one explicit registry of outbound kinds: turns validated outbound
 * configs into live {@linkcode Outbound}s, and on reload decides which
 * survive unchanged (keeping their pools), which are replaced and which go.
 *
 * @module
 */

import type { OutboundConfig, RouteConfig } from "../config/schema.ts";
import type { Logger } from "../core/log.ts";
import type { Endpoint } from "../core/types.ts";
import type { Reactor } from "../ffi/reactor.ts";
import { connectTcp, type FdStream } from "../ffi/stream.ts";
import { BlockOutbound } from "./block.ts";
import { DirectOutbound } from "./direct.ts";
import type { Outbound, OutboundHealth } from "./outbound.ts";
import { Socks5Outbound } from "./socks5.ts";

/** What building an outbound needs from the process. */
export interface OutboundDeps {
  readonly logger: Logger;
  readonly reactor?: Reactor;
}

/** DSCP (0..63) to the IP_TOS / IPV6_TCLASS byte (ECN bits zero). */
function dscpToTos(dscp: number | null): number | undefined {
  return dscp === null ? undefined : dscp << 2;
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
      const direct = new DirectOutbound({
        tag: cfg.tag,
        connect_timeout_ms: cfg.connect_timeout_ms,
        ...(cfg.bind_interface !== null ? { bind_interface: cfg.bind_interface } : {}),
        ...(cfg.inet4_bind_address !== null ? { inet4_bind_address: cfg.inet4_bind_address } : {}),
        ...(cfg.inet6_bind_address !== null ? { inet6_bind_address: cfg.inet6_bind_address } : {}),
        ...(cfg.routing_mark !== null ? { routing_mark: cfg.routing_mark } : {}),
        ...(cfg.dscp !== null ? { tos: dscpToTos(cfg.dscp)! } : {}),
      }, {
        default_mark: route.default_mark,
        ...(deps.reactor ? { reactor: deps.reactor } : {}),
      });
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
        pool: cfg.pool.size > 0 ? { size: cfg.pool.size } : undefined,
      }, {
        connect: (dst, opts) =>
          connectTcp(dst, { ...opts, ...(deps.reactor ? { reactor: deps.reactor } : {}) }),
        isAlive: isIdleAlive,
        logger: log,
      });
      return {
        tag: cfg.tag,
        type: "socks",
        kind: cfg.kind,
        dialTcp: (dst, domain, signal) => socks.dialTcp(dst, domain, signal),
        health: () => socks.health(),
        describe: () => socks.describe(),
        close: () => socks.close(),
      };
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

const probe = new Uint8Array(1);

/**
 * An idle pooled connection is alive while it has nothing to read: a byte
 * (protocol violation) or EOF/RST means the server dropped it.
 */
function isIdleAlive(s: FdStream): boolean {
  if (s.closed) return false;
  try {
    return s.tryPeek(probe) < 0;
  } catch {
    return false;
  }
}
