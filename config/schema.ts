/**
 * The normalised router configuration: what {@linkcode parseConfig} returns
 * after validation, with defaults filled, durations in milliseconds and
 * paths absolute. JSON field names follow sing-box where the concept exists
 * there; durations carry a `_ms` suffix once normalised.
 *
 * @module
 */

import type { Level } from "../core/log.ts";
import type { Network } from "../core/types.ts";
import type { RouteRule, RuleSpec } from "../rules/spec.ts";

/** `log` section. */
export interface LogConfig {
  /** Default `info`. */
  readonly level: Level;
}

/** UDP source-port mapping of a TPROXY inbound (see {@linkcode TproxyInbound.udp_mapping}). */
export type UdpMapping = "endpoint_independent" | "per_destination";

/** Which senders may reach a UDP mapping (see {@linkcode TproxyInbound.udp_filtering}). */
export type UdpFiltering = "address_port_dependent" | "endpoint_independent";

/** A TPROXY (or REDIRECT) inbound. */
export interface TproxyInbound {
  readonly type: "tproxy";
  readonly tag: string;
  /** IP literal; default `::`. */
  readonly listen: string;
  readonly listen_port: number;
  /** Omitted in JSON = both. */
  readonly network: readonly Network[];
  /** Default `tproxy`. */
  readonly mode: "tproxy" | "redirect";
  /** Default true. */
  readonly sniff: boolean;
  /** Default 300 ms. */
  readonly sniff_timeout_ms: number;
  /** Default 5 min. */
  readonly udp_timeout_ms: number;
  /** DNS sessions (destination port 53); default 10 s, capped by `udp_timeout`. */
  readonly udp_timeout_dns_ms: number;
  /** QUIC sessions (sniffed QUIC, or UDP/443 unsniffed); default 30 s, capped by `udp_timeout`. */
  readonly udp_timeout_quic_ms: number;
  /** Default 65536. */
  readonly udp_max_sessions: number;
  /**
   * How a client's UDP sessions through a direct outbound map to source
   * ports: `endpoint_independent` (default) sends all of one client
   * port's datagrams to any destination from one socket, so every
   * destination sees the same address and port (what games, WebRTC and
   * other hole punching need; replies are still only let in from
   * destinations the client sent to); `per_destination` opens one
   * connected socket per (client, destination).
   */
  readonly udp_mapping: UdpMapping;
  /**
   * Which senders may reach a client through its mapping
   * (`endpoint_independent` mapping only): `address_port_dependent`
   * (default) only the addresses and ports the client sent to;
   * `endpoint_independent` ("full cone") anyone, when the rules would route
   * a datagram from that client to the sender through the same outbound:
   * the datagram opens a session to the sender (at most
   * `UDP_ADMITTED_MAX` per mapping, and half of `udp_max_sessions` in all).
   */
  readonly udp_filtering: UdpFiltering;
  /** Default 10 min. */
  readonly tcp_idle_timeout_ms: number;
}

/** Any inbound. */
export type InboundConfig = TproxyInbound;

/** `health_check` of a direct or socks outbound (durations normalised to ms). */
export interface HealthCheckConfig {
  /**
   * Direct only: `IP:PORT` (`[v6]:PORT`) connected to through the outbound's
   * own interface, source address and mark; null for socks (the check is a
   * greeting to the server).
   */
  readonly target: string | null;
  /** Time between checks; default 30 s. */
  readonly interval_ms: number;
  /** A check that takes longer fails; default 3 s. */
  readonly timeout_ms: number;
}

