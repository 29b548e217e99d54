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

import { arenaCell } from "./arena_cell.ts";
import type { Decision, FlowMeta } from "../core/types.ts";
import { CidrIndex, CidrIndexBuilder } from "./item_cidr.ts";
import type { CidrImage } from "./item_cidr.ts";
import { DomainIndex, DomainIndexBuilder } from "./item_domain.ts";
import type { DomainImage } from "./item_domain.ts";
import { type GeoIpLookup, noGeoIp } from "./item_geoip.ts";
import { type PortEntry, type PortImage, PortIndex } from "./item_port.ts";
import { type MarkEntry, type MarkImage, MarkIndex } from "./item_mark.ts";
import { IntList } from "./int_list.ts";
import {
  type CompiledRuleSet,
  DefaultMatcher,
  FlowScratch,
  LogicalMatcher,
  type Matcher,
} from "./matcher.ts";
import { fingerprintHash } from "./fingerprint.ts";
import { CompactRule } from "./compact_rule.ts";
import { ADDED_CIDR, ADDED_KEYWORD, ScannedRules } from "./scanned_rules.ts";
import type { Pacing } from "./pacing.ts";
import type { DefaultRuleSpec, RouteRule, RuleSetSpec, RuleSpec } from "./spec.ts";
import { shapeOf } from "../core/keep_shape.ts";

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
  /** Parsed rules, or rules read straight from a config file's bytes (`config/rule_scan.ts`). */
  readonly rules: readonly RouteRule[] | ScannedRules;
  readonly final: string;
  readonly ruleSets?: readonly RuleSetSpec[];
  /** GeoIP database; rules with `geoip` match nothing without one. */
  readonly geoip?: GeoIpLookup;
}

/** Witness kinds: which index proposes a node's top-level rule (node info bits 0-2). */
const W_DST = 1, W_PORT = 2, W_SRC = 3, W_SPORT = 4, W_DSCP = 5, W_MARK = 6;
const KIND = 7;
/** Node info flag: a destination hit on this node alone proves its top-level rule. */
const PURE = 8;
/** Node info: `top << TOP_SHIFT | PURE? | kind`. */
const TOP_SHIFT = 4;
const NO_SETS: readonly CompiledRuleSet[] = Object.freeze([]);
const NONE = 0x7fffffff;
/** Slots of {@linkcode EngineImage.minTop}. */
const MIN_PATTERNS = 0, MIN_DST = 1, MIN_SRC = 2, MIN_PORT = 3, MIN_SPORT = 4, MIN_DSCP = 5;
const MIN_MARK = 6, MIN_SLOTS = 7;

/** Rules compiled between two checks of the time budget (see {@linkcode Engine.compile}). */
const STEP = 256;

/**
 * The compiled indexes of an engine as plain data: typed arrays (and a few
 * regex sources), so a worker can build them and transfer the buffers to
 * the data-plane thread without copying (see {@linkcode EngineWire}).
 */
export interface EngineImage {
  /** Per rule node: `top << 4 | PURE? | witness kind` (`TOP_SHIFT`). */
  readonly nodeInfo: Int32Array;
  /** Top-level rules no index can propose, in order. */
  readonly always: Int32Array;
  /**
   * Per index (`MIN_PATTERNS`, `MIN_DST`, `MIN_SRC`, `MIN_PORT`, …): the lowest
   * top-level rule any node it reports belongs to (0 for rule-set nodes,
   * `NONE` when empty). A lookup is skipped once a rule at or below that
   * bound is proven: nothing it could report would matter.
   */
  readonly minTop: Int32Array;
  readonly domains: DomainImage;
  readonly dstCidr: CidrImage;
  readonly srcCidr: CidrImage;
  readonly ports: PortImage;
  /** Source ports, DSCP values and marks of rules no earlier index proposes. */
  readonly sports: PortImage;
  readonly dscps: PortImage;
  readonly marks: MarkImage;
}

/**
 * A compiled engine minus its per-rule metadata, as data that crosses a
 * thread boundary (structured clone; typed arrays transferred). Rules the
 * indexes answer alone (compact, pure) need nothing more; the others
 * ("complex": logical, inverted, GeoIP, ports, ...) are rebuilt from their
 * specs, with every index-answered list (domains, CIDRs) cut to its first
 * item: matchers only test whether such a list is empty.
 */
export interface EngineWire {
  readonly image: EngineImage;
  readonly final: string;
  readonly ruleCount: number;
  /** Rule sets, in compile order, with index-answered lists cut (see above). */
  readonly ruleSets: readonly RuleSetSpec[];
  /** Indexes of the complex top-level rules, ascending. */
  readonly complex: Int32Array;
  /** Per complex rule: its first node id. */
  readonly complexFirst: Int32Array;
  /** Per complex rule: its match, lists cut (see above). */
  readonly complexSpecs: readonly RuleSpec[];
}

/**
 * What an engine knows of each rule besides its indexes: the outbound, the
 * rule as written (for `explain`), its fingerprint (for {@linkcode RuleStats})
 * and, materialised on demand, the {@linkcode RouteRule} list.
 */
export interface RuleTable {
  readonly count: number;
  /** Outbound tag of rule `i`. */
  outbound(i: number): string;
  /** Rule `i` as written in the config. */
  raw(i: number): unknown;
  /** {@linkcode fingerprintHash} of rule `i`'s JSON. */
  fingerprint(i: number): number;
  /**
   * Pending while the fingerprints are still on their way from another
   * thread (`fingerprint(i)` then computes them here, slowly); null or
   * absent when they are in.
   */
  readonly ready?: Promise<void> | null;
  /** All rules (may be built on first access). */
  readonly rules: readonly RouteRule[];
}

