/**
 * Parses rules from JSON: top-level route rules, nested rules of logical
 * rules, and the headless rules of rule-set files. One parser, so the same
 * rule text means the same thing everywhere; every issue names its path.
 *
 * @module
 */

import type { Network, SniffedProtocol } from "../core/types.ts";
import { ParsedCidrPool, type ParsedCidrs } from "../rules/cidr_text.ts";
import { CompactRule } from "../rules/compact_rule.ts";
import {
  type DefaultRuleSpec,
  EMPTY_DEFAULT_RULE,
  type LogicalRuleSpec,
  type PortRange,
  type RouteRule,
  type RuleSpec,
} from "../rules/spec.ts";
import { Issues } from "./config_error.ts";
import { REJECT_DROP_TAG, REJECT_TAG } from "./schema.ts";
import {
  bool,
  cidr,
  int,
  listable,
  markMatch,
  type Obj,
  object,
  oneOf,
  port,
  portRange,
  show,
  str,
  typeName,
} from "./values.ts";

/** What the rule parser checks references against. */
export interface RuleContext {
  readonly iss: Issues;
  /** Known inbound tags (route rules only). */
  readonly inbounds: ReadonlySet<string>;
  /** Declared rule-set tags. */
  readonly ruleSets: ReadonlySet<string>;
  /** Known outbound tags. */
  readonly outbounds: ReadonlySet<string>;
  /** Whether `route.geoip` is configured. */
  readonly hasGeoip: boolean;
  /** Filled with the implicit reject tags that rules use. */
  readonly usedReject: Set<string>;
}

const HEADLESS_FIELDS = [
  "type",
  "invert",
  "domain",
  "domain_suffix",
  "domain_keyword",
  "domain_regex",
  "ip_cidr",
  "source_ip_cidr",
  "port",
  "port_range",
  "source_port",
  "source_port_range",
  "network",
];
const ROUTE_FIELDS = [
  ...HEADLESS_FIELDS,
  "geoip",
  "ip_is_private",
  "source_geoip",
  "source_ip_is_private",
  "inbound",
  "protocol",
  "fwmark",
  "dscp",
  "ip_version",
  "rule_set",
];
const LOGICAL_FIELDS = ["type", "mode", "rules", "invert"];
const ACTION_FIELDS = ["outbound", "action", "method"];

const NESTED_ONLY_MESSAGE = new Map(
  ACTION_FIELDS.map((k) => [k, "only a top-level rule takes an outbound or action"]),
);

const KNOWN = {
  headless: new Set(HEADLESS_FIELDS),
  headlessLogical: new Set(LOGICAL_FIELDS),
  nested: new Set(ROUTE_FIELDS),
  nestedLogical: new Set(LOGICAL_FIELDS),
  top: new Set([...ROUTE_FIELDS, ...ACTION_FIELDS]),
  topLogical: new Set([...LOGICAL_FIELDS, ...ACTION_FIELDS]),
};

/** sing-box fields we recognise but do not implement (clearer message than "unknown"). */
const UNSUPPORTED = new Set([
  "geosite",
  "auth_user",
  "user",
  "user_id",
  "process_name",
  "process_path",
  "process_path_regex",
  "process_pid",
  "package_name",
  "package_name_regex",
  "clash_mode",
  "wifi_ssid",
  "wifi_bssid",
  "source_mac_address",
  "source_hostname",
  "client",
  "domain_wildcard",
  "network_type",
  "network_is_expensive",
  "network_is_constrained",
  "network_interface_address",
  "default_interface_address",
  "interface_address",
  "preferred_by",
  "rule_set_ip_cidr_match_source",
  "rule_set_ipcidr_match_source",
  "rule_set_ip_cidr_accept_empty",
  "query_type",
  "ip_accept_any",
  "override_address",
  "override_port",
  "network_strategy",
  "network_type",
  "fallback_network_type",
  "fallback_delay",
  "udp_disable_domain_unmapping",
  "udp_connect",
  "udp_timeout",
  "tls_fragment",
  "tls_record_fragment",
  "tls_fragment_fallback_delay",
  "no_drop",
  "sniffer",
  "timeout",
  "strategy",
]);

