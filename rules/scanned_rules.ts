/**
 * Route rules read straight from a config file's bytes (`config/rule_scan.ts`):
 * the commonest rule shape (only `domain`, `domain_suffix`, `domain_keyword`
 * and/or `ip_cidr` values and an outbound, i.e. what the config parser
 * would make a `CompactRule`) is kept as byte ranges ("tokens") into the
 * file, already validated, with its fingerprint and outbound; every other
 * rule is a parsed {@linkcode RouteRule}. No object per scanned rule: the
 * engine inserts the tokens into its indexes
 * ({@linkcode ScannedRules.insert}), and the rule texts, outbounds and
 * fingerprints go to the data-plane thread as one {@linkcode RuleWire}.
 *
 * @module
 */

import { BytesFingerprint, fingerprintHash } from "./fingerprint.ts";
import { CIDR_V6 } from "./cidr_text.ts";
import { type CidrIndexBuilder, trieNodesFor } from "./item_cidr.ts";
import type { DomainIndexBuilder } from "./item_domain.ts";
import type { RouteRule, RuleSpec } from "./spec.ts";
import { type RuleWire, type RuleWireTail, WireRuleTable } from "./wire_rule_table.ts";
import { shapeOf } from "../core/keep_shape.ts";
import { EMPTY_DEFAULT_RULE } from "./spec.ts";
import { giveInts, takeInts } from "./spare.ts";

/** Token kinds: which field a value came from. */
export const ITEM_EXACT = 0, ITEM_SUFFIX = 1, ITEM_KEYWORD = 2, ITEM_CIDR = 3;

/** {@linkcode ScannedRules.insert} result bits (as the engine's `addCompact`). */
export const ADDED_KEYWORD = 1, ADDED_CIDR = 2;

/** Ints per token: kind, start, end (byte range of the value), CIDR slot (or 0). */
const TOK = 4;

/** Sizes of scanned values (see {@linkcode ScannedRules.hints}). */
export interface ScanHints {
  /** `domain`, `domain_suffix` and `domain_keyword` values. */
  readonly names: number;
  /** Their total length in code units (bytes: they are ASCII). */
  readonly nameChars: number;
  /** `ip_cidr` values. */
  readonly prefixes: number;
  /** Upper bounds of the trie nodes their prefixes need (`trieNodesFor`), per family. */
  readonly v4Nodes: number;
  readonly v6Nodes: number;
}

/** A growable Int32Array. */
class Ints {
  data: Int32Array;
  length = 0;

  constructor(capacity: number) {
    this.data = takeInts(Math.max(16, capacity));
  }

  ensure(extra: number): Int32Array {
    if (this.length + extra > this.data.length) {
      const grown = takeInts(Math.max(2 * this.data.length, this.length + extra));
      grown.set(this.data.subarray(0, this.length));
      giveInts(this.data);
      this.data = grown;
    }
    return this.data;
  }

  push(x: number): void {
    this.ensure(1)[this.length++] = x;
  }
}
shapeOf(() => new Ints(0));

/** The route rules of one config; see the module doc. Built by {@linkcode ScannedRulesBuilder}. */
export class ScannedRules {
  /** Number of route rules. */
  readonly length: number;
  readonly #bytes: Uint8Array;
  readonly #tokens: Int32Array;
  /** Rule i's tokens are `[ruleTok[i], ruleTok[i + 1])`; empty for a parsed rule. */
  readonly #ruleTok: Int32Array;
  /** 16 bytes per CIDR: the parsed prefixes of `ip_cidr` tokens. */
  readonly #cidrAddr: Uint8Array;
  readonly #cidrRes: Int32Array;
  readonly #parsed: ReadonlyMap<number, RouteRule>;
  /** The wire without fingerprints. */
  readonly #wire: RuleWire;
  #full: RuleWire | undefined;
  readonly #parse: (raw: unknown) => RuleSpec;
  /** Sizes of the scanned rules' values, to presize the engine's index builders. */
  readonly hints: ScanHints;

