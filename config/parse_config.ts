/**
 * `parseConfig()`: the one code path that turns config JSON into a
 * validated {@linkcode RouterConfig} — used at start-up, on reload and by
 * `router check`. Collects every issue before throwing one
 * {@linkcode ConfigError}.
 *
 * @module
 */

import { isAbsolute, join as joinPath } from "node:path";
import { parseEndpoint } from "../core/ip.ts";
import { LEVELS } from "../core/log.ts";
import type { Network } from "../core/types.ts";
import type { RouteRule, RuleSpec } from "../rules/spec.ts";
import { Issues } from "./config_error.ts";
import { parseRouteRule, parseRuleMatch, type RuleContext } from "./rule_parser.ts";
import {
  type BlockOutbound,
  type DirectOutbound,
  type HealthCheckConfig,
  type InboundConfig,
  type IpcConfig,
  type LogConfig,
  type OutboundConfig,
  REJECT_DROP_TAG,
  REJECT_TAG,
  type RouteConfig,
  type RouterConfig,
  type RuleSetRef,
  type SocksOutbound,
  type UdpFiltering,
  type UdpMapping,
} from "./schema.ts";
import {
  bool,
  duration,
  int,
  ipLiteral,
  mark32,
  type Obj,
  object,
  oneOf,
  show,
  str,
  typeName,
} from "./values.ts";

/** Options of {@linkcode parseConfig}. */
export interface ParseOptions {
  /** Directory relative paths (geoip, rule sets) resolve against: the config file's. */
  readonly baseDir: string;
}

const TOP = new Set(["log", "inbounds", "outbounds", "route", "ipc"]);
const SINGBOX_TOP = new Set(["dns", "endpoints", "experimental", "ntp", "certificate", "services"]);

/** Validates `raw` and returns the normalised config; throws `ConfigError` listing every issue. */
export function parseConfig(raw: unknown, opts: ParseOptions): RouterConfig {
  const iss = new Issues();
  const o = object(raw, "", iss, TOP, SINGBOX_TOP) ?? {};
  const log = parseLog(o.log, iss);
  const inbounds = parseList(o.inbounds, "inbounds", iss, parseInbound, false);
  const outbounds = parseList(o.outbounds, "outbounds", iss, parseOutbound, true);
  const inboundTags = uniqueTags(inbounds, iss);
  const outboundTags = uniqueTags(outbounds, iss);
  const usedReject = new Set<string>();
  const route = parseRoute(o.route, iss, opts, {
    inbounds: inboundTags,
    outbounds: outboundTags,
    usedReject,
  });
  const ipc = parseIpc(o.ipc, iss);
  iss.throwIfAny();
  const all: OutboundConfig[] = [
    ...outbounds.map((x) => x.value),
    ...implicitOutbounds(usedReject),
  ];
  return { log, inbounds: inbounds.map((x) => x.value), outbounds: all, route: route!, ipc };
}

/**
 * The implicit block outbounds behind `action: "reject"` rules, for the
 * reject tags the rules used (`RuleContext.usedReject`), in the order
 * {@linkcode parseConfig} appends them to the declared outbounds.
 */
export function implicitOutbounds(usedReject: ReadonlySet<string>): OutboundConfig[] {
  const out: OutboundConfig[] = [];
  for (const tag of [REJECT_TAG, REJECT_DROP_TAG]) {
    if (usedReject.has(tag)) {
      out.push({ type: "block", tag, mode: tag === REJECT_TAG ? "reset" : "drop", implicit: true });
    }
  }
  return out;
}

interface At<T> {
  readonly value: T;
  readonly path: string;
}

function parseList<T>(
  v: unknown,
  path: string,
  iss: Issues,
  item: (v: unknown, path: string, iss: Issues) => T | undefined,
  required: boolean,
): At<T>[] {
  if (v === undefined) {
    if (required) iss.add(path, "missing: at least one is required");
    return [];
  }
  if (!Array.isArray(v)) {
    iss.add(path, `expected an array, got ${typeName(v)}`);
    return [];
  }
  if (required && v.length === 0) iss.add(path, "must not be empty");
  const out: At<T>[] = [];
  v.forEach((x, i) => {
    const p = `${path}[${i}]`;
    const value = item(x, p, iss);
    if (value !== undefined) out.push({ value, path: p });
  });
  return out;
}