/** Where a rule sits: decides which fields are allowed. */
export type RuleLevel = "top" | "nested" | "headless";

const NETWORKS: readonly Network[] = ["tcp", "udp"];
const PROTOCOLS: readonly SniffedProtocol[] = ["tls", "http", "quic"];

/**
 * Fast path for large rule sets: an array of non-empty lower-case strings is
 * used as is (no copy); anything else goes through the validating path.
 */
function cleanLowerList(v: unknown): readonly string[] | undefined {
  if (!Array.isArray(v)) return undefined;
  for (let i = 0; i < v.length; i++) {
    const x = v[i];
    if (typeof x !== "string" || x.length === 0 || x.toLowerCase() !== x) return undefined;
  }
  return v as string[];
}

function lowerStrings(v: unknown, path: string, ctx: RuleContext): readonly string[] {
  return cleanLowerList(v) ?? listable(v, path, (x, p) => str(x, p, ctx.iss)?.toLowerCase());
}

/** Parses the match part of a rule at `level`; `undefined` after recording issues. */
export function parseRuleMatch(
  v: unknown,
  path: string,
  ctx: RuleContext,
  level: RuleLevel,
  depth = 0,
): RuleSpec | undefined {
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    ctx.iss.add(path, `expected a rule object, got ${typeName(v)}`);
    return undefined;
  }
  const type = (v as Obj).type ?? "default";
  if (type !== "default" && type !== "logical") {
    ctx.iss.add(`${path}.type`, `${show(type)}: expected "default" or "logical"`);
    return undefined;
  }
  const logical = type === "logical";
  const known = level === "top"
    ? (logical ? KNOWN.topLogical : KNOWN.top)
    : level === "nested"
    ? (logical ? KNOWN.nestedLogical : KNOWN.nested)
    : (logical ? KNOWN.headlessLogical : KNOWN.headless);
  const o = object(v, path, ctx.iss, known, UNSUPPORTED, NESTED_ONLY_MESSAGE);
  if (!o) return undefined;
  return logical ? parseLogical(o, path, ctx, level, depth) : parseDefault(o, path, ctx, known);
}

/**
 * How deep logical rules may nest (a logical rule at the top is depth 1).
 * Compiling and matching them recurse; a config nested thousands deep ran
 * out of stack with no path in the message.
 */
export const MAX_LOGICAL_DEPTH = 32;

