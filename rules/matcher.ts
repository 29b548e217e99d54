/**
 * Compiled rule trees. A {@linkcode DefaultMatcher} reads per-flow facts
 * from a {@linkcode FlowScratch} (which rule nodes the domain and CIDR
 * indexes hit, cached GeoIP answers) and checks its remaining fields
 * directly.
 *
 * Two evaluation modes, with the same answers where both apply:
 * - `test()`: plain boolean, used where no `rule_set` is involved.
 * - `states(base)`: sing-box's group-state semantics, needed for
 *   `rule_set`: a rule set's rules inherit the groups the outer rule has
 *   already satisfied, and the outer rule then requires its own groups on
 *   the merged result. A state is a 4-bit set of satisfied groups; a state
 *   set is a 16-bit mask of reachable states.
 *
 * @module
 */

import type { FlowMeta } from "../core/types.ts";
import type { GeoIpLookup } from "./item_geoip.ts";
import { isPrivateIp } from "./item_private.ts";
import { portMatches } from "./item_port.ts";
import { dscpMatches, markMatches } from "./item_mark.ts";
import type { DefaultRuleSpec } from "./spec.ts";
import { shapeOf } from "../core/keep_shape.ts";
import { EMPTY_DEFAULT_RULE } from "./spec.ts";

/** Group bit: source address (`source_geoip`, `source_ip_cidr`, `source_ip_is_private`). */
export const G_SRC = 1;
/** Group bit: source port. */
export const G_SRC_PORT = 2;
/** Group bit: destination address (domain items, `geoip`, `ip_cidr`, `ip_is_private`). */
export const G_DST = 4;
/** Group bit: destination port. */
export const G_DST_PORT = 8;

/** For each required-groups value r, the state-set mask of states containing r. */
const REQ_MASK = Int32Array.from({ length: 16 }, (_, r) => {
  let m = 0;
  for (let k = 0; k < 16; k++) if ((k & r) === r) m |= 1 << k;
  return m;
});

/** Pairwise OR of two state sets ("and" of independent sub-rules). */
export function combineStates(a: number, b: number): number {
  let out = 0;
  for (let i = 0; i < 16; i++) {
    if ((a & (1 << i)) === 0) continue;
    for (let j = 0; j < 16; j++) if ((b & (1 << j)) !== 0) out |= 1 << (i | j);
  }
  return out;
}

/**
 * The stamp arrays of every engine on this thread, grown to the largest
 * engine's sizes. Lookups never interleave (they are synchronous; a patched
 * engine asks its overlay only once its own lookup is done), so engines can
 * share them, with one epoch counter for all: building an engine allocates
 * none of them (for 100k rules they were 1.6 MB of array buffers per reload,
 * and under `--optimize-for-size` every reload that brought them started a
 * major collection on the data-plane thread, 10–13 ms).
 */
const stamps = {
  epoch: 0,
  /** Bumped when the epoch wraps (the arrays are cleared then). */
  wraps: 0,
  dstHit: new Uint32Array(0),
  srcHit: new Uint32Array(0),
  cand: new Int32Array(0),
  candSeen: new Uint32Array(0),
};

/** Grows the thread's stamp arrays to at least `nodes` / `rules` (new, zeroed arrays). */
function growStamps(nodes: number, rules: number): void {
  if (stamps.dstHit.length < nodes) {
    const n = Math.max(nodes, stamps.dstHit.length * 1.25 | 0);
    stamps.dstHit = new Uint32Array(n);
    stamps.srcHit = new Uint32Array(n);
  }
  if (stamps.cand.length < rules) {
    const n = Math.max(rules, stamps.cand.length * 1.25 | 0);
    stamps.cand = new Int32Array(n);
    stamps.candSeen = new Uint32Array(n);
  }
}

/** Per-flow facts shared by all matchers of one engine. Reused across flows. */
export class FlowScratch {
  /** This lookup's stamp (valid after {@linkcode FlowScratch.begin}). */
  epoch = 0;
  /** Node id → epoch when a domain item or `ip_cidr` of the node matched this flow. */
  dstHit: Uint32Array;
  /** Node id → epoch when a `source_ip_cidr` of the node matched this flow. */
  srcHit: Uint32Array;
  /** Rules proposed by the indexes this lookup (the engine's list, {@linkcode FlowScratch.begin}). */
  cand: Int32Array;
  /** Rule → epoch when it was proposed this lookup. */
  candSeen: Uint32Array;
  flow!: FlowMeta;
  readonly #geo: GeoIpLookup;
  #wraps = 0;
  #dstGeoEpoch = 0;
  #dstGeo: string | null = null;
  #srcGeoEpoch = 0;
  #srcGeo: string | null = null;

  /** Scratch for `nodes` rule nodes and `rules` rules (the arrays are the thread's, see `stamps`). */
  constructor(nodes: number, geo: GeoIpLookup, rules = 0) {
    // The arrays only grow: once here, not at every lookup.
    growStamps(nodes, rules);
    this.#geo = geo;
    this.dstHit = stamps.dstHit;
    this.srcHit = stamps.srcHit;
    this.cand = stamps.cand;
    this.candSeen = stamps.candSeen;
  }