function uniqueTags(list: At<{ tag: string }>[], iss: Issues): Set<string> {
  const seen = new Set<string>();
  for (const { value, path } of list) {
    if (seen.has(value.tag)) iss.add(`${path}.tag`, `${show(value.tag)}: duplicate tag`);
    seen.add(value.tag);
  }
  return seen;
}

function parseLog(v: unknown, iss: Issues): LogConfig {
  if (v === undefined) return { level: "info" };
  const o = object(v, "log", iss, new Set(["level"]), new Set(["disabled", "output", "timestamp"]));
  const level = o?.level === undefined ? "info" : oneOf(o.level, "log.level", iss, LEVELS);
  return { level: level ?? "info" };
}

function tagOf(o: Obj, path: string, iss: Issues): string | undefined {
  const tag = str(o.tag, `${path}.tag`, iss);
  if (tag?.startsWith("@")) {
    iss.add(`${path}.tag`, `${show(tag)}: tags starting with "@" are reserved`);
  }
  return tag;
}

/** Reads optional field `k` through `parse`, or returns `dflt`. */
function opt<T>(
  o: Obj,
  k: string,
  path: string,
  dflt: T,
  parse: (v: unknown, p: string) => T | undefined,
): T | undefined {
  return o[k] === undefined ? dflt : parse(o[k], `${path}.${k}`);
}

const INBOUND = new Set([
  "type",
  "tag",
  "listen",
  "listen_port",
  "network",
  "mode",
  "sniff",
  "sniff_timeout",
  "udp_timeout",
  "udp_timeout_dns",
  "udp_timeout_quic",
  "udp_max_sessions",
  "udp_mapping",
  "udp_filtering",
  "tcp_idle_timeout",
]);

function parseInbound(v: unknown, path: string, iss: Issues): InboundConfig | undefined {
  const o = object(v, path, iss, INBOUND, new Set(["sniff_override_destination"]));
  if (!o) return undefined;
  const type = oneOf(o.type, `${path}.type`, iss, ["tproxy"] as const);
  const tag = tagOf(o, path, iss);
  const listen = opt(o, "listen", path, "::", (x, p) => ipLiteral(x, p, iss));
  const listen_port = int(o.listen_port, `${path}.listen_port`, iss, 1, 65535);
  const network = opt<readonly Network[]>(o, "network", path, ["tcp", "udp"], (x, p) => {
    const n = oneOf(x, p, iss, ["tcp", "udp"] as const);
    return n && [n];
  });
  const mode = opt<"tproxy" | "redirect">(
    o,
    "mode",
    path,
    "tproxy",
    (x, p) => oneOf(x, p, iss, ["tproxy", "redirect"] as const),
  );
  const sniff = opt(o, "sniff", path, true, (x, p) => bool(x, p, iss));
  const dur = (k: string, ms: number) => opt(o, k, path, ms, (x, p) => duration(x, p, iss));
  const sniff_timeout_ms = dur("sniff_timeout", 300);
  const udp_timeout_ms = dur("udp_timeout", 300_000);
  const udp_timeout_dns_ms = dur("udp_timeout_dns", 10_000);
  const udp_timeout_quic_ms = dur("udp_timeout_quic", 30_000);
  const tcp_idle_timeout_ms = dur("tcp_idle_timeout", 600_000);
  const udp_max_sessions = opt(
    o,
    "udp_max_sessions",
    path,
    65536,
    (x, p) => int(x, p, iss, 1, 1 << 20),
  );
  const udp_mapping = opt<UdpMapping>(
    o,
    "udp_mapping",
    path,
    "endpoint_independent",
    (x, p) => oneOf(x, p, iss, ["endpoint_independent", "per_destination"] as const),
  );
  const udp_filtering = opt<UdpFiltering>(
    o,
    "udp_filtering",
    path,
    "address_port_dependent",
    (x, p) => oneOf(x, p, iss, ["address_port_dependent", "endpoint_independent"] as const),
  );
  if (udp_filtering === "endpoint_independent" && udp_mapping === "per_destination") {
    iss.add(
      `${path}.udp_filtering`,
      '"endpoint_independent" needs udp_mapping "endpoint_independent" (a per-destination socket only hears its destination)',
    );
  }
  if (
    type === undefined || tag === undefined || listen === undefined ||
    listen_port === undefined || network === undefined || mode === undefined ||
    sniff === undefined || sniff_timeout_ms === undefined || udp_timeout_ms === undefined ||
    tcp_idle_timeout_ms === undefined || udp_max_sessions === undefined ||
    udp_timeout_dns_ms === undefined || udp_timeout_quic_ms === undefined ||
    udp_mapping === undefined || udp_filtering === undefined
  ) return undefined;
  return {
    type,
    tag,
    listen,
    listen_port,
    network,
    mode,
    sniff,
    sniff_timeout_ms,
    udp_timeout_ms,
    udp_timeout_dns_ms,
    udp_timeout_quic_ms,
    udp_max_sessions,
    udp_mapping,
    udp_filtering,
    tcp_idle_timeout_ms,
  };
}

