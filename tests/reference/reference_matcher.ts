/**
 * A deliberately naive rule matcher, written for clarity rather than speed:
 * every rule is tried in order, every item is checked by scanning its list.
 * It implements the same documented semantics as `rules/engine.ts` and is
 * the oracle of the conformance test.
 *
 * Semantics (sing-box): a default rule's items form four groups — source
 * address, source port, destination address, destination port — plus
 * "other" items. The rule matches when every other item matches and, for
 * each group it has items in, at least one item of the group matches.
 * `rule_set` merges: the referenced rules see which groups the outer rule
 * already satisfied and may satisfy the outer rule's groups themselves.
 * This is modelled with explicit sets of group states.
 */

import type { Decision, FlowMeta } from "../../core/types.ts";
import ipaddr from "ipaddr.js";
import type { Cidr, DefaultRuleSpec, RouteRule, RuleSetSpec, RuleSpec } from "../../rules/spec.ts";

const SRC = 1, SRC_PORT = 2, DST = 4, DST_PORT = 8;

/** Inputs the reference needs besides the flow. */
export interface ReferenceInput {
  rules: readonly RouteRule[];
  final: string;
  ruleSets: readonly RuleSetSpec[];
  country: (addr: Uint8Array) => string | null;
}

// CIDR membership comes from ipaddr.js, an implementation independent of
// our trie, so the conformance test compares two unrelated codes.
function toAddr(bytes: Uint8Array): ipaddr.IPv4 | ipaddr.IPv6 {
  return ipaddr.fromByteArray(Array.from(bytes));
}

function inCidr(c: Cidr, a: Uint8Array): boolean {
  if (c.addr.length !== a.length) return false;
  const addr = toAddr(a);
  const range = toAddr(c.addr);
  return addr.kind() === range.kind() &&
    (addr as ipaddr.IPv4).match(range as ipaddr.IPv4, c.prefix);
}

const PRIVATE_V4 = [
  "0.0.0.0/32",
  "127.0.0.0/8",
  "10.0.0.0/8",
  "172.16.0.0/12",
  "192.168.0.0/16",
  "169.254.0.0/16",
  "224.0.0.0/4",
].map((t) => ipaddr.parseCIDR(t));
const PRIVATE_V6 = ["::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8"].map((t) =>
  ipaddr.parseCIDR(t)
);

function isPrivate(a: Uint8Array): boolean {
  const addr = toAddr(a);
  const ranges = a.length === 4 ? PRIVATE_V4 : PRIVATE_V6;
  return ranges.some(([range, prefix]) =>
    (addr as ipaddr.IPv4).match(range as ipaddr.IPv4, prefix)
  );
}

function domainItemMatches(r: DefaultRuleSpec, d: string | undefined): boolean {
  if (d === undefined || d === "") return false;
  if (r.domain.some((x) => x === d)) return true;
  for (const s of r.domain_suffix) {
    if (s.startsWith(".")) {
      if (d.endsWith(s)) return true;
    } else if (d === s || d.endsWith("." + s)) return true;
  }
  if (r.domain_keyword.some((k) => d.includes(k))) return true;
  return r.domain_regex.some((re) => new RegExp(re).test(d));
}

function geo(codes: readonly string[], addr: Uint8Array, input: ReferenceInput): boolean {
  for (const c of codes) {
    if (c === "private" ? isPrivate(addr) : input.country(addr) === c) return true;
  }
  return false;
}

function groupsOf(r: DefaultRuleSpec): number {
  let g = 0;
  if (r.source_geoip.length || r.source_ip_cidr.length || r.source_ip_is_private) g |= SRC;
  if (r.source_port.length) g |= SRC_PORT;
  if (
    r.domain.length || r.domain_suffix.length || r.domain_keyword.length ||
    r.domain_regex.length || r.geoip.length || r.ip_cidr.length || r.ip_is_private
  ) g |= DST;
  if (r.port.length) g |= DST_PORT;
  return g;
}