/** A {@linkcode RuleTable} over a list of parsed rules; fingerprints computed on demand. */
class ListRuleTable implements RuleTable {
  readonly rules: readonly RouteRule[];
  #fps: Float64Array | null = null;

  constructor(rules: readonly RouteRule[]) {
    this.rules = rules;
  }

  get count(): number {
    return this.rules.length;
  }

  outbound(i: number): string {
    return this.rules[i]!.outbound;
  }

  raw(i: number): unknown {
    return this.rules[i]!.raw;
  }

  fingerprint(i: number): number {
    const fps = this.#fps ??= new Float64Array(this.rules.length).fill(-1);
    const f = fps[i]!;
    return f >= 0 ? f : (fps[i] = fingerprintHash(this.rules[i]!.raw));
  }
}

/**
 * How a rule list was edited: rules `[prefix, prefix + removed)` of the old
 * list were replaced by `added` new ones (see {@linkcode Engine.patch}).
 */
export interface PatchShape {
  readonly prefix: number;
  readonly removed: number;
  readonly added: number;
}

/**
 * Several {@linkcode PatchShape}s in old-list numbering, sorted and apart
 * (`prefix + removed` of one at most the next one's `prefix`); the rules
 * outside them are the same, in the same order.
 */
export type PatchStretches = readonly PatchShape[];

/** Index of the last entry of the ascending `a` that is at most `x`, or -1. */
function lastAtMost(a: Int32Array, x: number): number {
  let lo = 0, hi = a.length - 1, r = -1;
  while (lo <= hi) {
    const m = (lo + hi) >> 1;
    if (a[m]! <= x) {
      r = m;
      lo = m + 1;
    } else hi = m - 1;
  }
  return r;
}

/** The arithmetic of a {@linkcode PatchStretches} over an old list of `oldCount` rules. */
class StretchMap {
  /** Per stretch: start and end in the old numbering, where its new rules start in the new one. */
  readonly starts: Int32Array;
  readonly ends: Int32Array;
  readonly newStarts: Int32Array;
  /** Per stretch: how far the old rules after it moved (added - removed, up to and with it). */
  readonly shifts: Int32Array;
  /** Per stretch: new rules added by the stretches before it. */
  readonly addedBefore: Int32Array;
  /** New numbers of the added rules, in order (for the overlay). */
  readonly added: Int32Array;
  readonly newCount: number;

  constructor(stretches: PatchStretches, oldCount: number) {
    const k = stretches.length;
    this.starts = new Int32Array(k);
    this.ends = new Int32Array(k);
    this.newStarts = new Int32Array(k);
    this.shifts = new Int32Array(k);
    this.addedBefore = new Int32Array(k);
    const added: number[] = [];
    let shift = 0, prevEnd = 0;
    for (let j = 0; j < k; j++) {
      const { prefix, removed, added: a } = stretches[j]!;
      if (!(prefix >= prevEnd && removed >= 0 && a >= 0) || prefix + removed > oldCount) {
        throw new RangeError(`stretches ${JSON.stringify(stretches)} do not fit ${oldCount} rules`);
      }
      this.starts[j] = prefix;
      this.ends[j] = prefix + removed;
      this.newStarts[j] = prefix + shift;
      this.addedBefore[j] = added.length;
      for (let x = 0; x < a; x++) added.push(prefix + shift + x);
      shift += a - removed;
      this.shifts[j] = shift;
      prevEnd = prefix + removed;
    }
    this.newCount = oldCount + shift;
    this.added = Int32Array.from(added);
  }

  /** Index of the last stretch starting at or before old rule `t`, or -1. */
  #at(t: number): number {
    return lastAtMost(this.starts, t);
  }

  /** New number of old rule `t`, or -1 when it was removed. */
  renumber(t: number): number {
    const j = this.#at(t);
    if (j < 0) return t;
    return t < this.ends[j]! ? -1 : t + this.shifts[j]!;
  }

  /**
   * Where new rule `i` comes from: its index among the added rules (≥ 0), or
   * -1 - its old number. A binary search over the stretches: nothing per rule.
   */
  source(i: number): number {
    const j = lastAtMost(this.newStarts, i);
    if (j < 0) return -1 - i;
    const k = i - this.newStarts[j]!;
    const count = (j + 1 < this.newStarts.length ? this.addedBefore[j + 1]! : this.added.length) -
      this.addedBefore[j]!;
    return k < count ? this.addedBefore[j]! + k : -1 - (i - this.shifts[j]!);
  }

  /** A lower bound of the new numbers of the old rules from `t` on that remain. */
  lowerBound(t: number): number {
    const j = this.#at(t);
    if (j < 0) return t;
    return t < this.ends[j]! ? this.newStarts[j]! : t + this.shifts[j]!;
  }
}
shapeOf(() => new StretchMap([], 0));

/** A {@linkcode RuleTable} over parsed rules (for tests and callers holding `RouteRule`s). */
export function ruleTableOf(rules: readonly RouteRule[]): RuleTable {
  return new ListRuleTable(rules);
}