const DIRECT = new Set([
  "type",
  "tag",
  "kind",
  "bind_interface",
  "inet4_bind_address",
  "inet6_bind_address",
  "routing_mark",
  "connect_timeout",
  "dscp",
  "health_check",
]);
const SOCKS = new Set([
  "type",
  "tag",
  "kind",
  "server",
  "server_port",
  "version",
  "username",
  "password",
  "pool",
  "domain_strategy",
  "routing_mark",
  "dscp",
  "connect_timeout",
  "health_check",
]);
const BLOCK = new Set(["type", "tag", "mode"]);
const SINGBOX_DIAL = new Set([
  "detour",
  "reuse_addr",
  "tcp_fast_open",
  "tcp_multi_path",
  "udp_fragment",
  "domain_resolver",
  "network_strategy",
  "fallback_delay",
  "override_address",
  "override_port",
  "proxy_protocol",
  "network",
  "udp_over_tcp",
]);

function parseOutbound(v: unknown, path: string, iss: Issues): OutboundConfig | undefined {
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    iss.add(path, `expected an object, got ${typeName(v)}`);
    return undefined;
  }
  const type = oneOf((v as Obj).type, `${path}.type`, iss, ["direct", "socks", "block"] as const);
  if (type === "direct") return parseDirect(v as Obj, path, iss);
  if (type === "socks") return parseSocks(v as Obj, path, iss);
  if (type === "block") return parseBlock(v as Obj, path, iss);
  return undefined;
}

function ifname(v: unknown, path: string, iss: Issues): string | undefined {
  const s = str(v, path, iss);
  if (s !== undefined && !/^[^\s/:]{1,15}$/.test(s)) {
    iss.add(
      path,
      `${show(s)}: not a valid interface name (1..15 characters, no "/", ":" or spaces)`,
    );
    return undefined;
  }
  return s;
}

function parseDirect(v: Obj, path: string, iss: Issues): DirectOutbound | undefined {
  const o = object(v, path, iss, DIRECT, SINGBOX_DIAL)!;
  const tag = tagOf(o, path, iss);
  const kind = opt(
    o,
    "kind",
    path,
    "direct",
    (x, p) => oneOf(x, p, iss, ["direct", "wireguard", "warp", "openvpn"] as const),
  );
  const bind_interface = opt(o, "bind_interface", path, null, (x, p) => ifname(x, p, iss));
  const inet4 = opt(o, "inet4_bind_address", path, null, (x, p) => ipLiteral(x, p, iss, 4));
  const inet6 = opt(o, "inet6_bind_address", path, null, (x, p) => ipLiteral(x, p, iss, 6));
  const routing_mark = opt(o, "routing_mark", path, null, (x, p) => mark32(x, p, iss));
  const connect_timeout_ms = opt(o, "connect_timeout", path, 5000, (x, p) => duration(x, p, iss));
  const dscp = opt(o, "dscp", path, null, (x, p) => int(x, p, iss, 0, 63));
  const health_check = o.health_check === undefined
    ? null
    : healthCheck(o.health_check, `${path}.health_check`, iss, true);
  if (
    tag === undefined || kind === undefined || bind_interface === undefined ||
    inet4 === undefined || inet6 === undefined || routing_mark === undefined ||
    connect_timeout_ms === undefined || dscp === undefined || health_check === undefined
  ) return undefined;
  return {
    type: "direct",
    tag,
    kind,
    bind_interface,
    inet4_bind_address: inet4,
    inet6_bind_address: inet6,
    routing_mark,
    connect_timeout_ms,
    dscp,
    ...(health_check ? { health_check } : {}),
  };
}