  /** Starts a new flow: invalidates every per-flow fact in O(1). */
  begin(flow: FlowMeta): void {
    this.flow = flow;
    const t = stamps;
    if (++t.epoch === 0xffffffff) {
      t.dstHit.fill(0);
      t.srcHit.fill(0);
      t.candSeen.fill(0);
      t.epoch = 1;
      t.wraps++;
    }
    if (this.#wraps !== t.wraps) {
      this.#wraps = t.wraps;
      this.#dstGeoEpoch = this.#srcGeoEpoch = 0;
    }
    this.epoch = t.epoch;
    this.dstHit = t.dstHit;
    this.srcHit = t.srcHit;
    this.cand = t.cand;
    this.candSeen = t.candSeen;
  }

  /** Country of the destination (looked up once per flow). */
  dstCountry(): string | null {
    if (this.#dstGeoEpoch !== this.epoch) {
      this.#dstGeo = this.#geo.country(this.flow.destination.addr);
      this.#dstGeoEpoch = this.epoch;
    }
    return this.#dstGeo;
  }

  /** Country of the source (looked up once per flow). */
  srcCountry(): string | null {
    if (this.#srcGeoEpoch !== this.epoch) {
      this.#srcGeo = this.#geo.country(this.flow.source.addr);
      this.#srcGeoEpoch = this.epoch;
    }
    return this.#srcGeo;
  }
}

/** A compiled rule. */
export interface Matcher {
  /** Boolean match; valid when {@linkcode Matcher.usesRuleSet} is false. */
  test(s: FlowScratch): boolean;
  /** State-set evaluation with inherited groups `base` (see module doc). */
  states(s: FlowScratch, base: number): number;
  /** True when this rule or a nested one references a rule set. */
  readonly usesRuleSet: boolean;
}

/** A compiled rule set: its rules OR-ed. */
export interface CompiledRuleSet {
  readonly tag: string;
  readonly rules: readonly Matcher[];
}

function geoMatches(codes: readonly string[], code: string | null): boolean {
  return code !== null && codes.includes(code);
}

/** A compiled default rule. Domain and CIDR items are answered by the engine's indexes. */
export class DefaultMatcher implements Matcher {
  readonly id: number;
  readonly spec: DefaultRuleSpec;
  /** Groups this rule has items in. */
  readonly required: number;
  readonly usesRuleSet: boolean;
  readonly ruleSets: readonly CompiledRuleSet[];
  readonly #empty: boolean;
  readonly #hasOther: boolean;
  readonly #dstGeo: readonly string[];
  readonly #dstGeoPrivate: boolean;
  readonly #srcGeo: readonly string[];
  readonly #srcGeoPrivate: boolean;

  /** `id` indexes the scratch hit arrays; `ruleSets` are the resolved `rule_set` tags. */
  constructor(id: number, spec: DefaultRuleSpec, ruleSets: readonly CompiledRuleSet[]) {
    this.id = id;
    this.spec = spec;
    this.ruleSets = ruleSets;
    this.usesRuleSet = ruleSets.length > 0;
    const hasDst = spec.domain.length + spec.domain_suffix.length + spec.domain_keyword.length +
            spec.domain_regex.length + spec.geoip.length + spec.ip_cidr.length > 0 ||
      spec.ip_is_private;
    const hasSrc = spec.source_geoip.length + spec.source_ip_cidr.length > 0 ||
      spec.source_ip_is_private;
    this.required = (hasSrc ? G_SRC : 0) | (spec.source_port.length ? G_SRC_PORT : 0) |
      (hasDst ? G_DST : 0) | (spec.port.length ? G_DST_PORT : 0);
    this.#hasOther = spec.network.length + spec.inbound.length + spec.protocol.length +
        spec.fwmark.length + spec.dscp.length + spec.ip_version.length > 0;
    this.#empty = this.required === 0 && !this.#hasOther && !this.usesRuleSet;
    this.#dstGeo = spec.geoip.length ? spec.geoip.filter((c) => c !== "private") : spec.geoip;
    this.#dstGeoPrivate = spec.geoip.length !== 0 && spec.geoip.includes("private");
    this.#srcGeo = spec.source_geoip.length
      ? spec.source_geoip.filter((c) => c !== "private")
      : spec.source_geoip;
    this.#srcGeoPrivate = spec.source_geoip.length !== 0 && spec.source_geoip.includes("private");
  }

  /** True when the destination group can only match through the domain/CIDR indexes. */
  get dstIndexed(): boolean {
    return (this.required & G_DST) !== 0 && this.spec.geoip.length === 0 &&
      !this.spec.ip_is_private;
  }

  /** True when the source address group can only match through the source CIDR index. */
  get srcIndexed(): boolean {
    return (this.required & G_SRC) !== 0 && this.spec.source_geoip.length === 0 &&
      !this.spec.source_ip_is_private;
  }