/** A direct outbound (also WireGuard/WARP by mark, OpenVPN by interface). */
export interface DirectOutbound {
  readonly type: "direct";
  readonly tag: string;
  /** What is behind it (informational; status output). Default `direct`. */
  readonly kind: "direct" | "wireguard" | "warp" | "openvpn";
  readonly bind_interface: string | null;
  /** IPv4 literal. */
  readonly inet4_bind_address: string | null;
  /** IPv6 literal. */
  readonly inet6_bind_address: string | null;
  /** SO_MARK for this outbound's sockets; null = `route.default_mark`. */
  readonly routing_mark: number | null;
  /** Default 5 s. */
  readonly connect_timeout_ms: number;
  /** DSCP to set on outgoing packets (0..63), or null. */
  readonly dscp: number | null;
  /** Active check of a target; absent: health comes from flow dials only. */
  readonly health_check?: HealthCheckConfig;
}

/** A SOCKS5 outbound (also Xray / WARP-MASQUE adapters). */
export interface SocksOutbound {
  readonly type: "socks";
  readonly tag: string;
  /** Default `socks`. */
  readonly kind: "socks" | "xray" | "warp-masque";
  /** IP literal or host name. */
  readonly server: string;
  readonly server_port: number;
  readonly version: "5";
  readonly username: string | null;
  readonly password: string | null;
  /** Pre-connected idle connections to keep; size 0 = no pool (default). */
  readonly pool: {
    readonly size: number;
    /** Recycle a warm connection idle longer than this; null = the pool's default (3 s). */
    readonly max_idle_ms: number | null;
  };
  /** `ip` (default): CONNECT to the original IP; `sniffed`: to the sniffed domain when known. */
  readonly domain_strategy: "ip" | "sniffed";
  readonly routing_mark: number | null;
  readonly dscp: number | null;
  /** Default 5 s. */
  readonly connect_timeout_ms: number;
  /** Interval/timeout of the greeting check; absent: the defaults (30 s / 3 s). */
  readonly health_check?: HealthCheckConfig;
}

/** A block outbound: `reset` (TCP RST / ICMP unreachable, default) or `drop`. */
export interface BlockOutbound {
  readonly type: "block";
  readonly tag: string;
  readonly mode: "reset" | "drop";
  /** True for `@reject` / `@reject-drop`, added for rules with `action: "reject"`. */
  readonly implicit: boolean;
}

/** Any outbound. */
export type OutboundConfig = DirectOutbound | SocksOutbound | BlockOutbound;

/** A rule set declared in `route.rule_set`. */
export type RuleSetRef =
  | {
    readonly type: "local";
    readonly tag: string;
    readonly format: "source";
    /** Absolute path (relative paths resolve against the config file's directory). */
    readonly path: string;
  }
  | { readonly type: "inline"; readonly tag: string; readonly rules: readonly RuleSpec[] };

/** `route` section. */
export interface RouteConfig {
  /** MaxMind-format country database; absolute path. */
  readonly geoip: { readonly path: string } | null;
  readonly rule_set: readonly RuleSetRef[];
  readonly rules: readonly RouteRule[];
  /** Outbound tag when no rule matches; default: the first outbound. */
  readonly final: string;
  /** SO_MARK of outbound sockets without their own `routing_mark`; default 255. */
  readonly default_mark: number;
  /**
   * Remember the addresses DNS responses relayed to clients give for each
   * name, and give a flow without a sniffed name the name its destination
   * was looked up by (`router/reverse_dns.ts`); default false.
   */
  readonly dns_reverse_mapping: boolean;
}

/** `ipc` section. */
export interface IpcConfig {
  /** Default `/run/vpn-router/router.sock`. */
  readonly path: string;
  /** Socket file mode; default 0o600. */
  readonly mode: number;
  /** Group owning the socket, or null. */
  readonly group: string | null;
}

/** The whole, validated router configuration. */
export interface RouterConfig {
  readonly log: LogConfig;
  readonly inbounds: readonly InboundConfig[];
  readonly outbounds: readonly OutboundConfig[];
  readonly route: RouteConfig;
  readonly ipc: IpcConfig;
}

/** Outbound tag of `action: "reject"` (method `default`). */
export const REJECT_TAG = "@reject";
/** Outbound tag of `action: "reject", method: "drop"`. */
export const REJECT_DROP_TAG = "@reject-drop";