const HEALTH_CHECK = new Set(["target", "interval", "timeout"]);
const MAX_HEALTH_MS = 86_400_000;

/**
 * `health_check`: `{ "target": "IP:PORT", "interval": "30s", "timeout": "3s" }`;
 * `target` only for direct outbounds (a socks check greets the server).
 */
function healthCheck(
  v: unknown,
  path: string,
  iss: Issues,
  allowTarget: boolean,
): HealthCheckConfig | undefined {
  const messages = allowTarget ? undefined : new Map([[
    "target",
    "not supported on socks outbounds: the check is a SOCKS5 greeting to the server",
  ]]);
  const o = object(
    v,
    path,
    iss,
    allowTarget ? HEALTH_CHECK : new Set(["interval", "timeout"]),
    undefined,
    messages,
  );
  if (!o) return undefined;
  let target: string | null | undefined = null;
  if (allowTarget && o.target !== undefined) {
    target = str(o.target, `${path}.target`, iss);
    const ep = target === undefined ? null : parseEndpoint(target);
    if (target !== undefined && (!ep || ep.port === 0)) {
      iss.add(`${path}.target`, `${show(target)}: expected IP:PORT or [IPv6]:PORT`);
      target = undefined;
    }
  }
  const ms = (k: string, dflt: number) =>
    opt(o, k, path, dflt, (x, p) => {
      const d = duration(x, p, iss);
      if (d !== undefined && d > MAX_HEALTH_MS) {
        iss.add(p, `${show(x)}: at most 24h`);
        return undefined;
      }
      return d;
    });
  const interval_ms = ms("interval", 30_000);
  const timeout_ms = ms("timeout", 3000);
  if (target === undefined || interval_ms === undefined || timeout_ms === undefined) {
    return undefined;
  }
  return { target, interval_ms, timeout_ms };
}

function hostname(v: unknown, path: string, iss: Issues): string | undefined {
  const s = str(v, path, iss);
  if (s === undefined) return undefined;
  if (ipLiteralQuiet(s)) return s;
  if (s.length > 253 || !/^[a-zA-Z0-9]([a-zA-Z0-9-]{0,62})(\.[a-zA-Z0-9-]{1,63})*\.?$/.test(s)) {
    iss.add(path, `${show(s)}: not an IP address or host name`);
    return undefined;
  }
  return s;
}

function ipLiteralQuiet(s: string): boolean {
  const tmp = new Issues();
  return ipLiteral(s, "", tmp) !== undefined;
}

function credential(v: unknown, path: string, iss: Issues): string | undefined {
  const s = str(v, path, iss);
  if (s !== undefined && new TextEncoder().encode(s).length > 255) {
    iss.add(path, "longer than 255 bytes (SOCKS5 limit)");
    return undefined;
  }
  return s;
}

