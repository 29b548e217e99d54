/**
 * Per-rule metadata of an engine compiled on another thread
 * ({@linkcode Engine.fromWire}): outbound tags as indexes, fingerprints
 * precomputed, and every rule's JSON as UTF-8 bytes decoded only when asked
 * for (`explain`, `engine.rules`). All typed arrays, so the whole table
 * crosses the thread boundary by transfer and costs the receiving thread
 * a handful of objects instead of one per rule.
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
  /** Per rule: `fingerprintHash` of its JSON. */
  readonly fingerprints: Float64Array;
  /** The rules' JSON texts, UTF-8. */
  readonly text: Uint8Array;
  /** Rule i's text is `text[spans[2i] .. spans[2i + 1])`. */
  readonly spans: Int32Array;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Builds the {@linkcode RuleWire} of parsed `rules`. `source`, when given,
 * is the UTF-8 text the rules were parsed from with each rule's byte span
 * (no re-serialisation); otherwise each rule's `raw` is serialised.
 */
export function buildRuleWire(
  rules: readonly RouteRule[],
  source?: { readonly text: Uint8Array; readonly spans: Int32Array },
): RuleWire {
  const n = rules.length;
  const tagIds = new Map<string, number>();
  const outbound = new Int32Array(n);
  const fingerprints = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const r = rules[i]!;
    let t = tagIds.get(r.outbound);
    if (t === undefined) tagIds.set(r.outbound, t = tagIds.size);
    outbound[i] = t;
    fingerprints[i] = fingerprintHash(r.raw);
  }
  let text: Uint8Array, spans: Int32Array;
  if (source && source.spans.length === 2 * n) {
    ({ text, spans } = source);
  } else {
    spans = new Int32Array(2 * n);
    const parts = rules.map((r) => JSON.stringify(r.raw) ?? "null");
    const joined = parts.join("");
    text = encoder.encode(joined);
    let at = 0;
    const ascii = text.length === joined.length;
    for (let i = 0; i < n; i++) {
      const len = ascii ? parts[i]!.length : encoder.encode(parts[i]!).length;
      spans[2 * i] = at;
      spans[2 * i + 1] = at += len;
    }
  }
  return { tags: [...tagIds.keys()], outbound, fingerprints, text, spans };
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
  readonly #wire: RuleWire;
  #rules: readonly RouteRule[] | null = null;
  /** Builds a rule's spec from its JSON (already validated), for `rules[i].match`. */
  readonly parse: (raw: unknown) => RuleSpec;

  /** Wraps `wire` (no copy); `parse` builds a spec for `rules[i].match` on demand. */
  constructor(wire: RuleWire, parse: (raw: unknown) => RuleSpec) {
    this.#wire = wire;
    this.parse = parse;
  }

  get count(): number {
    return this.#wire.outbound.length;
  }

  outbound(i: number): string {
    return this.#wire.tags[this.#wire.outbound[i]!]!;
  }

  raw(i: number): unknown {
    const { text, spans } = this.#wire;
    return JSON.parse(decoder.decode(text.subarray(spans[2 * i]!, spans[2 * i + 1]!)));
  }

  fingerprint(i: number): number {
    return this.#wire.fingerprints[i]!;
  }

  get rules(): readonly RouteRule[] {
    return this.#rules ??= Array.from({ length: this.count }, (_, i) => new WireRule(this, i));
  }
}