/** The rules of `table` at `index` (ascending), renumbered from 0. */
class PickedRuleTable implements RuleTable {
  constructor(readonly table: RuleTable, readonly index: Int32Array) {}
  get count(): number {
    return this.index.length;
  }
  outbound(i: number): string {
    return this.table.outbound(this.index[i]!);
  }
  raw(i: number): unknown {
    return this.table.raw(this.index[i]!);
  }
  fingerprint(i: number): number {
    return this.table.fingerprint(this.index[i]!);
  }
  get rules(): readonly RouteRule[] {
    const all = this.table.rules;
    return Array.from(this.index, (i) => all[i]!);
  }
}

/** What {@linkcode Engine.patch} changes in the base's parts, renumbered by {@linkcode renumberParts}. */
export interface RenumberedParts {
  readonly nodeInfo: Int32Array;
  readonly always: Int32Array;
  readonly minTop: Int32Array;
  readonly complex: Int32Array;
  readonly complexFirst: Int32Array;
  /** Per entry of `complex`: its index in the base's `complex`. */
  readonly complexKept: Int32Array;
}

/**
 * The parts of `base` with its rules renumbered for `stretches`: rules
 * move by what the stretches before them added and removed; the removed
 * rules' nodes lose their rule (never proposed, never proven: they cannot
 * match) and leave `always` and `complex`. `base` is not modified.
 */
export function renumberParts(
  base: Pick<EngineWire, "image" | "complex" | "complexFirst" | "ruleCount">,
  stretches: PatchStretches,
): RenumberedParts {
  const map = new StretchMap(stretches, base.ruleCount);
  const info = base.image.nodeInfo.slice();
  for (let n = 0; n < info.length; n++) {
    const v = info[n]!, t = map.renumber(v >>> TOP_SHIFT);
    info[n] = t < 0 ? 0 : (t << TOP_SHIFT) | (v & (PURE | KIND));
  }
  const always: number[] = [];
  for (const i of base.image.always) {
    const t = map.renumber(i);
    if (t >= 0) always.push(t);
  }
  const minTop = base.image.minTop.map((v) => v === NONE ? v : map.lowerBound(v));
  const complex: number[] = [], complexFirst: number[] = [], kept: number[] = [];
  for (let k = 0; k < base.complex.length; k++) {
    const t = map.renumber(base.complex[k]!);
    if (t < 0) continue;
    complex.push(t);
    complexFirst.push(base.complexFirst[k]!);
    kept.push(k);
  }
  return {
    nodeInfo: info,
    always: Int32Array.from(always),
    minTop,
    complex: Int32Array.from(complex),
    complexFirst: Int32Array.from(complexFirst),
    complexKept: Int32Array.from(kept),
  };
}

/**
 * The rule table of a patched list: `base`'s rules with the `stretches`
 * replaced by `added`'s rules, in order (see {@linkcode Engine.patch}).
 */
export function patchedRuleTable(
  base: RuleTable,
  stretches: PatchStretches,
  added: RuleTable,
): RuleTable {
  return new PatchedRuleTable(base, new StretchMap(stretches, base.count), added);
}

class PatchedRuleTable implements RuleTable {
  readonly count: number;
  readonly #base: RuleTable;
  readonly #added: RuleTable;
  readonly #map: StretchMap;
  #rules: readonly RouteRule[] | null = null;

  constructor(base: RuleTable, map: StretchMap, added: RuleTable) {
    if (added.count !== map.added.length) {
      throw new RangeError(`${added.count} added rules, the stretches add ${map.added.length}`);
    }
    this.#base = base;
    this.#added = added;
    this.#map = map;
    this.count = map.newCount;
  }
  outbound(i: number): string {
    const f = this.#map.source(i);
    return f >= 0 ? this.#added.outbound(f) : this.#base.outbound(-1 - f);
  }
  raw(i: number): unknown {
    const f = this.#map.source(i);
    return f >= 0 ? this.#added.raw(f) : this.#base.raw(-1 - f);
  }
  fingerprint(i: number): number {
    const f = this.#map.source(i);
    return f >= 0 ? this.#added.fingerprint(f) : this.#base.fingerprint(-1 - f);
  }
  get ready(): Promise<void> | null {
    const a = this.#base.ready ?? null, b = this.#added.ready ?? null;
    return a === null && b === null ? null : Promise.all([a, b]).then(() => {});
  }
  get rules(): readonly RouteRule[] {
    if (this.#rules) return this.#rules;
    const b = this.#base.rules, a = this.#added.rules, out: RouteRule[] = [];
    for (let i = 0; i < this.count; i++) {
      const f = this.#map.source(i);
      out.push(f >= 0 ? a[f]! : b[-1 - f]!);
    }
    return this.#rules = out;
  }
}

/** Everything the constructor needs; built by {@linkcode buildParts}. */
interface Parts {
  readonly top: (Matcher | null)[];
  readonly image: EngineImage;
  /** Complex rules: their indexes and first node ids (see {@linkcode EngineWire}). */
  readonly complex: Int32Array;
  readonly complexFirst: Int32Array;
}

/** A compiled, immutable rule snapshot. Build a new one to reload. */
export class Engine {
  readonly #table: RuleTable;
  /** Tag used when no rule matches. */
  readonly final: string;
  /** Compiled top-level rules; null for rules the indexes alone answer (compact, pure). */
  readonly #top: (Matcher | null)[];
  /** Decisions, created on a rule's first hit. */
  readonly #decisions: (Decision | undefined)[];
  readonly #finalDecision: Decision;
  readonly #always: Int32Array;
  readonly #minTop: Int32Array;
  /** The lowest of `#minTop`'s source-port, DSCP and mark slots (see `#lookupRare`). */
  readonly #minRare: number;
  /** Per node: `top << 4 | PURE? | witness kind` (witness 0: no top-level rule to propose). */
  readonly #nodeInfo: Int32Array;
  readonly #domains: DomainIndex;
  readonly #dstCidr: CidrIndex;
  readonly #srcCidr: CidrIndex;
  readonly #ports: PortIndex;
  readonly #sports: PortIndex;
  readonly #dscps: PortIndex;
  readonly #marks: MarkIndex;
  readonly #scratch: FlowScratch;
  #candLen = 0;
  /** Lowest rule proven by a pure index hit during the current lookup. */
  #best = NONE;
  /** A patched engine's new rules (see {@linkcode Engine.patch}); rule o there is rule #overlayIndex[o] here. */
  #overlay: Engine | null = null;
  #overlayIndex: Int32Array = new Int32Array(0);
  #hits: Float64Array;
  /** The rules with hits, in the order of their first hit (see {@linkcode Engine.hitRules}). */
  readonly #hitList: number[] = [];
  #finalHits = 0;
  /**
   * The generation cell of the shared arena the indexes are in (and its
   * value when this engine was built), or null: once the config worker
   * reuses the arena (`CompileWorker.retire`, `config/arena.ts`) a lookup
   * must fail loudly, not read another compile's indexes.
   */
  readonly #arena: Int32Array | null;
  readonly #arenaGen: number;

