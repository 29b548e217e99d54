/**
 * Reloads that edit a few route rules without recompiling the others. The
 * config worker keeps the file it last compiled in full (the "base"); the
 * `route.rules` array of a new file is compared with the base's byte for
 * byte (natively, `Buffer.compare`) from both ends. The rest of the file is
 * parsed as usual (outbounds and inbounds may change and be added, not
 * removed: see {@linkcode contextFits}). The rules
 * before and after the edited stretch are the base's own, character for
 * character; only the rules in between are parsed, validated and compiled
 * (into a small engine the data-plane thread puts after the base's
 * indexes: `Engine.patch`).
 *
 * Anything unusual — the array cannot be found, the edited stretch is not a
 * plain run of `,`-separated values, a rule is invalid, an outbound or
 * inbound tag is gone, GeoIP presence or the inline rule sets changed, too
 * many rules changed — gives null, and the caller compiles the file in full, which
 * also reports errors exactly as usual.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import type { EngineWire, PatchShape, PatchStretches } from "../rules/engine.ts";
import type { RouteRule } from "../rules/spec.ts";
import { IntList } from "../rules/int_list.ts";
import { skipWs } from "../rules/scanned_rules.ts";
import { ConfigError } from "./config_error.ts";
import { implicitOutbounds, parseConfig, type ParseOptions } from "./parse_config.ts";
import { locate, rulesContext, type RulesIdentity, skipValue } from "./rule_scan.ts";
import type { RouterConfig } from "./schema.ts";

/** At most this many new rules are compiled as a patch; more: a full compile. */
export const PATCH_MAX_ADDED = 1024;

const COMMA = 44, CLOSE_BRACKET = 93;
const decoder = new TextDecoder();

/** What the worker keeps of the file it compiled in full. */
export interface PatchBase {
  /** A copy of the file's bytes. */
  readonly file: Uint8Array;
  /** `route.rules`: the index of its `[` and just past its `]`. */
  readonly open: number;
  readonly close: number;
  /** `rulesContext` of the config (never null here). */
  readonly context: string;
  /** Rules routed to an implicit reject outbound: their indexes and tags. */
  readonly rejects: readonly { readonly rule: number; readonly tag: string }[];
  /** The compiled parts that a patch renumbers (copies of the base engine's). */
  readonly parts: Pick<EngineWire, "image" | "complex" | "complexFirst" | "ruleCount">;
}

/** A config read as a patch of its base. */
export interface Patched {
  /** The config; its outbounds exactly as a full parse gives them, its `route.rules` the new rules only. */
  readonly config: RouterConfig;
  /** Which rules of the base were replaced by the rules in `text`, in order. */
  readonly stretches: PatchStretches;
  /** The identity of the new file's rules (to tell a later file with the same ones). */
  readonly identity: RulesIdentity;
  /** The rules the base does not have, one after the other, and their spans in it. */
  readonly text: Uint8Array;
  readonly spans: Int32Array;
  /** The new file, to compare the next one with. */
  readonly current: PatchCurrent;
}

/**
 * Member spans of the JSON array `[open, close)` of `b`: `[start, end]` per
 * member. Null when it is not a plain array of values (the caller compiled
 * the file, so it is valid JSON: null means a bug, and gives a full compile).
 * `expect`: how many members there probably are (the array is sized for
 * them, grown if there are more: no JS array of 2 numbers per rule, which
 * was ~0.7 MB of garbage per 10k-rule reload on the config worker).
 */
export function memberSpans(
  b: Uint8Array,
  open: number,
  close: number,
  expect = 0,
): Int32Array | null {
  const out = new IntList(2 * Math.max(8, expect));
  let i = skipWs(b, open + 1);
  if (i === close - 1) return new Int32Array(0);
  for (;;) {
    const e = skipValue(b, i);
    if (e < 0 || e >= close) return null;
    out.push(i);
    out.push(e);
    i = skipWs(b, e);
    if (b[i] === COMMA) i = skipWs(b, i + 1);
    else if (b[i] === CLOSE_BRACKET && i === close - 1) return out.toArray();
    else return null;
  }
}