function parseLogical(
  o: Obj,
  path: string,
  ctx: RuleContext,
  level: RuleLevel,
  depth: number,
): LogicalRuleSpec | undefined {
  const mode = oneOf(o.mode, `${path}.mode`, ctx.iss, ["and", "or"] as const);
  const invert = o.invert === undefined ? false : bool(o.invert, `${path}.invert`, ctx.iss);
  const rules: RuleSpec[] = [];
  if (depth >= MAX_LOGICAL_DEPTH) {
    ctx.iss.add(path, `logical rules nested more than ${MAX_LOGICAL_DEPTH} deep`);
    return undefined;
  }
  if (!Array.isArray(o.rules) || o.rules.length === 0) {
    ctx.iss.add(`${path}.rules`, "expected a non-empty array of rules");
  } else {
    const sub = level === "headless" ? "headless" : "nested";
    o.rules.forEach((r, i) => {
      const m = parseRuleMatch(r, `${path}.rules[${i}]`, ctx, sub, depth + 1);
      if (m) rules.push(m);
    });
  }
  if (mode === undefined || invert === undefined) return undefined;
  return { type: "logical", mode, rules, invert };
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

function parseDefault(
  o: Obj,
  path: string,
  ctx: RuleContext,
  known: ReadonlySet<string>,
): DefaultRuleSpec {
  const iss = ctx.iss;
  // A literal with every field (one object shape for all rules; spread is slower).
  const e = EMPTY_DEFAULT_RULE;
  const r: Mutable<DefaultRuleSpec> = {
    type: "default",
    domain: e.domain,
    domain_suffix: e.domain_suffix,
    domain_keyword: e.domain_keyword,
    domain_regex: e.domain_regex,
    geoip: e.geoip,
    ip_cidr: e.ip_cidr,
    ip_is_private: false,
    port: e.port,
    source_geoip: e.source_geoip,
    source_ip_cidr: e.source_ip_cidr,
    source_ip_is_private: false,
    source_port: e.source_port,
    network: e.network,
    inbound: e.inbound,
    protocol: e.protocol,
    fwmark: e.fwmark,
    dscp: e.dscp,
    ip_version: e.ip_version,
    rule_set: e.rule_set,
    invert: false,
  };
  let ports: PortRange[] | undefined, srcPorts: PortRange[] | undefined;
  for (const k in o) {
    if (!known.has(k)) continue; // reported by object()
    const v = o[k];
    const p = `${path}.${k}`;
    switch (k) {
      case "domain":
      case "domain_keyword":
        r[k] = lowerStrings(v, p, ctx);
        break;
      case "domain_suffix":
        r.domain_suffix =
          (cleanLowerList(v)?.includes(".") === false ? (v as string[]) : undefined) ??
            listable(v, p, (x, q) => {
              const s = str(x, q, iss)?.toLowerCase();
              if (s === ".") iss.add(q, `${show(s)}: suffix must name a domain`);
              return s === "." ? undefined : s;
            });
        break;
      case "domain_regex":
        r.domain_regex = listable(v, p, (x, q) => {
          const s = str(x, q, iss);
          if (s === undefined) return undefined;
          try {
            new RegExp(s);
          } catch (e) {
            iss.add(q, `${show(s)}: invalid regular expression: ${(e as Error).message}`);
            return undefined;
          }
          const beyond = beyondLinear(s);
          if (beyond !== null) {
            iss.add(q, `${show(s)}: ${beyond} are not supported (RE2 syntax, as sing-box)`);
            return undefined;
          }
          return s;
        });
        break;
      case "geoip":
      case "source_geoip":
        r[k] = listable(v, p, (x, q) => {
          const s = str(x, q, iss)?.toLowerCase();
          if (s === undefined) return undefined;
          if (s !== "private" && !/^[a-z]{2}$/.test(s)) {
            iss.add(q, `${show(x)}: expected a two-letter country code or "private"`);
            return undefined;
          }
          if (s !== "private" && !ctx.hasGeoip) {
            iss.add(q, `${show(x)}: needs a GeoIP database (route.geoip.path)`);
          }
          return s;
        });
        break;
      case "ip_cidr":
      case "source_ip_cidr":
        r[k] = listable(v, p, (x, q) => cidr(x, q, iss));
        break;
      case "ip_is_private":
      case "source_ip_is_private":
      case "invert":
        r[k] = bool(v, p, iss) ?? false;
        break;
      case "port":
        ports = [...(ports ?? []), ...listable(v, p, (x, q) => port(x, q, iss))];
        break;
      case "port_range":
        ports = [...(ports ?? []), ...listable(v, p, (x, q) => portRange(x, q, iss))];
        break;
      case "source_port":
        srcPorts = [...(srcPorts ?? []), ...listable(v, p, (x, q) => port(x, q, iss))];
        break;
      case "source_port_range":
        srcPorts = [
          ...(srcPorts ?? []),
          ...listable(v, p, (x, q) => portRange(x, q, iss)),
        ];
        break;
      case "network":
        r.network = listable(v, p, (x, q) => oneOf(x, q, iss, NETWORKS));
        break;
      case "protocol":
        r.protocol = listable(v, p, (x, q) => oneOf(x, q, iss, PROTOCOLS));
        break;
      case "inbound":
        r.inbound = listable(v, p, (x, q) => {
          const s = str(x, q, iss);
          if (s !== undefined && !ctx.inbounds.has(s)) {
            iss.add(q, `${show(s)}: no inbound with this tag`);
          }
          return s;
        });
        break;
      case "rule_set":
        r.rule_set = listable(v, p, (x, q) => {
          const s = str(x, q, iss);
          if (s === undefined) return undefined;
          if (!ctx.ruleSets.has(s)) {
            iss.add(q, `${show(s)}: no rule set with this tag (declare it in route.rule_set)`);
            return undefined;
          }
          return s;
        });
        break;
      case "fwmark":
        r.fwmark = listable(v, p, (x, q) => markMatch(x, q, iss));
        break;
      case "dscp":
        r.dscp = listable(v, p, (x, q) => int(x, q, iss, 0, 63));
        break;
      case "ip_version":
        r.ip_version = listable(v, p, (x, q) => {
          if (x === 4 || x === 6) return x;
          iss.add(q, `${show(x)}: expected 4 or 6`);
          return undefined;
        });
        break;
      default:
        break; // type, and top-level action fields; unknown ones were reported by object()
    }
  }
  if (ports) r.port = ports;
  if (srcPorts) r.source_port = srcPorts;
  return r;
}

/** Lower-case, non-empty names (and for suffixes not "."): their count, or -1. */
function compactNames(v: unknown, suffix: boolean): number {
  if (typeof v === "string") {
    return v.length !== 0 && v.toLowerCase() === v && !(suffix && v === ".") ? 1 : -1;
  }
  if (!Array.isArray(v)) return -1;
  for (let i = 0; i < v.length; i++) {
    const x = v[i];
    if (typeof x !== "string" || x.length === 0 || x.toLowerCase() !== x || (suffix && x === ".")) {
      return -1;
    }
  }
  return v.length;
}

/** Parsed `ip_cidr` values of compact rules (handed to the engine's index builder). */
const cidrPool = new ParsedCidrPool();

/** Valid CIDR texts, parsed into the current group of {@linkcode cidrPool}: their count, or -1. */
function compactCidrs(v: unknown): number {
  if (typeof v === "string") {
    cidrPool.begin(1);
    return cidrPool.add(v) ? 1 : -1;
  }
  if (!Array.isArray(v)) return -1;
  cidrPool.begin(v.length);
  for (let i = 0; i < v.length; i++) {
    const x = v[i];
    if (typeof x !== "string" || !cidrPool.add(x)) return -1;
  }
  return v.length;
}

/** Context for re-parsing a compact rule's spec (its fields consult no references). */
const COMPACT_CTX: RuleContext = {
  iss: new Issues(),
  inbounds: new Set(),
  ruleSets: new Set(),
  outbounds: new Set(),
  hasGeoip: false,
  usedReject: new Set(),
};

function compactSpec(raw: unknown): RuleSpec {
  const iss = new Issues();
  const spec = parseRuleMatch(raw, "", { ...COMPACT_CTX, iss }, "top");
  if (spec === undefined || !iss.ok) {
    throw new TypeError(`compact rule no longer parses: ${iss.list[0]?.message ?? "?"}`);
  }
  return spec;
}

/**
 * A parser for the match of top-level rules that already passed validation
 * against these references (e.g. rules compiled on another thread, whose
 * spec is only wanted on demand). Throws a `TypeError` if a rule no longer
 * parses.
 */
export function validatedRuleParser(
  refs: Pick<RuleContext, "inbounds" | "ruleSets" | "outbounds" | "hasGeoip">,
): (raw: unknown) => RuleSpec {
  return (raw) => {
    const iss = new Issues();
    const spec = parseRuleMatch(raw, "", { ...refs, iss, usedReject: new Set() }, "top");
    if (spec === undefined || !iss.ok) {
      throw new TypeError(`rule no longer parses: ${iss.list[0]?.message ?? "?"}`);
    }
    return spec;
  };
}

/**
 * Fast path for the bulk of big configs: a rule with only valid, already
 * normalised `domain` / `domain_suffix` / `domain_keyword` / `ip_cidr`
 * values and a known outbound becomes a {@linkcode CompactRule} without a
 * spec. Anything else (or anything invalid) returns undefined and takes the
 * general path, which reports issues.
 */
function compactRule(v: unknown, ctx: RuleContext): CompactRule | undefined {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return undefined;
  const o = v as Obj;
  let outbound: unknown, items = 0, cidrs: ParsedCidrs | null = null, ok = true;
  for (const k in o) {
    const x = o[k];
    let n: number;
    switch (k) {
      case "outbound":
        outbound = x;
        continue;
      case "action":
        if (x !== "route") ok = false;
        n = 0;
        break;
      case "domain":
      case "domain_keyword":
        n = compactNames(x, false);
        break;
      case "domain_suffix":
        n = compactNames(x, true);
        break;
      case "ip_cidr":
        n = compactCidrs(x);
        if (n > 0) cidrs = cidrPool.end();
        else cidrPool.abort();
        break;
      default:
        n = -1;
    }
    if (n < 0 || !ok || (n === 0 && k !== "action")) {
      ok = false;
      break;
    }
    items += n;
  }
  if (!ok || items === 0 || typeof outbound !== "string" || !ctx.outbounds.has(outbound)) {
    if (cidrs !== null) cidrPool.abort();
    return undefined;
  }
  return new CompactRule(o, outbound, compactSpec, cidrs);
}

/** Parses one top-level route rule (match + `outbound` / `action`). */
export function parseRouteRule(v: unknown, path: string, ctx: RuleContext): RouteRule | undefined {
  const compact = compactRule(v, ctx);
  if (compact !== undefined) return compact;
  const match = parseRuleMatch(v, path, ctx, "top");
  if (match === undefined) return undefined;
  const o = v as Obj;
  const iss = ctx.iss;
  const action = o.action === undefined ? "route" : o.action;
  let outbound: string | undefined;
  if (action === "route") {
    if (o.method !== undefined) iss.add(`${path}.method`, `only for action "reject"`);
    if (o.outbound === undefined) {
      iss.add(`${path}.outbound`, 'missing: a rule needs an outbound (or action "reject")');
    } else {
      outbound = str(o.outbound, `${path}.outbound`, iss);
      if (outbound !== undefined && !ctx.outbounds.has(outbound)) {
        iss.add(`${path}.outbound`, `${show(outbound)}: no outbound with this tag`);
        outbound = undefined;
      }
    }
  } else if (action === "reject") {
    if (o.outbound !== undefined) iss.add(`${path}.outbound`, `not allowed with action "reject"`);
    const method = o.method === undefined
      ? "default"
      : oneOf(o.method, `${path}.method`, iss, ["default", "drop"] as const);
    if (method !== undefined) {
      outbound = method === "drop" ? REJECT_DROP_TAG : REJECT_TAG;
      ctx.usedReject.add(outbound);
    }
  } else {
    iss.add(
      `${path}.action`,
      `${show(action)}: not supported (supported: "route", "reject"; sniffing is set per inbound)`,
    );
  }
  if (outbound === undefined) return undefined;
  return { match, outbound, raw: v };
}

/**
 * What in regular expression `s` needs backtracking, or null: backreferences
 * (`\1`, `\k<name>`) and lookaround (`(?=`, `(?!`, `(?<=`, `(?<!`). RE2,
 * which sing-box's `domain_regex` uses, has neither; without them V8 can
 * finish any match in linear time: the router runs with
 * `--enable-experimental-regexp-engine-on-excessive-backtracks`, so a
 * pattern that backtracks too long on a name (`([a-z]+)*x` on a long label
 * a client made up) is rerun by the linear-time engine instead of holding the
 * data-plane thread for minutes — which that engine cannot do for these.
 */
export function beyondLinear(s: string): string | null {
  let inClass = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === "\\") {
      const n = s[i + 1] ?? "";
      if (!inClass && ((n >= "1" && n <= "9") || (n === "k" && s[i + 2] === "<"))) {
        return "backreferences";
      }
      i++;
    } else if (inClass) {
      if (c === "]") inClass = false;
    } else if (c === "[") inClass = true;
    else if (c === "(" && s[i + 1] === "?") {
      const n = s[i + 2];
      if (n === "=" || n === "!") return "lookaheads";
      if (n === "<" && (s[i + 3] === "=" || s[i + 3] === "!")) return "lookbehinds";
    }
  }
  return null;
}