function hasOthers(r: DefaultRuleSpec): boolean {
  return r.network.length + r.inbound.length + r.protocol.length + r.fwmark.length +
      r.dscp.length + r.ip_version.length > 0;
}

function othersMatch(r: DefaultRuleSpec, f: FlowMeta): boolean {
  if (r.network.length && !r.network.includes(f.network)) return false;
  if (r.inbound.length && !r.inbound.includes(f.inbound)) return false;
  if (r.protocol.length && !r.protocol.some((p) => p === f.protocol)) return false;
  if (
    r.fwmark.length &&
    !r.fwmark.some((m) => f.mark !== undefined && ((f.mark & m.mask) >>> 0) === m.value)
  ) return false;
  if (r.dscp.length && !r.dscp.some((d) => d === f.dscp)) return false;
  const version = f.destination.addr.length === 4 ? 4 : 6;
  if (r.ip_version.length && !r.ip_version.includes(version)) return false;
  return true;
}

function ownGroups(r: DefaultRuleSpec, f: FlowMeta, input: ReferenceInput): number {
  let g = 0;
  const inRange = (rs: DefaultRuleSpec["port"], p: number) =>
    rs.some((x) => x.from <= p && p <= x.to);
  if (
    r.source_ip_cidr.some((c) => inCidr(c, f.source.addr)) ||
    (r.source_ip_is_private && isPrivate(f.source.addr)) ||
    geo(r.source_geoip, f.source.addr, input)
  ) g |= SRC;
  if (inRange(r.source_port, f.source.port)) g |= SRC_PORT;
  if (
    domainItemMatches(r, f.domain) || r.ip_cidr.some((c) => inCidr(c, f.destination.addr)) ||
    (r.ip_is_private && isPrivate(f.destination.addr)) ||
    geo(r.geoip, f.destination.addr, input)
  ) g |= DST;
  if (inRange(r.port, f.destination.port)) g |= DST_PORT;
  return g;
}

/** A set of reachable group states, as a plain array without duplicates. */
type States = number[];

const uniq = (xs: number[]): States => [...new Set(xs)];

function evaluate(rule: RuleSpec, f: FlowMeta, base: number, input: ReferenceInput): States {
  if (rule.type === "logical") {
    const evalBase = rule.invert ? 0 : base;
    let result: States;
    if (rule.mode === "and") {
      result = [evalBase];
      for (const sub of rule.rules) {
        const s = evaluate(sub, f, evalBase, input);
        if (s.length === 0) return rule.invert ? [base] : [];
        result = uniq(result.flatMap((a) => s.map((b) => a | b)));
      }
    } else {
      result = uniq(rule.rules.flatMap((sub) => evaluate(sub, f, evalBase, input)));
      if (result.length === 0) return rule.invert ? [base] : [];
    }
    return rule.invert ? [] : result;
  }
  const required = groupsOf(rule);
  if (required === 0 && !hasOthers(rule) && rule.rule_set.length === 0) return [base];
  const evalBase = rule.invert ? 0 : base;
  const state = evalBase | (ownGroups(rule, f, input) & required);
  if (!othersMatch(rule, f)) return rule.invert ? [base] : [];
  let candidates: States;
  if (rule.rule_set.length) {
    candidates = [];
    for (const tag of rule.rule_set) {
      const set = input.ruleSets.find((s) => s.tag === tag)!;
      for (const inner of set.rules) candidates.push(...evaluate(inner, f, state, input));
    }
    candidates = uniq(candidates);
  } else {
    candidates = [state];
  }
  const kept = candidates.filter((s) => (s & required) === required);
  if (kept.length === 0) return rule.invert ? [base] : [];
  return rule.invert ? [] : kept;
}

/** The decision for `flow`: first rule whose evaluation yields any state, else final. */
export function referenceMatch(input: ReferenceInput, flow: FlowMeta): Decision {
  for (let i = 0; i < input.rules.length; i++) {
    const r = input.rules[i]!;
    if (evaluate(r.match, flow, 0, input).length > 0) return { outbound: r.outbound, rule: i };
  }
  return { outbound: input.final, rule: null };
}