/** How many of `0, 1, …, n - 1` pass `ok`, which holds for a leading run of them only. */
function countWhile(n: number, ok: (i: number) => boolean): number {
  let lo = 0, hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ok(mid)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Adds `d` to `a[from, to)`. */
function addTo(a: Int32Array, from: number, to: number, d: number): void {
  if (d !== 0) { for (let i = from; i < to; i++) a[i] = a[i]! + d; }
}

/** Length of the longest common prefix of `a` and `b` (binary search over native compares). */
function commonPrefix(a: Uint8Array, b: Uint8Array): number {
  const same = (m: number) => Buffer.compare(a.subarray(0, m), b.subarray(0, m)) === 0;
  return countWhile(Math.min(a.length, b.length) + 1, same) - 1;
}

/** Length of the longest common suffix of `a` and `b`. */
function commonSuffix(a: Uint8Array, b: Uint8Array): number {
  const same = (m: number) =>
    Buffer.compare(a.subarray(a.length - m), b.subarray(b.length - m)) === 0;
  return countWhile(Math.min(a.length, b.length) + 1, same) - 1;
}

/**
 * The members of `b[from, to)`, a stretch of an array between two members
 * (or its brackets), or null unless it is exactly what belongs there: a
 * leading `,` when a member precedes it and any follows, members separated
 * by `,`, and a trailing `,` when members are in it and one follows. Also
 * null as soon as it holds more than `max` members (every one of them is a
 * rule the base lacks, so the file is compiled in full: a reload that
 * replaces every rule does not walk them all twice).
 */
function stretchMembers(
  b: Uint8Array,
  from: number,
  to: number,
  before: boolean,
  after: boolean,
  max: number,
): number[] | null {
  const items: number[] = []; // -1 for a comma, else start, end pairs
  let i = skipWs(b, from);
  let count = 0;
  while (i < to) {
    if (b[i] === COMMA) {
      items.push(-1);
      i = skipWs(b, i + 1);
      continue;
    }
    if (++count > max) return null;
    const e = skipValue(b, i);
    if (e < 0 || e > to) return null;
    items.push(i, e);
    i = skipWs(b, e);
  }
  if (i !== to) return null;
  const spans: number[] = [];
  let k = 0;
  const comma = () => items[k] === -1 ? (k++, true) : false;
  const members = items.filter((x) => x !== -1).length / 2;
  if (before && (members > 0 || after) && !comma()) return null;
  for (let m = 0; m < members; m++) {
    if (m > 0 && !comma()) return null;
    if (items[k] === -1 || k >= items.length) return null;
    spans.push(items[k]!, items[k + 1]!);
    k += 2;
  }
  if (after && members > 0 && !comma()) return null;
  return k === items.length ? spans : null;
}

/**
 * Whether rules validated in context `was` (see `rulesContext`) are valid
 * as they are in context `now`: the same GeoIP presence and inline rule
 * sets, and every outbound and inbound tag still there (tags may be added:
 * a new outbound and the rules that use it are a patch).
 */
export function contextFits(was: string, now: string): boolean {
  if (was === now) return true;
  const [o1, i1, g1, s1] = JSON.parse(was) as [string[], string[], boolean, unknown];
  const [o2, i2, g2, s2] = JSON.parse(now) as [string[], string[], boolean, unknown];
  if (g1 !== g2 || JSON.stringify(s1) !== JSON.stringify(s2)) return false;
  const outs = new Set(o2), ins = new Set(i2);
  return o1.every((t) => outs.has(t)) && i1.every((t) => ins.has(t));
}

/**
 * The file a patch is made from: the base itself, or the last patched file
 * (what {@linkcode parseConfigPatch} returns as `current`).
 */
export interface PatchCurrent {
  readonly file: Uint8Array;
  /** Its `route.rules`: the index of its `[` and just past its `]`. */
  readonly open: number;
  readonly close: number;
  /** Member spans of the rules array (`[start, end]` per rule, file offsets). */
  readonly spans: Int32Array;
  /** Per rule: its index in the base, or -1 for a rule the base does not have. */
  readonly src: Int32Array;
}

/** The base as a {@linkcode PatchCurrent} (null when its rules cannot be split). */
export function baseAsCurrent(base: PatchBase): PatchCurrent | null {
  const spans = memberSpans(base.file, base.open, base.close, base.parts.ruleCount);
  if (spans === null) return null;
  const src = new Int32Array(spans.length / 2);
  for (let i = 0; i < src.length; i++) src[i] = i;
  return { file: base.file, open: base.open, close: base.close, spans, src };
}

/**
 * `bytes` (a config file) read as a patch of `base`, or null (then compile
 * it in full: see the module doc). It is compared with `current` (the base,
 * or the last patched file) and the difference composed with `current`'s
 * own: the result says which stretches of the base's rules were replaced,
 * and carries every rule the base does not have (old edits and new).
 */
export function parseConfigPatch(
  bytes: Uint8Array,
  base: PatchBase,
  current: PatchCurrent,
  opts: ParseOptions,
  maxAdded = PATCH_MAX_ADDED,
): Patched | null {
  const old = current.file;
  // Where the rules array ends: where the current one did from the end of the file when
  // what follows it is the same (no walk); else found by walking the array's bytes.
  const tailLen = old.length - current.close;
  const guess = bytes.length - tailLen;
  const sameTail = guess > 0 && bytes[guess - 1] === CLOSE_BRACKET &&
    Buffer.compare(bytes.subarray(guess), old.subarray(current.close)) === 0;
  const loc = locate(bytes, (at) => sameTail && at < guess ? guess : skipValue(bytes, at));
  if (loc === null) return null;
  const close = loc.close;
  const spans = current.spans;
  const oldArr = old.subarray(current.open, current.close);
  const newArr = bytes.subarray(loc.open, close);
  const shift = newArr.length - oldArr.length;
  const n = spans.length / 2;
  const pre = commonPrefix(oldArr, newArr);
  // Rules wholly inside the common prefix / suffix are the current file's (spans ascend:
  // binary searches).
  const P = countWhile(n, (i) => spans[2 * i + 1]! - current.open <= pre);
  // The suffix may not reach into the prefix's rules (or the `[`).
  const kept = P > 0 ? spans[2 * P - 1]! - current.open : 1;
  const suf = Math.min(commonSuffix(oldArr, newArr), Math.min(oldArr.length, newArr.length) - kept);
  const S = countWhile(n - P, (j) => spans[2 * (n - 1 - j)]! - current.open >= oldArr.length - suf);
  const from = P > 0 ? spans[2 * P - 1]! - current.open + loc.open : loc.open + 1;
  const to = (S > 0 ? spans[2 * (n - S)]! - current.open : oldArr.length - 1) + shift + loc.open;
  if (from > to) return null;
  const fresh = stretchMembers(bytes, from, to, P > 0, S > 0, maxAdded);
  if (fresh === null) return null;
  const A = fresh.length / 2;

  // The new file's rules: the current prefix, the fresh ones, the current suffix.
  const total = P + A + S;
  const src = new Int32Array(total), newSpans = new Int32Array(2 * total);
  src.set(current.src.subarray(0, P));
  src.fill(-1, P, P + A);
  src.set(current.src.subarray(n - S), P + A);
  newSpans.set(spans.subarray(0, 2 * P));
  newSpans.set(fresh, 2 * P);
  newSpans.set(spans.subarray(2 * (n - S)), 2 * (P + A));
  addTo(newSpans, 0, 2 * P, loc.open - current.open);
  addTo(newSpans, 2 * (P + A), 2 * total, close - current.close);
  // Against the base: the stretches between the base rules kept, and every rule it lacks.
  const baseCount = base.parts.ruleCount;
  const stretches: PatchShape[] = [];
  const addedAt: number[] = [];
  let expect = 0, pending = 0;
  for (let i = 0; i < total; i++) {
    const b = src[i]!;
    if (b < 0) {
      pending++;
      addedAt.push(i);
      continue;
    }
    if (b !== expect || pending > 0) {
      stretches.push({ prefix: expect, removed: b - expect, added: pending });
    }
    expect = b + 1;
    pending = 0;
  }
  if (expect < baseCount || pending > 0) {
    stretches.push({ prefix: expect, removed: baseCount - expect, added: pending });
  }
  if (addedAt.length > maxAdded) return null;

  // The rules the base lacks, alone in the config: parsed and validated in its context.
  const A2 = addedAt.length;
  let len = Math.max(0, A2 - 1); // the commas
  for (const i of addedAt) len += newSpans[2 * i + 1]! - newSpans[2 * i]!;
  const text = new Uint8Array(len);
  const relSpans = new Int32Array(2 * A2);
  for (let m = 0, at = 0; m < A2; m++) {
    const i = addedAt[m]!;
    if (m > 0) text[at++] = COMMA;
    relSpans[2 * m] = at;
    text.set(bytes.subarray(newSpans[2 * i]!, newSpans[2 * i + 1]!), at);
    at += newSpans[2 * i + 1]! - newSpans[2 * i]!;
    relSpans[2 * m + 1] = at;
  }
  let config: RouterConfig;
  try {
    config = parseConfig(
      JSON.parse(
        decoder.decode(bytes.subarray(0, loc.open)) + "[" + decoder.decode(text) + "]" +
          decoder.decode(bytes.subarray(close)),
      ),
      opts,
    );
  } catch (e) {
    if (e instanceof SyntaxError || e instanceof ConfigError) return null;
    throw e;
  }
  const declared = config.outbounds.filter((o) => !(o.type === "block" && o.implicit));
  const context = rulesContext({ ...config, outbounds: declared });
  if (context === null || !contextFits(base.context, context)) return null;
  // Implicit reject outbounds: those the added rules use and those the kept base rules use.
  const used = new Set(config.route.rules.map((r: RouteRule) => r.outbound));
  for (const { rule, tag } of base.rejects) {
    if (!stretches.some((x) => rule >= x.prefix && rule < x.prefix + x.removed)) used.add(tag);
  }
  const implicit = implicitOutbounds(used);
  return {
    config: { ...config, outbounds: [...declared, ...implicit] },
    stretches,
    identity: {
      rules: bytes.subarray(loc.open, close),
      context,
      rejects: implicit.map((o) => o.tag),
    },
    text,
    spans: relSpans,
    current: { file: bytes, open: loc.open, close, spans: newSpans, src },
  };
}
