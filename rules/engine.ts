/**
 * The rule engine: an immutable snapshot compiled from route rules and rule
 * sets. `match(flow)` returns the first matching rule's outbound, or `final`.
 *
 * How a flow is matched: the domain index, the destination and source CIDR
 * tries and the destination-port interval index are each consulted once;
 * they stamp the rule nodes they hit and propose "candidate" top-level rules
 * (a rule whose destination address, or else destination port, can only be
 * satisfied through an index is only tried when the index proposed it).
 * Every candidate is checked fully and the lowest matching index wins;
 * rules that no index can vouch for (inverted, GeoIP, `ip_is_private`,
 * `rule_set`, no address or port item, ...) are walked in order, stopping at
 * the best candidate found.
 *
 * @module
 */

import type { Decision, FlowMeta } from "../core/types.ts";
import { CidrIndexBuilder } from "./item_cidr.ts";
import type { CidrIndex } from "./item_cidr.ts";
import { DomainIndexBuilder } from "./item_domain.ts";
import type { DomainIndex } from "./item_domain.ts";
import { type GeoIpLookup, noGeoIp } from "./item_geoip.ts";
import { PortIndex } from "./item_port.ts";
import {
  type CompiledRuleSet,
  DefaultMatcher,
  FlowScratch,
  LogicalMatcher,
  type Matcher,
} from "./matcher.ts";
import { fingerprint } from "./fingerprint.ts";
import type { PortRange, RouteRule, RuleSetSpec, RuleSpec } from "./spec.ts";

/** What {@linkcode Engine.explain} reports. */
export interface Explanation {
  readonly outbound: string;
  /** Index into `route.rules`, or null when `final` applied. */
  readonly rule: number | null;
  readonly final: boolean;
  /** The matching rule as written in the config, or null. */
  readonly rule_json: unknown;
}

/** Inputs of {@linkcode Engine}. */
export interface EngineOptions {
  readonly rules: readonly RouteRule[];
  readonly final: string;
  readonly ruleSets?: readonly RuleSetSpec[];
  /** GeoIP database; rules with `geoip` match nothing without one. */
  readonly geoip?: GeoIpLookup;
}

const W_DST = 1, W_PORT = 2, W_SRC = 3;
const NO_SETS: readonly CompiledRuleSet[] = Object.freeze([]);

/** A compiled, immutable rule snapshot. Build a new one to reload. */
export class Engine {
  /** The route rules this engine was built from. */
  readonly rules: readonly RouteRule[];
  /** Tag used when no rule matches. */
  readonly final: string;
  readonly #top: Matcher[] = [];
  readonly #decisions: Decision[];
  readonly #finalDecision: Decision;
  readonly #always: Int32Array;
  /** 1 when a proposal alone proves the match (only index-answered items; see #first). */
  readonly #pure: Uint8Array;
  readonly #nodeTop: Int32Array;
  readonly #nodeWitness: Uint8Array;
  readonly #domains: DomainIndex;
  readonly #dstCidr: CidrIndex;
  readonly #srcCidr: CidrIndex;
  readonly #ports: PortIndex;
  readonly #scratch: FlowScratch;
  readonly #cand: Int32Array;
  readonly #candSeen: Uint32Array;
  #candLen = 0;
  readonly #hits: Float64Array;
  #finalHits = 0;
  #fingerprints: string[] | null = null;

  readonly #stampDst = (node: number): void => {
    const s = this.#scratch;
    s.dstHit[node] = s.epoch;
    if (this.#nodeWitness[node] === W_DST) this.#propose(this.#nodeTop[node]!);
  };
  readonly #stampSrc = (node: number): void => {
    this.#scratch.srcHit[node] = this.#scratch.epoch;
    if (this.#nodeWitness[node] === W_SRC) this.#propose(this.#nodeTop[node]!);
  };
  readonly #stampPort = (node: number): void => this.#propose(this.#nodeTop[node]!);