  /** @internal Use {@linkcode ScannedRulesBuilder}. */
  constructor(init: {
    bytes: Uint8Array;
    tokens: Int32Array;
    ruleTok: Int32Array;
    cidrAddr: Uint8Array;
    cidrRes: Int32Array;
    parsed: ReadonlyMap<number, RouteRule>;
    wire: RuleWire;
    parse: (raw: unknown) => RuleSpec;
    hints: ScanHints;
  }) {
    this.hints = init.hints;
    this.length = init.wire.outbound.length;
    this.#bytes = init.bytes;
    this.#tokens = init.tokens;
    this.#ruleTok = init.ruleTok;
    this.#cidrAddr = init.cidrAddr;
    this.#cidrRes = init.cidrRes;
    this.#parsed = init.parsed;
    this.#wire = init.wire;
    this.#parse = init.parse;
  }

  /** True when rule `i` is a scanned (compact) rule; false when it was parsed. */
  isScanned(i: number): boolean {
    return this.#ruleTok[i]! < this.#ruleTok[i + 1]!;
  }

  /** The parsed rule `i` (only for rules that are not {@linkcode isScanned}). */
  parsed(i: number): RouteRule {
    const r = this.#parsed.get(i);
    if (r === undefined) throw new RangeError(`rule ${i} was scanned, not parsed`);
    return r;
  }

  /**
   * Inserts the values of scanned rule `i` into the indexes under rule node
   * `node`; says which kinds it added ({@linkcode ADDED_KEYWORD}, ...).
   */
  insert(i: number, node: number, domains: DomainIndexBuilder, dst: CidrIndexBuilder): number {
    const t = this.#tokens, b = this.#bytes;
    let added = 0;
    for (let k = this.#ruleTok[i]!; k < this.#ruleTok[i + 1]!; k += TOK) {
      const from = t[k + 1]!, end = t[k + 2]!;
      switch (t[k]) {
        case ITEM_EXACT:
          domains.addExactBytes(node, b, from, end);
          break;
        case ITEM_SUFFIX:
          domains.addSuffixBytes(node, b, from, end);
          break;
        case ITEM_KEYWORD:
          added |= ADDED_KEYWORD;
          domains.addKeywordBytes(node, b, from, end);
          break;
        default: {
          added |= ADDED_CIDR;
          const slot = t[k + 3]!;
          dst.addPrefix(node, this.#cidrAddr, 16 * slot, this.#cidrRes[slot]!);
        }
      }
    }
    return added;
  }

  /** Outbounds, fingerprints and texts of the rules (the file's bytes with spans). */
  get wire(): RuleWire {
    return this.#full ??= { ...this.#wire, fingerprints: this.#fingerprints() };
  }

  /**
   * For sending to another thread before the fingerprints are computed:
   * {@linkcode wire}'s arrays (this object still reads them: copy them on the
   * way out, never transfer them) and fingerprints null.
   * {@linkcode tailWire} brings them.
   */
  headWire(): RuleWire {
    const w = this.#wire;
    return { tags: w.tags, outbound: w.outbound, fingerprints: null, text: w.text, spans: w.spans };
  }

  /** The fingerprints {@linkcode headWire} left out. */
  tailWire(): RuleWireTail {
    return { fingerprints: this.wire.fingerprints! };
  }

  /** Fingerprints of every rule: scanned ones from their bytes, parsed ones from their JSON. */
  #fingerprints(): Float64Array {
    const n = this.length, spans = this.#wire.spans!, b = this.#bytes;
    const fps = new Float64Array(n), fp = new BytesFingerprint();
    for (let i = 0; i < n; i++) {
      fps[i] = this.isScanned(i)
        ? compactFingerprint(b, spans[2 * i]!, fp)
        : fingerprintHash(this.parsed(i).raw);
    }
    return fps;
  }