  readonly #stampDst = (node: number): void => {
    const info = this.#nodeInfo[node]!;
    if ((info & PURE) !== 0) {
      if (info >>> TOP_SHIFT < this.#best) this.#best = info >>> TOP_SHIFT;
      return;
    }
    const s = this.#scratch;
    s.dstHit[node] = s.epoch;
    if ((info & KIND) === W_DST) this.#propose(info >>> TOP_SHIFT);
  };
  readonly #stampSrc = (node: number): void => {
    this.#scratch.srcHit[node] = this.#scratch.epoch;
    const info = this.#nodeInfo[node]!;
    if ((info & KIND) === W_SRC) this.#propose(info >>> TOP_SHIFT);
  };
  /**
   * What an index that only proposes reports a hit to: the node's top-level
   * rule becomes a candidate when the node's witness is `kind` (not for a
   * node of a rule a patch removed, whose info is 0).
   */
  #proposer(kind: number): (node: number) => void {
    return (node) => {
      const info = this.#nodeInfo[node]!;
      if ((info & KIND) === kind) this.#propose(info >>> TOP_SHIFT);
    };
  }
  readonly #stampPort = this.#proposer(W_PORT);
  readonly #stampSport = this.#proposer(W_SPORT);
  readonly #stampDscp = this.#proposer(W_DSCP);
  readonly #stampMark = this.#proposer(W_MARK);

  /**
   * Compiles `opts` in one go. Rule specs must come from the config parser
   * (already validated). For big rule lists prefer {@linkcode Engine.compile},
   * which gives the event loop a turn while it works.
   */
  constructor(opts: EngineOptions, parts?: Parts);
  /** @internal Used by {@linkcode Engine.fromWire}. */
  constructor(opts: EngineOptions, parts: Parts, table: RuleTable);
  constructor(opts: EngineOptions, parts?: Parts, table?: RuleTable) {
    const p = parts ?? runToEnd(buildParts(opts));
    const img = p.image;
    this.#table = table ??
      (opts.rules instanceof ScannedRules ? opts.rules.table() : new ListRuleTable(opts.rules));
    this.final = opts.final;
    this.#top = p.top;
    this.#nodeInfo = img.nodeInfo;
    this.#always = img.always;
    this.#minTop = img.minTop;
    this.#minRare = Math.min(img.minTop[MIN_SPORT]!, img.minTop[MIN_DSCP]!, img.minTop[MIN_MARK]!);
    this.#domains = new DomainIndex(img.domains);
    this.#dstCidr = new CidrIndex(img.dstCidr);
    this.#srcCidr = new CidrIndex(img.srcCidr);
    this.#ports = new PortIndex(img.ports);
    this.#sports = new PortIndex(img.sports);
    this.#dscps = new PortIndex(img.dscps);
    this.#marks = new MarkIndex(img.marks);
    this.#arena = arenaCell(img.domains.slots.buffer);
    this.#arenaGen = this.#arena === null ? 0 : Atomics.load(this.#arena, 0);
    const n = this.#table.count;
    this.#scratch = new FlowScratch(img.nodeInfo.length, opts.geoip ?? noGeoIp, n);
    this.#decisions = []; // sparse, filled as rules match (a rule-sized one: 800 KB a reload)
    this.#finalDecision = Object.freeze({ outbound: opts.final, rule: null });
    this.#hits = takeCounters(n);
  }

  /**
   * Compiles `opts` into an {@linkcode EngineWire} (on a worker thread, say);
   * {@linkcode Engine.fromWire} turns it into an engine without rebuilding
   * the indexes. Send it with {@linkcode wireTransferList} as the transfer list.
   */
  static compileWire(opts: EngineOptions): EngineWire {
    const p = runToEnd(buildParts(opts));
    return {
      image: p.image,
      final: opts.final,
      ruleCount: opts.rules.length,
      ruleSets: (opts.ruleSets ?? []).map((s) => ({ tag: s.tag, rules: s.rules.map(cutLists) })),
      complex: p.complex,
      complexFirst: p.complexFirst,
      complexSpecs: Array.from(p.complex, (i) => cutLists(ruleAt(opts.rules, i).match)),
    };
  }

  /**
   * An engine from an {@linkcode EngineWire}: the indexes are used as they
   * are; only the complex rules' matchers are built (a few objects each).
   * `table` gives the per-rule metadata (its `count` must be `wire.ruleCount`).
   */
  static fromWire(wire: EngineWire, table: RuleTable, geoip?: GeoIpLookup): Engine {
    if (table.count !== wire.ruleCount) {
      throw new RangeError(`rule table has ${table.count} rules, wire ${wire.ruleCount}`);
    }
    let next = 0;
    const sets = new Map<string, CompiledRuleSet>();
    const compile = (spec: RuleSpec): Matcher => {
      if (spec.type === "logical") {
        return new LogicalMatcher(spec.mode, spec.rules.map(compile), spec.invert);
      }
      return new DefaultMatcher(next++, spec, resolveSets(spec, sets));
    };
    for (const set of wire.ruleSets) {
      sets.set(set.tag, { tag: set.tag, rules: set.rules.map(compile) });
    }
    const top: (Matcher | null)[] = new Array(wire.ruleCount).fill(null);
    for (let k = 0; k < wire.complex.length; k++) {
      next = wire.complexFirst[k]!;
      top[wire.complex[k]!] = compile(wire.complexSpecs[k]!);
    }
    const parts: Parts = {
      top,
      image: wire.image,
      complex: wire.complex,
      complexFirst: wire.complexFirst,
    };
    return new Engine(
      { rules: [], final: wire.final, ...(geoip ? { geoip } : {}) },
      parts,
      table,
    );
  }

  /**
   * An engine for a rule list that differs from the one `base` was compiled
   * from only in some stretches, without recompiling the unchanged
   * rules: `base`'s indexes are reused as they are, their rule numbers
   * shifted and the removed rules' entries disabled (a copy of the small
   * per-node table), and the `added` rules, compiled alone into `added`
   * (its rules numbered from 0, in order), are looked up after them, only
   * for flows no rule before the first new one matched. Decides exactly as an engine
   * compiled from the whole new list; `table` describes that list and
   * `final` is its final outbound. `base` and `added` are not modified.
   * `renumbered` ({@linkcode renumberParts} of `base` and `stretches`) may come
   * from another thread: it is the one step that walks every node.
   */
  static patch(
    base: EngineWire,
    stretches: PatchStretches,
    added: EngineWire,
    table: RuleTable,
    final: string,
    geoip?: GeoIpLookup,
    renumbered: RenumberedParts = renumberParts(base, stretches),
  ): Engine {
    const map = new StretchMap(stretches, base.ruleCount);
    if (
      added.ruleCount !== map.added.length || table.count !== map.newCount ||
      renumbered.nodeInfo.length !== base.image.nodeInfo.length
    ) {
      throw new RangeError(
        `patch ${
          JSON.stringify(stretches)
        } does not fit ${base.ruleCount} + ${added.ruleCount} rules into ${table.count}`,
      );
    }
    const { nodeInfo, always, minTop, complex, complexFirst, complexKept } = renumbered;
    const engine = Engine.fromWire(
      {
        ...base,
        image: { ...base.image, nodeInfo, always, minTop },
        final,
        ruleCount: table.count,
        complex,
        complexFirst,
        complexSpecs: Array.from(complexKept, (k) => base.complexSpecs[k]!),
      },
      table,
      geoip,
    );
    if (map.added.length > 0) {
      engine.#overlay = Engine.fromWire(added, new PickedRuleTable(table, map.added), geoip);
      engine.#overlayIndex = map.added;
    }
    return engine;
  }

  /** The route rules this engine was built from (for a wire-built engine: built on first access). */
  get rules(): readonly RouteRule[] {
    return this.#table.rules;
  }

  /** Outbound tag of rule `i`. */
  outboundOf(i: number): string {
    return this.#table.outbound(i);
  }

  /**
   * Compiles `opts` like the constructor, but pauses whenever `pacing` says
   * the current slice of work is used up, so that a reload of a big rule
   * list does not stall the data plane.
   */
  static async compile(opts: EngineOptions, pacing: Pacing): Promise<Engine> {
    const it = buildParts(opts);
    for (;;) {
      const r = it.next();
      if (r.done) return new Engine(opts, r.value);
      if (pacing.due()) await pacing.pause();
    }
  }

  #propose(top: number): void {
    const s = this.#scratch, epoch = s.epoch;
    if (s.candSeen[top] === epoch) return;
    s.candSeen[top] = epoch;
    s.cand[this.#candLen++] = top;
  }

  #eval(i: number): boolean {
    const m = this.#top[i]!;
    return m.usesRuleSet ? m.states(this.#scratch, 0) !== 0 : m.test(this.#scratch);
  }

  /** The source-port, DSCP and mark lookups (rules with those and no earlier witness: few). */
  #lookupRare(flow: FlowMeta): void {
    const min = this.#minTop;
    if (this.#best > min[MIN_SPORT]!) this.#sports.lookup(flow.source.port, this.#stampSport);
    if (flow.dscp !== undefined && this.#best > min[MIN_DSCP]!) {
      this.#dscps.lookup(flow.dscp, this.#stampDscp);
    }
    if (flow.mark !== undefined && this.#best > min[MIN_MARK]!) {
      this.#marks.lookup(flow.mark, this.#stampMark);
    }
  }

  /** Index of the first matching rule, or -1. */
  #first(flow: FlowMeta): number {
    if (this.#arena !== null && this.#arena[0] !== this.#arenaGen) {
      throw new Error("rule engine used after it was retired");
    }
    const s = this.#scratch;
    s.begin(flow);
    this.#candLen = 0;
    this.#best = NONE;
    const domain = flow.domain, min = this.#minTop;
    const named = domain !== undefined && domain !== "";
    // Cheapest first; each later lookup only if it could still report a rule below the best.
    if (named) this.#domains.lookupNames(domain, this.#stampDst);
    if (this.#best > min[MIN_DST]!) this.#dstCidr.lookup(flow.destination.addr, this.#stampDst);
    if (named && this.#best > min[MIN_PATTERNS]!) {
      this.#domains.lookupPatterns(domain, this.#stampDst);
    }
    if (this.#best > min[MIN_SRC]!) this.#srcCidr.lookup(flow.source.addr, this.#stampSrc);
    if (this.#best > min[MIN_PORT]!) this.#ports.lookup(flow.destination.port, this.#stampPort);
    if (this.#best > this.#minRare) this.#lookupRare(flow);
    let best = this.#best;
    const cand = s.cand;
    for (let k = 0; k < this.#candLen; k++) {
      const i = cand[k]!;
      if (i < best && this.#eval(i)) best = i;
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
    // A patched engine: its new rules, when no rule before them matched.
    if (this.#overlay !== null && best > this.#overlayIndex[0]!) {
      // Its numbers rise with ours: its first match is its lowest here too.
      const o = this.#overlay.#first(flow);
      if (o >= 0 && this.#overlayIndex[o]! < best) best = this.#overlayIndex[o]!;
    }
    return best === NONE ? -1 : best;
  }

  /** The decision for `flow`; counts a hit for the rule (or final). */
  match(flow: FlowMeta): Decision {
    // `decide` + `count` written out: the per-flow path (composed: +2–6 % in rules_bench).
    const i = this.#first(flow);
    if (i < 0) {
      this.#finalHits++;
      return this.#finalDecision;
    }
    if (this.#hits[i]!++ === 0) this.#hitList.push(i);
    return this.#decisions[i] ?? this.#decision(i);
  }

  /**
   * {@linkcode Engine.match} without counting: for a decision that may not
   * be acted on (count it with {@linkcode Engine.count} if it is).
   */
  decide(flow: FlowMeta): Decision {
    const i = this.#first(flow);
    if (i < 0) return this.#finalDecision;
    return this.#decisions[i] ?? this.#decision(i);
  }

  /** Rule `i`'s decision, made once. */
  #decision(i: number): Decision {
    return this.#decisions[i] = { outbound: this.#table.outbound(i), rule: i };
  }

  /** Counts a hit for `d`, a decision {@linkcode Engine.decide} of this engine gave. */
  count(d: Decision): void {
    if (d.rule === null) this.#finalHits++;
    else if (this.#hits[d.rule]!++ === 0) this.#hitList.push(d.rule);
  }

  /** Like {@linkcode Engine.match} but says why, and counts nothing. */
  explain(flow: FlowMeta): Explanation {
    const i = this.#first(flow);
    if (i < 0) return { outbound: this.final, rule: null, final: true, rule_json: null };
    const t = this.#table;
    return { outbound: t.outbound(i), rule: i, final: false, rule_json: t.raw(i) };
  }

  /** Sizes of the compiled structures (status output, benches). */
  get layout(): { rules: number; nodes: number; walked: number; cidrs: number } {
    return {
      rules: this.#table.count,
      nodes: this.#nodeInfo.length,
      walked: this.#always.length,
      cidrs: this.#dstCidr.size + this.#srcCidr.size,
    };
  }

  /** Number of route rules. */
  get ruleCount(): number {
    return this.#table.count;
  }

  /** Hits of rule `i` (including hits carried over by {@linkcode RuleStats}). */
  hits(i: number): number {
    return this.#hits[i] ?? 0;
  }

  /** Flows that fell through to `final`. */
  get finalHits(): number {
    return this.#finalHits;
  }

  /**
   * Gives this engine's hit counters back for a later engine to reuse (a
   * rule-sized array: 800 KB for 100k rules, which a reload would otherwise
   * allocate on the data-plane thread). Call it once the counts were carried
   * over and the engine is out of use (`RuleStats` does); its counts read 0
   * afterwards.
   */
  releaseCounters(): void {
    const h = this.#hits;
    this.#hits = new Float64Array(0);
    this.#hitList.length = 0;
    this.#finalHits = 0;
    releaseCounters(h);
  }

  /**
   * The rules that have hits, in no particular order (each once): what
   * `RuleStats` walks instead of every rule (a large set has 100k).
   */
  hitRules(): readonly number[] {
    return this.#hitList;
  }

  /**
   * Adds `n` (≥ 0) to a hit counter (`RuleStats` carrying counts over a
   * reload). Counts only grow, so {@linkcode Engine.hitRules} lists a rule once.
   */
  addHits(i: number | "final", n: number): void {
    if (!(n >= 0)) throw new RangeError(`addHits: ${n}: expected a count ≥ 0`);
    if (i === "final") this.#finalHits += n;
    else if (i >= 0 && i < this.#hits.length && n > 0) {
      if (this.#hits[i] === 0) this.#hitList.push(i);
      this.#hits[i]! += n;
    }
  }

  /** {@linkcode fingerprintHash} of rule `i` (computed on first use, then cached). */
  fingerprint(i: number): number {
    return this.#table.fingerprint(i);
  }

  /**
   * Pending while this engine's fingerprints are still being computed on
   * the config worker (see `wire_rule_table.ts`); null when they are at hand.
   */
  get fingerprintsReady(): Promise<void> | null {
    return this.#table.ready ?? null;
  }
}

/** Parsed rule `i` of `rules` (for scanned rules, one that is not scanned). */
function ruleAt(rules: readonly RouteRule[] | ScannedRules, i: number): RouteRule {
  return rules instanceof ScannedRules ? rules.parsed(i) : rules[i]!;
}

/** Hit-counter arrays of retired engines, for the next engines (see `Engine.releaseCounters`). */
const counterPool: Float64Array[] = [];

/** Zeroed counters for `n` rules: a pooled array's first `n` (one at most twice as long), else new. */
function takeCounters(n: number): Float64Array {
  for (let k = 0; k < counterPool.length; k++) {
    const a = counterPool[k]!;
    if (a.length >= n && a.length <= 2 * n + 1024) {
      counterPool.splice(k, 1);
      return a.fill(0, 0, n).subarray(0, n);
    }
  }
  return new Float64Array(n);
}

function releaseCounters(h: Float64Array): void {
  if (h.length === 0) return;
  // The whole array, not a view: the next engine may have more rules.
  const whole = new Float64Array(h.buffer);
  counterPool.push(whole);
  if (counterPool.length > 2) counterPool.shift();
}

function runToEnd<T>(it: Generator<void, T>): T {
  for (;;) {
    const r = it.next();
    if (r.done) return r.value;
  }
}

/**
 * Compiles the rules; yields every {@linkcode STEP} rules so a driver can
 * pause. Compact rules go straight into the indexes; the others become
 * matcher trees whose domain and CIDR items are indexed afterwards.
 */
function* buildParts(opts: EngineOptions): Generator<void, Parts> {
  const nodes: DefaultMatcher[] = [];
  /** Per entry of `nodes`: its top-level rule (0 for rule-set nodes). */
  const nodeTop: number[] = [];
  let top0 = 0;
  const minTop = new Int32Array(MIN_SLOTS).fill(NONE);
  const lower = (slot: number, i: number) => {
    if (i < minTop[slot]!) minTop[slot] = i;
  };
  /** Node info; node ids of compact rules and of matchers share one numbering. */
  const info = new IntList();
  const sets = new Map<string, CompiledRuleSet>();
  const scanned = opts.rules instanceof ScannedRules ? opts.rules : null;
  const hints = scanned?.hints;
  const domains = new DomainIndexBuilder(
    Math.max(opts.rules.length, hints?.names ?? 0),
    hints?.nameChars ?? 0,
  );
  const dst = new CidrIndexBuilder(hints);
  const src = new CidrIndexBuilder();
  const compile = (spec: RuleSpec): Matcher => {
    if (spec.type === "logical") {
      return new LogicalMatcher(spec.mode, spec.rules.map(compile), spec.invert);
    }
    const m = new DefaultMatcher(info.length, spec, resolveSets(spec, sets));
    nodes.push(m);
    nodeTop.push(top0);
    info.push(0);
    return m;
  };
  for (const set of opts.ruleSets ?? []) {
    sets.set(set.tag, { tag: set.tag, rules: set.rules.map(compile) });
  }
  const rules = opts.rules;
  const top: (Matcher | null)[] = new Array(rules.length);
  const always: number[] = [];
  const complex: number[] = [], complexFirst: number[] = [];
  const portEntries: PortEntry[] = [], sportEntries: PortEntry[] = [];
  const dscpEntries: PortEntry[] = [], markEntries: MarkEntry[] = [];
  const mark = (node: DefaultMatcher, kind: number, i: number, pure: boolean) => {
    info.data[node.id] = (i << TOP_SHIFT) | (pure ? PURE : 0) | kind;
    const sp = node.spec;
    if (kind === W_PORT) {
      portEntries.push({ node: node.id, ranges: sp.port });
      lower(MIN_PORT, i);
    } else if (kind === W_SPORT) {
      sportEntries.push({ node: node.id, ranges: sp.source_port });
      lower(MIN_SPORT, i);
    } else if (kind === W_DSCP) {
      dscpEntries.push({ node: node.id, ranges: sp.dscp.map((d) => ({ from: d, to: d })) });
      lower(MIN_DSCP, i);
    } else if (kind === W_MARK) {
      markEntries.push({ node: node.id, items: sp.fwmark });
      lower(MIN_MARK, i);
    }
  };
  for (let i = 0; i < rules.length; i++) {
    if ((i & (STEP - 1)) === STEP - 1) yield;
    // null: a scanned rule (see `scanned_rules.ts`), indexed like a compact one.
    const r = scanned === null
      ? (rules as readonly RouteRule[])[i]!
      : scanned.isScanned(i)
      ? null
      : scanned.parsed(i);
    if (r === null || r instanceof CompactRule) {
      top[i] = null;
      const added = r === null
        ? scanned!.insert(i, info.length, domains, dst)
        : addCompact(info.length, r as CompactRule, domains, dst);
      if ((added & ADDED_KEYWORD) !== 0) lower(MIN_PATTERNS, i);
      if ((added & ADDED_CIDR) !== 0) lower(MIN_DST, i);
      info.push((i << TOP_SHIFT) | PURE | W_DST);
      continue;
    }
    complex.push(i);
    complexFirst.push(info.length);
    top0 = i;
    const m = compile(r.match);
    top[i] = m;
    if (m instanceof DefaultMatcher) { // the common case, without the allocation below
      const kind = witnessKind(m);
      if (kind === 0) always.push(i);
      else mark(m, kind, i, m.pure);
      continue;
    }
    const w = witnesses(m);
    if (w === null) always.push(i);
    else for (const [node, kind] of w) mark(node, kind, i, false);
  }
  for (let k = 0; k < nodes.length; k++) {
    if ((k & (STEP - 1)) === STEP - 1) yield;
    const n = nodes[k]!, sp = n.spec, t = nodeTop[k]!;
    if (
      sp.domain.length + sp.domain_suffix.length + sp.domain_keyword.length +
      sp.domain_regex.length
    ) {
      domains.add(n.id, sp);
      if (sp.domain_keyword.length + sp.domain_regex.length) lower(MIN_PATTERNS, t);
    }
    if (sp.ip_cidr.length) {
      dst.add(n.id, sp.ip_cidr);
      lower(MIN_DST, t);
    }
    if (sp.source_ip_cidr.length) {
      src.add(n.id, sp.source_ip_cidr);
      lower(MIN_SRC, t);
    }
  }
  yield;
  const builtDomains = domains.buildImage();
  yield;
  const dstCidr = dst.buildImage();
  yield;
  const srcCidr = src.buildImage();
  return {
    top,
    image: {
      nodeInfo: info.toArray(),
      always: Int32Array.from(always),
      minTop,
      domains: builtDomains,
      dstCidr,
      srcCidr,
      ports: new PortIndex(portEntries).image,
      sports: new PortIndex(sportEntries).image,
      dscps: new PortIndex(dscpEntries).image,
      marks: new MarkIndex(markEntries).image,
    },
    complex: Int32Array.from(complex),
    complexFirst: Int32Array.from(complexFirst),
  };
}

function resolveSets(
  spec: DefaultRuleSpec,
  sets: ReadonlyMap<string, CompiledRuleSet>,
): readonly CompiledRuleSet[] {
  return spec.rule_set.length === 0 ? NO_SETS : spec.rule_set.map((tag) => {
    const set = sets.get(tag);
    if (!set) throw new ReferenceError(`rule set "${tag}" is not loaded`);
    return set;
  });
}

/** `spec` with every index-answered list cut to its first item (see {@linkcode EngineWire}). */
function cutLists(spec: RuleSpec): RuleSpec {
  if (spec.type === "logical") return { ...spec, rules: spec.rules.map(cutLists) };
  return {
    ...spec,
    domain: spec.domain.slice(0, 1),
    domain_suffix: spec.domain_suffix.slice(0, 1),
    domain_keyword: spec.domain_keyword.slice(0, 1),
    domain_regex: spec.domain_regex.slice(0, 1),
    ip_cidr: spec.ip_cidr.slice(0, 1),
    source_ip_cidr: spec.source_ip_cidr.slice(0, 1),
  };
}

/**
 * The buffers of every typed array in `value` (an {@linkcode EngineWire} or
 * anything holding one), for `postMessage(msg, transfer)`.
 */
export function wireTransferList(value: unknown): ArrayBuffer[] {
  const out = new Set<ArrayBuffer>();
  const walk = (v: unknown): void => {
    if (typeof v !== "object" || v === null) return;
    if (ArrayBuffer.isView(v)) {
      if (v.buffer instanceof ArrayBuffer) out.add(v.buffer);
      return;
    }
    for (const x of Array.isArray(v) ? v : Object.values(v)) walk(x);
  };
  walk(value);
  return [...out];
}

/**
 * Indexes the values of a compact rule (validated by the config parser)
 * under `node`; says which kinds it added ({@linkcode ADDED_KEYWORD}, ...).
 */
function addCompact(
  node: number,
  rule: CompactRule,
  domains: DomainIndexBuilder,
  dst: CidrIndexBuilder,
): number {
  let added = 0;
  const raw = rule.raw;
  for (const k in raw) {
    const v = raw[k];
    switch (k) {
      case "domain":
        if (typeof v === "string") domains.addExact(node, v);
        else for (const x of v as string[]) domains.addExact(node, x);
        break;
      case "domain_suffix":
        if (typeof v === "string") domains.addSuffix(node, v);
        else for (const x of v as string[]) domains.addSuffix(node, x);
        break;
      case "domain_keyword":
        added |= ADDED_KEYWORD;
        if (typeof v === "string") domains.addKeyword(node, v);
        else for (const x of v as string[]) domains.addKeyword(node, x);
        break;
      case "ip_cidr":
        added |= ADDED_CIDR;
        if (rule.cidrs !== null) dst.addParsed(node, rule.cidrs);
        else if (typeof v === "string") dst.addText(node, v);
        else for (const x of v as string[]) dst.addText(node, x);
        break;
      default:
        break; // outbound, action
    }
  }
  return added;
}

type Witness = [DefaultMatcher, number];

/** How a default rule can be proposed by an index (0: it cannot). */
function witnessKind(m: DefaultMatcher): number {
  if (m.spec.invert || m.usesRuleSet || m.empty) return 0;
  if (m.dstIndexed) return W_DST;
  if (m.srcIndexed) return W_SRC;
  const sp = m.spec;
  if (sp.port.length !== 0) return W_PORT;
  // Each of these is AND-ed with the rest of the rule: no match without one of its items.
  if (sp.source_port.length !== 0) return W_SPORT;
  if (sp.dscp.length !== 0) return W_DSCP;
  if (sp.fwmark.length !== 0) return W_MARK;
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