function parseSocks(v: Obj, path: string, iss: Issues): SocksOutbound | undefined {
  const o = object(v, path, iss, SOCKS, SINGBOX_DIAL)!;
  const tag = tagOf(o, path, iss);
  const kind = opt(
    o,
    "kind",
    path,
    "socks",
    (x, p) => oneOf(x, p, iss, ["socks", "xray", "warp-masque"] as const),
  );
  const server = hostname(o.server, `${path}.server`, iss);
  const server_port = int(o.server_port, `${path}.server_port`, iss, 1, 65535);
  const version = opt(o, "version", path, "5", (x, p) => oneOf(x, p, iss, ["5"] as const));
  const username = opt(o, "username", path, null, (x, p) => credential(x, p, iss));
  const password = opt(o, "password", path, null, (x, p) => credential(x, p, iss));
  if ((username === null) !== (password === null)) {
    iss.add(
      `${path}.${username === null ? "username" : "password"}`,
      "username and password go together",
    );
  }
  const pool = opt(o, "pool", path, { size: 0, max_idle_ms: null }, (x, p) => {
    const po = object(x, p, iss, new Set(["size", "max_idle"]));
    if (!po) return undefined;
    const size = int(po.size, `${p}.size`, iss, 0, 1024);
    const max_idle_ms = opt(po, "max_idle", p, null, (y, q) => duration(y, q, iss));
    return size === undefined || max_idle_ms === undefined ? undefined : { size, max_idle_ms };
  });
  const domain_strategy = opt(
    o,
    "domain_strategy",
    path,
    "ip",
    (x, p) => oneOf(x, p, iss, ["ip", "sniffed"] as const),
  );
  const routing_mark = opt(o, "routing_mark", path, null, (x, p) => mark32(x, p, iss));
  const dscp = opt(o, "dscp", path, null, (x, p) => int(x, p, iss, 0, 63));
  const connect_timeout_ms = opt(o, "connect_timeout", path, 5000, (x, p) => duration(x, p, iss));
  const health_check = o.health_check === undefined
    ? null
    : healthCheck(o.health_check, `${path}.health_check`, iss, false);
  if (
    tag === undefined || kind === undefined || server === undefined ||
    server_port === undefined || version === undefined || username === undefined ||
    password === undefined || pool === undefined || domain_strategy === undefined ||
    routing_mark === undefined || dscp === undefined || connect_timeout_ms === undefined ||
    health_check === undefined
  ) return undefined;
  return {
    type: "socks",
    tag,
    kind,
    server,
    server_port,
    version,
    username,
    password,
    pool,
    domain_strategy,
    routing_mark,
    dscp,
    connect_timeout_ms,
    ...(health_check ? { health_check } : {}),
  };
}

function parseBlock(v: Obj, path: string, iss: Issues): BlockOutbound | undefined {
  const o = object(v, path, iss, BLOCK)!;
  const tag = tagOf(o, path, iss);
  const mode = opt(
    o,
    "mode",
    path,
    "reset",
    (x, p) => oneOf(x, p, iss, ["reset", "drop"] as const),
  );
  if (tag === undefined || mode === undefined) return undefined;
  return { type: "block", tag, mode, implicit: false };
}

const ROUTE = new Set([
  "geoip",
  "rule_set",
  "rules",
  "final",
  "default_mark",
  "dns_reverse_mapping",
]);
const SINGBOX_ROUTE = new Set([
  "geosite",
  "auto_detect_interface",
  "override_android_vpn",
  "default_interface",
  "default_network_strategy",
  "default_domain_resolver",
  "find_process",
]);

function resolvePath(p: string, opts: ParseOptions): string {
  return isAbsolute(p) ? p : joinPath(opts.baseDir, p);
}