  /** The rules' metadata as an engine's rule table (for an engine built on this thread). */
  table(): WireRuleTable {
    return new WireRuleTable(this.wire, this.#parse);
  }
}
shapeOf(() => new ScannedRulesBuilder(new Uint8Array(0)).build([], () => EMPTY_DEFAULT_RULE));

/** Index of the first byte at or after `i` that is not JSON whitespace (or `b.length`). */
export function skipWs(b: Uint8Array, i: number): number {
  while (i < b.length) {
    const c = b[i];
    if (c !== 32 && c !== 10 && c !== 13 && c !== 9) return i;
    i++;
  }
  return i;
}

/** Index of the closing quote of the (escape-free) string whose opening quote is at `i`. */
function stringEnd(b: Uint8Array, i: number): number {
  let j = i + 1;
  while (b[j] !== 34) j++;
  return j;
}

/**
 * `fingerprintHash` of the scanned (so well-formed, compact) rule whose `{`
 * is at `i`: members whose values are strings or arrays of strings.
 */
function compactFingerprint(b: Uint8Array, i: number, fp: BytesFingerprint): number {
  fp.begin();
  i = skipWs(b, i + 1);
  while (b[i] === 34) {
    const ke = stringEnd(b, i);
    fp.key(b, i + 1, ke);
    i = skipWs(b, skipWs(b, ke + 1) + 1); // past ":"
    if (b[i] === 34) {
      const e = stringEnd(b, i);
      fp.string(b, i + 1, e);
      i = e + 1;
    } else { // an array of strings: count them, then feed them
      let n = 0, j = skipWs(b, i + 1);
      while (b[j] === 34) {
        n++;
        j = skipWs(b, stringEnd(b, j) + 1);
        if (b[j] === 44) j = skipWs(b, j + 1);
      }
      fp.array(n);
      j = skipWs(b, i + 1);
      while (b[j] === 34) {
        const e = stringEnd(b, j);
        fp.string(b, j + 1, e);
        j = skipWs(b, e + 1);
        if (b[j] === 44) j = skipWs(b, j + 1);
      }
      i = j + 1; // past "]"
    }
    i = skipWs(b, i);
    if (b[i] === 44) i = skipWs(b, i + 1);
  }
  return fp.end();
}

/**
 * Collects {@linkcode ScannedRules} while a scanner walks the rules array
 * of a config file: per scanned rule `beginRule()`, `item()`/`cidr()` per
 * value, then `endRule()` (or `abortRule()` when the rule turns out not to
 * be of the compact shape); `parsedRule()` for the others.
 */
export class ScannedRulesBuilder {
  readonly #bytes: Uint8Array;
  readonly #tokens = new Ints(4096);
  readonly #ruleTok = new Ints(1024);
  readonly #spans = new Ints(2048);
  /** Per rule: outbound id (see {@linkcode ScannedRulesBuilder.endRule}), or -1 for parsed rules. */
  readonly #outbound = new Ints(1024);
  #cidrAddr = new Uint8Array(16 * 1024);
  readonly #cidrRes = new Ints(1024);
  readonly #parsed = new Map<number, RouteRule>();
  #ruleStart = 0;
  #v4Nodes = 0;
  #v6Nodes = 0;

  /** Rules come from `bytes` (a config file). */
  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
    this.#ruleTok.push(0);
  }

  /** Rules so far. */
  get count(): number {
    return this.#outbound.length;
  }

  /** Starts a scanned rule. */
  beginRule(): void {
    this.#ruleStart = this.#tokens.length;
  }

  /** A name value (kind `ITEM_EXACT`, `ITEM_SUFFIX` or `ITEM_KEYWORD`): `bytes[from..end)`. */
  item(kind: number, from: number, end: number): void {
    const t = this.#tokens.ensure(TOK);
    const k = this.#tokens.length;
    t[k] = kind, t[k + 1] = from, t[k + 2] = end, t[k + 3] = 0;
    this.#tokens.length += TOK;
  }