  /**
   * True when the destination group is the rule's only condition and only
   * the domain/CIDR indexes answer it: an index hit alone proves a match.
   */
  get pure(): boolean {
    return this.required === G_DST && this.dstIndexed && !this.#hasOther && !this.usesRuleSet &&
      !this.spec.invert;
  }

  /** True when the rule has no items at all (matches every flow, as in sing-box). */
  get empty(): boolean {
    return this.#empty;
  }

  #others(s: FlowScratch): boolean {
    const f = s.flow, sp = this.spec;
    if (sp.network.length !== 0 && !sp.network.includes(f.network)) return false;
    if (sp.inbound.length !== 0 && !sp.inbound.includes(f.inbound)) return false;
    if (
      sp.protocol.length !== 0 && (f.protocol === undefined || !sp.protocol.includes(f.protocol))
    ) return false;
    if (sp.fwmark.length !== 0 && !markMatches(sp.fwmark, f.mark)) return false;
    if (sp.dscp.length !== 0 && !dscpMatches(sp.dscp, f.dscp)) return false;
    if (
      sp.ip_version.length !== 0 &&
      !sp.ip_version.includes(f.destination.addr.length === 4 ? 4 : 6)
    ) return false;
    return true;
  }

  #dst(s: FlowScratch): boolean {
    if (s.dstHit[this.id] === s.epoch) return true;
    const sp = this.spec;
    if ((sp.ip_is_private || this.#dstGeoPrivate) && isPrivateIp(s.flow.destination.addr)) {
      return true;
    }
    return this.#dstGeo.length !== 0 && geoMatches(this.#dstGeo, s.dstCountry());
  }

  #src(s: FlowScratch): boolean {
    if (s.srcHit[this.id] === s.epoch) return true;
    if (
      (this.spec.source_ip_is_private || this.#srcGeoPrivate) && isPrivateIp(s.flow.source.addr)
    ) return true;
    return this.#srcGeo.length !== 0 && geoMatches(this.#srcGeo, s.srcCountry());
  }

  /** Groups satisfied by this rule's own items, ORed into `base`. */
  #groups(s: FlowScratch, base: number): number {
    const r = this.required;
    let st = base;
    if ((r & G_DST) !== 0 && this.#dst(s)) st |= G_DST;
    if ((r & G_DST_PORT) !== 0 && portMatches(this.spec.port, s.flow.destination.port)) {
      st |= G_DST_PORT;
    }
    if ((r & G_SRC) !== 0 && this.#src(s)) st |= G_SRC;
    if ((r & G_SRC_PORT) !== 0 && portMatches(this.spec.source_port, s.flow.source.port)) {
      st |= G_SRC_PORT;
    }
    return st;
  }

  test(s: FlowScratch): boolean {
    if (this.#empty) return true;
    const ok = (!this.#hasOther || this.#others(s)) &&
      (this.#groups(s, 0) & this.required) === this.required;
    return ok !== this.spec.invert;
  }

  states(s: FlowScratch, base: number): number {
    if (this.#empty) return 1 << base;
    const invert = this.spec.invert;
    const fail = invert ? 1 << base : 0;
    const st = this.#groups(s, invert ? 0 : base);
    if (this.#hasOther && !this.#others(s)) return fail;
    let set = 0;
    if (this.usesRuleSet) {
      for (const rs of this.ruleSets) for (const m of rs.rules) set |= m.states(s, st);
    } else {
      set = 1 << st;
    }
    set &= REQ_MASK[this.required]!;
    if (set === 0) return fail;
    return invert ? 0 : set;
  }
}
shapeOf(() => new DefaultMatcher(0, EMPTY_DEFAULT_RULE, []));

/** A compiled logical rule. */
export class LogicalMatcher implements Matcher {
  readonly mode: "and" | "or";
  readonly rules: readonly Matcher[];
  readonly invert: boolean;
  readonly usesRuleSet: boolean;

  /** Combines `rules` with `mode`. */
  constructor(mode: "and" | "or", rules: readonly Matcher[], invert: boolean) {
    this.mode = mode;
    this.rules = rules;
    this.invert = invert;
    this.usesRuleSet = rules.some((r) => r.usesRuleSet);
  }

  test(s: FlowScratch): boolean {
    let ok: boolean;
    if (this.mode === "and") {
      ok = true;
      for (const r of this.rules) {
        if (!r.test(s)) {
          ok = false;
          break;
        }
      }
    } else {
      ok = false;
      for (const r of this.rules) {
        if (r.test(s)) {
          ok = true;
          break;
        }
      }
    }
    return ok !== this.invert;
  }

  states(s: FlowScratch, base: number): number {
    const evalBase = this.invert ? 0 : base;
    const fail = this.invert ? 1 << base : 0;
    let set: number;
    if (this.mode === "and") {
      set = 1 << evalBase;
      for (const r of this.rules) {
        const sub = r.states(s, evalBase);
        if (sub === 0) return fail;
        set = combineStates(set, sub);
      }
    } else {
      set = 0;
      for (const r of this.rules) set |= r.states(s, evalBase);
      if (set === 0) return fail;
    }
    return this.invert ? 0 : set;
  }
}
shapeOf(() => new LogicalMatcher("and", [], false));