function parseRoute(
  v: unknown,
  iss: Issues,
  opts: ParseOptions,
  refs: Pick<RuleContext, "inbounds" | "outbounds" | "usedReject">,
): RouteConfig | undefined {
  const o = v === undefined ? {} : object(v, "route", iss, ROUTE, SINGBOX_ROUTE);
  if (!o) return undefined;
  const geoip = opt(o, "geoip", "route", null, (x, p) => {
    const g = object(x, p, iss, new Set(["path"]), new Set(["download_url", "download_detour"]));
    const path = g && str(g.path, `${p}.path`, iss);
    return path === undefined ? undefined : { path: resolvePath(path, opts) };
  });
  const tags = new Set<string>();
  const declared: { value: Obj; path: string; tag: string }[] = [];
  if (o.rule_set !== undefined && !Array.isArray(o.rule_set)) {
    iss.add("route.rule_set", `expected an array, got ${typeName(o.rule_set)}`);
  }
  (Array.isArray(o.rule_set) ? o.rule_set : []).forEach((x, i) => {
    const p = `route.rule_set[${i}]`;
    const rs = object(
      x,
      p,
      iss,
      new Set(["type", "tag", "format", "path", "rules"]),
      new Set(["url", "download_detour", "update_interval"]),
    );
    if (!rs) return;
    const tag = str(rs.tag, `${p}.tag`, iss);
    if (tag === undefined) return;
    if (tags.has(tag)) iss.add(`${p}.tag`, `${show(tag)}: duplicate rule set tag`);
    tags.add(tag);
    declared.push({ value: rs, path: p, tag });
  });
  const ctx: RuleContext = {
    iss,
    inbounds: refs.inbounds,
    outbounds: refs.outbounds,
    usedReject: refs.usedReject,
    ruleSets: tags,
    hasGeoip: geoip !== null,
  };
  const rule_set: RuleSetRef[] = [];
  for (const { value: rs, path: p, tag } of declared) {
    const type = oneOf(rs.type, `${p}.type`, iss, ["local", "inline"] as const);
    if (type === "local") {
      if (rs.rules !== undefined) iss.add(`${p}.rules`, `only for type "inline"`);
      const format = rs.format === undefined
        ? "source"
        : oneOf(rs.format, `${p}.format`, iss, ["source"] as const);
      const path = str(rs.path, `${p}.path`, iss);
      if (format && path !== undefined) {
        rule_set.push({ type, tag, format, path: resolvePath(path, opts) });
      }
    } else if (type === "inline") {
      for (const k of ["format", "path"]) {
        if (rs[k] !== undefined) iss.add(`${p}.${k}`, `only for type "local"`);
      }
      const rules: RuleSpec[] = [];
      if (!Array.isArray(rs.rules)) iss.add(`${p}.rules`, `expected an array of rules`);
      else {
        rs.rules.forEach((r, i) => {
          const m = parseRuleMatch(r, `${p}.rules[${i}]`, ctx, "headless");
          if (m) rules.push(m);
        });
      }
      rule_set.push({ type, tag, rules });
    }
  }
  const rules: RouteRule[] = [];
  if (o.rules !== undefined && !Array.isArray(o.rules)) {
    iss.add("route.rules", `expected an array, got ${typeName(o.rules)}`);
  }
  const list = Array.isArray(o.rules) ? o.rules : [];
  for (let i = 0; i < list.length; i++) {
    const r = parseRouteRule(list[i], `route.rules[${i}]`, ctx);
    if (r) rules.push(r);
  }
  let final: string | undefined;
  if (o.final === undefined) {
    final = refs.outbounds.values().next().value;
  } else {
    final = str(o.final, "route.final", iss);
    if (final !== undefined && !refs.outbounds.has(final)) {
      iss.add("route.final", `${show(final)}: no outbound with this tag`);
    }
  }
  const default_mark = opt(o, "default_mark", "route", 255, (x, p) => mark32(x, p, iss));
  const dns_reverse_mapping = opt(
    o,
    "dns_reverse_mapping",
    "route",
    false,
    (x, p) => bool(x, p, iss),
  );
  if (
    final === undefined || default_mark === undefined || geoip === undefined ||
    dns_reverse_mapping === undefined
  ) return undefined;
  return { geoip, rule_set, rules, final, default_mark, dns_reverse_mapping };
}

const IPC = new Set(["path", "mode", "group"]);

function parseIpc(v: unknown, iss: Issues): IpcConfig {
  const dflt: IpcConfig = { path: "/run/vpn-router/router.sock", mode: 0o600, group: null };
  if (v === undefined) return dflt;
  const o = object(v, "ipc", iss, IPC);
  if (!o) return dflt;
  const path = opt(o, "path", "ipc", dflt.path, (x, p) => {
    const s = str(x, p, iss);
    if (s !== undefined && !isAbsolute(s)) iss.add(p, `${show(s)}: must be an absolute path`);
    return s;
  });
  const mode = opt(o, "mode", "ipc", dflt.mode, (x, p) => {
    if (typeof x === "string" && /^0?[0-7]{3}$/.test(x)) return parseInt(x, 8);
    iss.add(p, `${show(x)}: expected an octal mode string such as "0600" or "0660"`);
    return undefined;
  });
  const group = opt(o, "group", "ipc", null, (x, p) => str(x, p, iss));
  return { path: path ?? dflt.path, mode: mode ?? dflt.mode, group: group ?? null };
}
