/**
 * Per-rule metadata of an engine compiled on another thread
 * ({@linkcode Engine.fromWire}): outbound tags as indexes, fingerprints
 * precomputed, and every rule's JSON as UTF-8 bytes decoded only when asked
 * for (`explain`, `engine.rules`). All typed arrays, so the whole table
 * crosses the thread boundary by transfer and costs the receiving thread
 * a handful of objects instead of one per rule.
 *
 * The rule spans and fingerprints are not needed to route, so for big rule
 * lists the worker sends them after the engine, in a {@linkcode RuleWireTail}
 * ({@linkcode WireRuleTable.complete}); until then the table derives what it
 * is asked for itself, and {@linkcode WireRuleTable.ready} tells when the
 * fingerprints are in (for `RuleStats`).
 *
 * @module
 */

import type { RuleTable } from "./engine.ts";
import { fingerprintHash } from "./fingerprint.ts";
import type { RouteRule, RuleSpec } from "./spec.ts";

/** A {@linkcode WireRuleTable} as plain data. */
export interface RuleWire {
  /** Distinct outbound tags. */
  readonly tags: readonly string[];
  /** Per rule: index into `tags`. */
  readonly outbound: Int32Array;
  /** Per rule: `fingerprintHash` of its JSON; null when a {@linkcode RuleWireTail} brings them. */
  readonly fingerprints: Float64Array | null;
  /** The rules' JSON texts, UTF-8 (with spans null: the whole ASCII config file). */
  readonly text: Uint8Array;
  /** Rule i's text is `text[spans[2i] .. spans[2i + 1])`; null when the tail brings them. */
  readonly spans: Int32Array | null;
}

/** What a deferred {@linkcode RuleWire} lacks, sent after it. */
export interface RuleWireTail {
  readonly fingerprints: Float64Array;
  /** Absent when the head had them. */
  readonly spans?: Int32Array;
  /** Replaces the head's text (when the rules had to be serialised after all). */
  readonly text?: Uint8Array;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Outbound tags of `rules` as indexes into a tag list. */
function outboundIds(rules: readonly RouteRule[]): { tags: string[]; outbound: Int32Array } {
  const tags: string[] = [];
  const ids = new Map<string, number>();
  const outbound = new Int32Array(rules.length);
  for (let i = 0; i < rules.length; i++) {
    const o = rules[i]!.outbound;
    // Mostly a few outbounds: a scan of the first 8 (pointer compares) beats a Map.
    let t = 0;
    const scan = Math.min(tags.length, 8);
    while (t < scan && tags[t] !== o) t++;
    if (t === scan) {
      const known = scan < 8 ? undefined : ids.get(o);
      if (known !== undefined) t = known;
      else {
        t = tags.length;
        tags.push(o);
        ids.set(o, t);
      }
    }
    outbound[i] = t;
  }
  return { tags, outbound };
}

/** {@linkcode fingerprintHash} of every rule's `raw`. */
export function ruleFingerprints(rules: readonly RouteRule[]): Float64Array {
  const fps = new Float64Array(rules.length);
  for (let i = 0; i < rules.length; i++) fps[i] = fingerprintHash(rules[i]!.raw);
  return fps;
}

/** Each rule's `raw` serialised, as UTF-8 with spans. */
function serialise(rules: readonly RouteRule[]): { text: Uint8Array; spans: Int32Array } {
  const n = rules.length;
  const spans = new Int32Array(2 * n);
  const parts = rules.map((r) => JSON.stringify(r.raw) ?? "null");
  const joined = parts.join("");
  const text = encoder.encode(joined);
  let at = 0;
  const ascii = text.length === joined.length;
  for (let i = 0; i < n; i++) {
    const len = ascii ? parts[i]!.length : encoder.encode(parts[i]!).length;
    spans[2 * i] = at;
    spans[2 * i + 1] = at += len;
  }
  return { text, spans };
}

/**
 * Builds the {@linkcode RuleWire} of parsed `rules`. `source`, when given,
 * is the UTF-8 text the rules were parsed from with each rule's byte span
 * (no re-serialisation); otherwise each rule's `raw` is serialised.
 */
export function buildRuleWire(
  rules: readonly RouteRule[],
  source?: { readonly text: Uint8Array; readonly spans: Int32Array },
): RuleWire {
  const { tags, outbound } = outboundIds(rules);
  const fingerprints = ruleFingerprints(rules);
  const { text, spans } = source && source.spans.length === 2 * rules.length
    ? source
    : serialise(rules);
  return { tags, outbound, fingerprints, text, spans };
}

/**
 * The head of a deferred {@linkcode RuleWire}: outbounds only, `text` the
 * whole config file (ASCII, so byte offsets are char offsets); the spans
 * and fingerprints follow in the tail built by {@linkcode buildRuleTail}.
 */
export function buildRuleHead(rules: readonly RouteRule[], file: Uint8Array): RuleWire {
  const { tags, outbound } = outboundIds(rules);
  return { tags, outbound, fingerprints: null, text: file, spans: null };
}

/**
 * The tail of {@linkcode buildRuleHead}'s wire: `spans` are the rules'
 * spans in the file (null, or of another length, when they could not be
 * found: the rules are serialised instead).
 */
export function buildRuleTail(
  rules: readonly RouteRule[],
  spans: Int32Array | null,
): RuleWireTail {
  const fingerprints = ruleFingerprints(rules);
  if (spans && spans.length === 2 * rules.length) return { fingerprints, spans };
  return { fingerprints, ...serialise(rules) };
}

/** A rule of a {@linkcode WireRuleTable}: JSON and spec decoded on first access. */
class WireRule implements RouteRule {
  readonly outbound: string;
  readonly #table: WireRuleTable;
  readonly #i: number;
  #match: RuleSpec | undefined;