  /** Compiles `opts`. Rule specs must come from the config parser (already validated). */
  constructor(opts: EngineOptions) {
    this.rules = opts.rules;
    this.final = opts.final;
    const nodes: DefaultMatcher[] = [];
    const sets = new Map<string, CompiledRuleSet>();
    const compile = (spec: RuleSpec): Matcher => {
      if (spec.type === "logical") {
        return new LogicalMatcher(spec.mode, spec.rules.map(compile), spec.invert);
      }
      const rs = spec.rule_set.length === 0 ? NO_SETS : spec.rule_set.map((tag) => {
        const set = sets.get(tag);
        if (!set) throw new ReferenceError(`rule set "${tag}" is not loaded`);
        return set;
      });
      const m = new DefaultMatcher(nodes.length, spec, rs);
      nodes.push(m);
      return m;
    };
    for (const set of opts.ruleSets ?? []) {
      sets.set(set.tag, { tag: set.tag, rules: set.rules.map(compile) });
    }
    for (const r of opts.rules) this.#top.push(compile(r.match));

    const domains = new DomainIndexBuilder();
    const dst = new CidrIndexBuilder();
    const src = new CidrIndexBuilder();
    for (const n of nodes) {
      const sp = n.spec;
      if (
        sp.domain.length + sp.domain_suffix.length + sp.domain_keyword.length +
        sp.domain_regex.length
      ) {
        domains.add(n.id, sp);
      }
      if (sp.ip_cidr.length) dst.add(n.id, sp.ip_cidr);
      if (sp.source_ip_cidr.length) src.add(n.id, sp.source_ip_cidr);
    }
    this.#domains = domains.build();
    this.#dstCidr = dst.build();
    this.#srcCidr = src.build();

    // Witnesses: nodes whose index hit is necessary for their top-level rule to match
    // (destination address preferred, then source address, then destination port).
    this.#nodeTop = new Int32Array(nodes.length).fill(-1);
    this.#nodeWitness = new Uint8Array(nodes.length);
    const portEntries: { node: number; ranges: readonly PortRange[] }[] = [];
    const always: number[] = [];
    const mark = (node: DefaultMatcher, kind: number, i: number) => {
      this.#nodeTop[node.id] = i;
      this.#nodeWitness[node.id] = kind;
      if (kind === W_PORT) portEntries.push({ node: node.id, ranges: node.spec.port });
    };
    this.#top.forEach((m, i) => {
      if (m instanceof DefaultMatcher) { // the common case, without the allocation below
        const kind = witnessKind(m);
        if (kind === 0) always.push(i);
        else mark(m, kind, i);
        return;
      }
      const w = witnesses(m);
      if (w === null) always.push(i);
      else for (const [node, kind] of w) mark(node, kind, i);
    });
    this.#ports = new PortIndex(portEntries);
    this.#pure = Uint8Array.from(this.#top, (m) => m instanceof DefaultMatcher && m.pure ? 1 : 0);
    this.#always = Int32Array.from(always);
    this.#scratch = new FlowScratch(nodes.length, opts.geoip ?? noGeoIp);
    this.#cand = new Int32Array(this.#top.length);
    this.#candSeen = new Uint32Array(this.#top.length);
    this.#decisions = opts.rules.map((r, i) => ({ outbound: r.outbound, rule: i }));
    this.#finalDecision = Object.freeze({ outbound: opts.final, rule: null });
    this.#hits = new Float64Array(opts.rules.length);
  }

  #propose(top: number): void {
    const epoch = this.#scratch.epoch;
    if (this.#candSeen[top] === epoch) return;
    this.#candSeen[top] = epoch;
    this.#cand[this.#candLen++] = top;
  }

  #eval(i: number): boolean {
    const m = this.#top[i]!;
    return m.usesRuleSet ? m.states(this.#scratch, 0) !== 0 : m.test(this.#scratch);
  }

  /** Index of the first matching rule, or -1. */
  #first(flow: FlowMeta): number {
    const s = this.#scratch;
    s.begin(flow);
    this.#candLen = 0;
    const domain = flow.domain;
    if (domain !== undefined && domain !== "") this.#domains.lookup(domain, this.#stampDst);
    this.#dstCidr.lookup(flow.destination.addr, this.#stampDst);
    this.#srcCidr.lookup(flow.source.addr, this.#stampSrc);
    this.#ports.lookup(flow.destination.port, this.#stampPort);
    let best = 0x7fffffff;
    for (let k = 0; k < this.#candLen; k++) {
      const i = this.#cand[k]!;
      if (i < best && (this.#pure[i] === 1 || this.#eval(i))) best = i;
    }
    const always = this.#always;
    for (let k = 0; k < always.length; k++) {
      const i = always[k]!;
      if (i >= best) break;
      if (this.#eval(i)) {
        best = i;
        break;
      }
    }
    return best === 0x7fffffff ? -1 : best;
  }

  /** The decision for `flow`; counts a hit for the rule (or final). */
  match(flow: FlowMeta): Decision {
    const i = this.#first(flow);
    if (i < 0) {
      this.#finalHits++;
      return this.#finalDecision;
    }
    this.#hits[i]!++;
    return this.#decisions[i]!;
  }

  /** Like {@linkcode Engine.match} but says why, and counts nothing. */
  explain(flow: FlowMeta): Explanation {
    const i = this.#first(flow);
    if (i < 0) return { outbound: this.final, rule: null, final: true, rule_json: null };
    const r = this.rules[i]!;
    return { outbound: r.outbound, rule: i, final: false, rule_json: r.raw };
  }

  /** Sizes of the compiled structures (status output, benches). */
  get layout(): { rules: number; nodes: number; walked: number; cidrs: number } {
    return {
      rules: this.rules.length,
      nodes: this.#nodeTop.length,
      walked: this.#always.length,
      cidrs: this.#dstCidr.size + this.#srcCidr.size,
    };
  }

  /** Number of route rules. */
  get ruleCount(): number {
    return this.rules.length;
  }

  /** Hits of rule `i` (including hits carried over by {@linkcode RuleStats}). */
  hits(i: number): number {
    return this.#hits[i] ?? 0;
  }

  /** Flows that fell through to `final`. */
  get finalHits(): number {
    return this.#finalHits;
  }

  /** Sets hit counters (used by `RuleStats` when carrying counts over a reload). */
  setHits(i: number | "final", value: number): void {
    if (i === "final") this.#finalHits = value;
    else if (i >= 0 && i < this.#hits.length) this.#hits[i] = value;
  }

  /** Canonical fingerprint of rule `i` (computed lazily, then cached). */
  fingerprint(i: number): string {
    this.#fingerprints ??= this.rules.map((r) => fingerprint(r.raw));
    return this.#fingerprints[i]!;
  }
}

type Witness = [DefaultMatcher, number];

/** How a default rule can be proposed by an index (0: it cannot). */
function witnessKind(m: DefaultMatcher): number {
  if (m.spec.invert || m.usesRuleSet || m.empty) return 0;
  if (m.dstIndexed) return W_DST;
  if (m.srcIndexed) return W_SRC;
  if (m.spec.port.length !== 0) return W_PORT;
  return 0;
}

/** Nodes one of which must be hit by an index for `m` to match, or null. */
function witnesses(m: Matcher): Witness[] | null {
  if (m instanceof DefaultMatcher) {
    const kind = witnessKind(m);
    return kind === 0 ? null : [[m, kind]];
  }
  const l = m as LogicalMatcher;
  if (l.invert || l.usesRuleSet) return null;
  if (l.mode === "and") {
    for (const r of l.rules) {
      const w = witnesses(r);
      if (w) return w;
    }
    return null;
  }
  const all: Witness[] = [];
  for (const r of l.rules) {
    const w = witnesses(r);
    if (!w) return null;
    all.push(...w);
  }
  return all.length ? all : null;
}