  /** An `ip_cidr` value `bytes[from..end)` parsed into `addr[0..16)` with result `res`. */
  cidr(from: number, end: number, addr: Uint8Array, res: number): void {
    if ((res & CIDR_V6) !== 0) this.#v6Nodes += trieNodesFor(res & 0xff);
    else this.#v4Nodes += trieNodesFor(res & 0xff);
    const slot = this.#cidrRes.length;
    if (16 * slot + 16 > this.#cidrAddr.length) {
      const grown = new Uint8Array(2 * this.#cidrAddr.length);
      grown.set(this.#cidrAddr);
      this.#cidrAddr = grown;
    }
    const to = this.#cidrAddr;
    for (let j = 0; j < 16; j++) to[16 * slot + j] = addr[j]!;
    this.#cidrRes.push(res);
    this.item(ITEM_CIDR, from, end);
    this.#tokens.data[this.#tokens.length - 1] = slot;
  }

  /** Drops the tokens of the current rule (it is not compact: it will be parsed). */
  abortRule(): void {
    let slots = 0;
    for (let k = this.#ruleStart; k < this.#tokens.length; k += TOK) {
      if (this.#tokens.data[k] === ITEM_CIDR) slots++;
    }
    for (let k = this.#cidrRes.length - slots; k < this.#cidrRes.length; k++) {
      const r = this.#cidrRes.data[k]!;
      if ((r & CIDR_V6) !== 0) this.#v6Nodes -= trieNodesFor(r & 0xff);
      else this.#v4Nodes -= trieNodesFor(r & 0xff);
    }
    this.#cidrRes.length -= slots;
    this.#tokens.length = this.#ruleStart;
  }

  /**
   * Ends the current scanned rule: its text is `bytes[from..end)`, its
   * outbound `outbound` (an id the caller maps to tags in {@linkcode build}).
   */
  endRule(from: number, end: number, outbound: number): void {
    this.#close(from, end, outbound);
  }

  /** A rule that will be parsed: its text is `bytes[from..end)` (the rule comes in {@linkcode setParsed}). */
  parsedRule(from: number, end: number): void {
    this.#close(from, end, -1);
  }

  #close(from: number, end: number, outbound: number): void {
    this.#spans.push(from);
    this.#spans.push(end);
    this.#outbound.push(outbound);
    this.#ruleTok.push(this.#tokens.length);
  }

  /** Byte range of rule `i`'s text. */
  span(i: number): [number, number] {
    return [this.#spans.data[2 * i]!, this.#spans.data[2 * i + 1]!];
  }

  /** Indexes of the rules added with {@linkcode parsedRule}. */
  *parsedIndexes(): Generator<number> {
    const o = this.#outbound.data;
    for (let i = 0; i < this.#outbound.length; i++) if (o[i] === -1) yield i;
  }

  /** Sets the parsed form of a rule added with {@linkcode parsedRule}. */
  setParsed(i: number, rule: RouteRule): void {
    this.#parsed.set(i, rule);
  }

  /**
   * Freezes the rules. `tags[id]` is the outbound tag of scanned rules whose
   * outbound id is `id`; `parse` builds a rule's spec from its JSON on demand.
   */
  build(tags: readonly string[], parse: (raw: unknown) => RuleSpec): ScannedRules {
    const n = this.count;
    const wireTags = [...tags];
    const tagIds = new Map(wireTags.map((t, i) => [t, i]));
    const outbound = this.#outbound.data.subarray(0, n);
    for (let i = 0; i < n; i++) {
      if (outbound[i] !== -1) continue;
      const r = this.#parsed.get(i);
      if (r === undefined) throw new Error(`rule ${i} was never parsed`);
      let id = tagIds.get(r.outbound);
      if (id === undefined) {
        tagIds.set(r.outbound, id = wireTags.length);
        wireTags.push(r.outbound);
      }
      outbound[i] = id;
    }
    const t = this.#tokens.data;
    let nameChars = 0;
    for (let k = 0; k < this.#tokens.length; k += TOK) {
      if (t[k] !== ITEM_CIDR) nameChars += t[k + 2]! - t[k + 1]!;
    }
    return new ScannedRules({
      bytes: this.#bytes,
      // Views, not copies: the builder is done with its arrays.
      tokens: this.#tokens.data.subarray(0, this.#tokens.length),
      ruleTok: this.#ruleTok.data.subarray(0, n + 1),
      cidrAddr: this.#cidrAddr.subarray(0, 16 * this.#cidrRes.length),
      cidrRes: this.#cidrRes.data.subarray(0, this.#cidrRes.length),
      parsed: this.#parsed,
      wire: {
        tags: wireTags,
        outbound,
        fingerprints: null,
        text: this.#bytes,
        spans: this.#spans.data.subarray(0, 2 * n),
      },
      parse,
      hints: {
        names: this.#tokens.length / TOK - this.#cidrRes.length,
        nameChars,
        prefixes: this.#cidrRes.length,
        v4Nodes: this.#v4Nodes,
        v6Nodes: this.#v6Nodes,
      },
    });
  }
}
shapeOf(() => new ScannedRulesBuilder(new Uint8Array(0)));