  constructor(table: WireRuleTable, i: number) {
    this.#table = table;
    this.#i = i;
    this.outbound = table.outbound(i);
  }

  get raw(): unknown {
    return this.#table.raw(this.#i);
  }

  get match(): RuleSpec {
    return this.#match ??= this.#table.parse(this.raw);
  }
}

/** The {@linkcode RuleTable} of a wire-built engine; see the module doc. */
export class WireRuleTable implements RuleTable {
  readonly #tags: readonly string[];
  readonly #outbound: Int32Array;
  #text: Uint8Array;
  #spans: Int32Array | null;
  #fps: Float64Array | null;
  /** Fingerprints computed here while the tail is missing (-1: not yet). */
  #localFps: Float64Array | null = null;
  readonly #locate: ((text: Uint8Array) => Int32Array | null) | undefined;
  #ready: Promise<void> | null = null;
  #resolve: (() => void) | null = null;
  #rules: readonly RouteRule[] | null = null;
  /** Builds a rule's spec from its JSON (already validated), for `rules[i].match`. */
  readonly parse: (raw: unknown) => RuleSpec;

  /**
   * Wraps `wire` (no copy); `parse` builds a spec for `rules[i].match` on
   * demand. For a deferred wire (spans null), `locate` finds the rules'
   * spans in `wire.text` if a rule's text is needed before the tail arrives.
   */
  constructor(
    wire: RuleWire,
    parse: (raw: unknown) => RuleSpec,
    locate?: (text: Uint8Array) => Int32Array | null,
  ) {
    this.#tags = wire.tags;
    this.#outbound = wire.outbound;
    this.#text = wire.text;
    this.#spans = wire.spans;
    this.#fps = wire.fingerprints;
    this.#locate = locate;
    this.parse = parse;
    if (this.#fps === null) {
      this.#ready = new Promise<void>((resolve) => this.#resolve = resolve);
    }
  }

  /**
   * Resolves once the fingerprints are here ({@linkcode WireRuleTable.complete}
   * or {@linkcode WireRuleTable.abandon}); null when they already are.
   */
  get ready(): Promise<void> | null {
    return this.#fps === null && this.#resolve !== null ? this.#ready : null;
  }

  /** Takes the tail of a deferred wire. */
  complete(tail: RuleWireTail): void {
    if (tail.fingerprints.length !== this.count) {
      throw new RangeError(`rule tail has ${tail.fingerprints.length} rules, table ${this.count}`);
    }
    if (tail.text) this.#text = tail.text;
    if (tail.spans) this.#spans = tail.spans;
    this.#fps = tail.fingerprints;
    this.#localFps = null;
    this.#settle();
  }

  /** The tail will not come (the worker died): fingerprints are computed here on demand. */
  abandon(): void {
    this.#settle();
  }

  #settle(): void {
    const r = this.#resolve;
    this.#resolve = null;
    r?.();
  }

  get count(): number {
    return this.#outbound.length;
  }

  outbound(i: number): string {
    return this.#tags[this.#outbound[i]!]!;
  }

  raw(i: number): unknown {
    let spans = this.#spans;
    if (spans === null) {
      const found = this.#locate?.(this.#text) ?? null;
      if (found === null || found.length !== 2 * this.count) {
        throw new Error("rule texts are not available yet");
      }
      spans = this.#spans = found;
    }
    return JSON.parse(decoder.decode(this.#text.subarray(spans[2 * i]!, spans[2 * i + 1]!)));
  }

  fingerprint(i: number): number {
    if (this.#fps !== null) return this.#fps[i]!;
    const local = this.#localFps ??= new Float64Array(this.count).fill(-1);
    const f = local[i]!;
    return f >= 0 ? f : (local[i] = fingerprintHash(this.raw(i)));
  }

  get rules(): readonly RouteRule[] {
    return this.#rules ??= Array.from({ length: this.count }, (_, i) => new WireRule(this, i));
  }
}
