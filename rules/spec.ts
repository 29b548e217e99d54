/**
 * Validated, normalised rule descriptions: what `config/` produces from JSON
 * and what {@linkcode Engine} compiles. Every value here has already been
 * checked (CIDRs parsed to bytes, regexes compiled once, ports in range).
 *
 * @module
 */

import type { Network, SniffedProtocol } from "../core/types.ts";

/** A CIDR prefix: address bytes (4 or 16) with host bits cleared. */
export interface Cidr {
  readonly addr: Uint8Array;
  readonly prefix: number;
}

/** An inclusive port range; a single port has `from === to`. */
export interface PortRange {
  readonly from: number;
  readonly to: number;
}

/** A firewall mark match: `(flow.mark & mask) === value`. */
export interface MarkMatch {
  readonly value: number;
  readonly mask: number;
}

/**
 * A default (leaf) rule. Empty arrays mean "field absent". `port` holds
 * both `port` and `port_range` items (same group, OR-ed); likewise
 * `source_port`.
 */
export interface DefaultRuleSpec {
  readonly type: "default";
  readonly domain: readonly string[];
  /** As written, lower-case: `x.com` (apex + subdomains) or `.x.com` (subdomains only). */
  readonly domain_suffix: readonly string[];
  readonly domain_keyword: readonly string[];
  readonly domain_regex: readonly string[];
  /** Lower-case country codes; `private` means a private address. */
  readonly geoip: readonly string[];
  readonly ip_cidr: readonly Cidr[];
  readonly ip_is_private: boolean;
  readonly port: readonly PortRange[];
  readonly source_geoip: readonly string[];
  readonly source_ip_cidr: readonly Cidr[];
  readonly source_ip_is_private: boolean;
  readonly source_port: readonly PortRange[];
  readonly network: readonly Network[];
  readonly inbound: readonly string[];
  readonly protocol: readonly SniffedProtocol[];
  readonly fwmark: readonly MarkMatch[];
  readonly dscp: readonly number[];
  /** 4 and/or 6. */
  readonly ip_version: readonly number[];
  /** Tags of rule sets whose rules are merged into this rule's match. */
  readonly rule_set: readonly string[];
  readonly invert: boolean;
}

/** A logical rule: `and` / `or` over nested rules. */
export interface LogicalRuleSpec {
  readonly type: "logical";
  readonly mode: "and" | "or";
  readonly rules: readonly RuleSpec[];
  readonly invert: boolean;
}

/** Any rule (match part only). */
export type RuleSpec = DefaultRuleSpec | LogicalRuleSpec;

/** A top-level route rule: a match and where it sends the flow. */
export interface RouteRule {
  readonly match: RuleSpec;
  /** Outbound tag (a `reject` action maps to an implicit block outbound's tag). */
  readonly outbound: string;
  /** The rule as written in the config (for `explain` and fingerprints). */
  readonly raw: unknown;
}

/** A loaded rule set: its tag and its (headless) rules. */
export interface RuleSetSpec {
  readonly tag: string;
  readonly rules: readonly RuleSpec[];
}

const EMPTY: readonly never[] = Object.freeze([]);

/** A default rule with every field absent; spread it and set what you need. */
export const EMPTY_DEFAULT_RULE: DefaultRuleSpec = Object.freeze({
  type: "default",
  domain: EMPTY,
  domain_suffix: EMPTY,
  domain_keyword: EMPTY,
  domain_regex: EMPTY,
  geoip: EMPTY,
  ip_cidr: EMPTY,
  ip_is_private: false,
  port: EMPTY,
  source_geoip: EMPTY,
  source_ip_cidr: EMPTY,
  source_ip_is_private: false,
  source_port: EMPTY,
  network: EMPTY,
  inbound: EMPTY,
  protocol: EMPTY,
  fwmark: EMPTY,
  dscp: EMPTY,
  ip_version: EMPTY,
  rule_set: EMPTY,
  invert: false,
});
