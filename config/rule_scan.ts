/**
 * The reload fast path for big configs: {@linkcode parseConfigBytes} reads a
 * config file's bytes without building a JS value per rule. It finds
 * `route.rules` in the bytes, parses everything else with `JSON.parse` and
 * {@linkcode parseConfig} (the rules array spliced out), and walks the rules
 * array itself: a rule of the compact shape (only `domain`,
 * `domain_suffix`, `domain_keyword` and/or `ip_cidr` values, an outbound,
 * optionally `action: "route"`; plain ASCII strings) is validated byte by
 * byte and kept as byte ranges ({@linkcode ScannedRules}); any other rule is
 * cut out and parsed by `parseRouteRule`, as the general path does.
 *
 * It only ever accepts: anything it is unsure of — a rule it cannot prove
 * compact and valid, an issue anywhere, odd JSON, duplicate keys on the way
 * to `route.rules`, escapes in those keys — makes it return null, and the
 * caller takes the general path, which gives the result or the complete
 * list of issues. So the two paths cannot disagree on what a config means
 * or on how a broken one is reported.
 *
 * @module
 */

import { parseCidrBytes } from "../rules/cidr_text.ts";
import {
  ITEM_EXACT,
  ITEM_KEYWORD,
  ITEM_SUFFIX,
  type ScannedRules,
  ScannedRulesBuilder,
  skipWs,
} from "../rules/scanned_rules.ts";
import { ConfigError, Issues } from "./config_error.ts";
import { implicitOutbounds, parseConfig, type ParseOptions } from "./parse_config.ts";
import { parseRouteRule, type RuleContext, validatedRuleParser } from "./rule_parser.ts";
import type { RouterConfig } from "./schema.ts";
import { shapeOf } from "../core/keep_shape.ts";

/** What {@linkcode parseConfigBytes} returns: the config (its `route.rules` empty) and the rules. */
export interface BytesConfig {
  readonly config: RouterConfig;
  readonly rules: ScannedRules;
}

const QUOTE = 34, BACKSLASH = 92, COMMA = 44, COLON = 58;
const OPEN_BRACE = 123, CLOSE_BRACE = 125, OPEN_BRACKET = 91, CLOSE_BRACKET = 93;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Keys of the compact rule shape, by id. */
const K_DOMAIN = 0, K_SUFFIX = 1, K_KEYWORD = 2, K_CIDR = 3, K_OUTBOUND = 4, K_ACTION = 5;
const RULE_KEYS = ["domain", "domain_suffix", "domain_keyword", "ip_cidr", "outbound", "action"]
  .map((k) => encoder.encode(k));
const ITEM_KIND = [ITEM_EXACT, ITEM_SUFFIX, ITEM_KEYWORD];

/** Id of the key `b[ks..ke)` if it is one of the compact rule shape, else -1. */
function keyId(b: Uint8Array, ks: number, ke: number): number {
  let k: number;
  switch (ke - ks) {
    case 6:
      k = b[ks] === 100 /* d */ ? K_DOMAIN : K_ACTION;
      break;
    case 7:
      k = K_CIDR;
      break;
    case 8:
      k = K_OUTBOUND;
      break;
    case 13:
      k = K_SUFFIX;
      break;
    case 14:
      k = K_KEYWORD;
      break;
    default:
      return -1;
  }
  return equalBytes(b, ks, ke, RULE_KEYS[k]!) ? k : -1;
}
const ROUTE = encoder.encode("route");
const RULES = encoder.encode("rules");

function isWs(c: number): boolean {
  return c === 32 || c === 10 || c === 13 || c === 9;
}

function equalBytes(b: Uint8Array, from: number, end: number, want: Uint8Array): boolean {
  if (end - from !== want.length) return false;
  for (let j = 0; j < want.length; j++) if (b[from + j] !== want[j]) return false;
  return true;
}

/**
 * End (the closing quote) of a string starting at `from` (after its opening
 * quote) that is plain printable ASCII: no escape, no control or non-ASCII
 * byte; -1 otherwise.
 */
function plainEnd(b: Uint8Array, from: number): number {
  for (let i = from; i < b.length; i++) {
    const c = b[i]!;
    if (c === QUOTE) return i;
    if (c < 0x20 || c > 0x7e || c === BACKSLASH) return -1;
  }
  return -1;
}

/**
 * End of a lower-case name starting at `from`: plain ASCII (see
 * {@linkcode plainEnd}) without A-Z, i.e. equal to its `toLowerCase()`; -1 otherwise.
 */
function nameEnd(b: Uint8Array, from: number): number {
  for (let i = from; i < b.length; i++) {
    const c = b[i]!;
    if (c === QUOTE) return i;
    if (c < 0x20 || c > 0x7e || c === BACKSLASH || (c >= 65 && c <= 90)) return -1;
  }
  return -1;
}

/**
 * Index just past the JSON value at `i` (strings, nesting and escapes
 * respected; literals and numbers run to the next delimiter), or -1 when
 * the text ends first. Does not validate: what it skips is validated by
 * `JSON.parse` later.
 */
export function skipValue(b: Uint8Array, i: number): number {
  const c = b[i];
  if (c === QUOTE) {
    for (let j = i + 1; j < b.length; j++) {
      const x = b[j]!;
      if (x === QUOTE) return j + 1;
      if (x === BACKSLASH) j++;
      else if (x < 0x20) return -1;
    }
    return -1;
  }
  if (c === OPEN_BRACE || c === OPEN_BRACKET) {
    let depth = 0;
    for (let j = i; j < b.length; j++) {
      const x = b[j]!;
      if (x === QUOTE) {
        const e = skipValue(b, j);
        if (e < 0) return -1;
        j = e - 1;
      } else if (x === OPEN_BRACE || x === OPEN_BRACKET) depth++;
      else if (x === CLOSE_BRACE || x === CLOSE_BRACKET) {
        if (--depth === 0) return j + 1;
      }
    }
    return -1;
  }
  let j = i;
  while (j < b.length) {
    const x = b[j]!;
    if (x === COMMA || x === CLOSE_BRACE || x === CLOSE_BRACKET || isWs(x)) break;
    j++;
  }
  return j > i ? j : -1;
}

/** Distinct outbound names of scanned rules, compared as bytes (few: a short list). */
class OutboundNames {
  readonly names: Uint8Array[] = [];
  readonly #byText = new Map<string, number>();

  /** Id of the name `b[from..end)`. */
  intern(b: Uint8Array, from: number, end: number): number {
    const names = this.names, scan = Math.min(names.length, 16);
    for (let k = 0; k < scan; k++) if (equalBytes(b, from, end, names[k]!)) return k;
    if (names.length < 16) {
      names.push(b.slice(from, end));
      return names.length - 1;
    }
    const text = decoder.decode(b.subarray(from, end)); // ASCII: one char per byte
    let id = this.#byText.get(text);
    if (id === undefined) {
      this.#byText.set(text, id = names.length);
      names.push(b.slice(from, end));
    }
    return id;
  }
}
shapeOf(() => new OutboundNames());

/** Walks the rules array; holds the state shared by its rules. */
class RulesScanner {
  readonly out: ScannedRulesBuilder;
  readonly outbounds = new OutboundNames();
  readonly #b: Uint8Array;
  readonly #addr = new Uint8Array(16);

  constructor(b: Uint8Array) {
    this.#b = b;
    this.out = new ScannedRulesBuilder(b);
  }

  /**
   * Walks the array whose `[` is at `i`; returns the index past its `]`, or
   * -1 when the text is not a well-formed array.
   */
  array(i: number): number {
    const b = this.#b;
    i = skipWs(b, i + 1);
    if (b[i] === CLOSE_BRACKET) return i + 1;
    for (;;) {
      const end = b[i] === OPEN_BRACE ? this.#rule(i) : -1;
      if (end >= 0) i = end;
      else {
        const e = skipValue(b, i);
        if (e < 0) return -1;
        this.out.parsedRule(i, e);
        i = e;
      }
      i = skipWs(b, i);
      if (b[i] === COMMA) i = skipWs(b, i + 1);
      else if (b[i] === CLOSE_BRACKET) return i + 1;
      else return -1;
    }
  }

  /** Scans a compact rule at `i` (a `{`): the index past it, or -1 (nothing kept) when it is not one. */
  #rule(start: number): number {
    const out = this.out;
    out.beginRule();
    const end = this.#ruleBody(start);
    if (end < 0) out.abortRule();
    return end;
  }

  #ruleBody(start: number): number {
    const b = this.#b, out = this.out;
    let seen = 0, items = 0, outbound = -1;
    let i = skipWs(b, start + 1);
    if (b[i] === CLOSE_BRACE) return -1;
    for (;;) {
      if (b[i] !== QUOTE) return -1;
      const ks = i + 1, ke = plainEnd(b, ks);
      if (ke < 0) return -1;
      const k = keyId(b, ks, ke);
      if (k < 0 || (seen & (1 << k)) !== 0) return -1;
      seen |= 1 << k;
      i = skipWs(b, ke + 1);
      if (b[i] !== COLON) return -1;
      i = skipWs(b, i + 1);
      if (k === K_OUTBOUND || k === K_ACTION) {
        if (b[i] !== QUOTE) return -1;
        const e = plainEnd(b, i + 1);
        if (e < 0) return -1;
        if (k === K_ACTION) {
          if (!equalBytes(b, i + 1, e, ROUTE)) return -1;
        } else outbound = this.outbounds.intern(b, i + 1, e);
        i = e + 1;
      } else if (b[i] === QUOTE) {
        const e = this.#item(k, i + 1);
        if (e < 0) return -1;
        items++;
        i = e + 1;
      } else if (b[i] === OPEN_BRACKET) {
        i = skipWs(b, i + 1);
        if (b[i] === CLOSE_BRACKET) return -1; // an empty list is not compact
        let n = 0;
        for (;;) {
          if (b[i] !== QUOTE) return -1;
          const e = this.#item(k, i + 1);
          if (e < 0) return -1;
          n++;
          i = skipWs(b, e + 1);
          if (b[i] === COMMA) i = skipWs(b, i + 1);
          else if (b[i] === CLOSE_BRACKET) break;
          else return -1;
        }
        i++;
        items += n;
      } else return -1;
      i = skipWs(b, i);
      if (b[i] === COMMA) i = skipWs(b, i + 1);
      else if (b[i] === CLOSE_BRACE) break;
      else return -1;
    }
    if (items === 0 || outbound < 0) return -1;
    out.endRule(start, i + 1, outbound);
    return i + 1;
  }

  /** Validates and records one value of field `k` starting at `from`; the end of its string or -1. */
  #item(k: number, from: number): number {
    const b = this.#b;
    if (k === K_CIDR) {
      const e = plainEnd(b, from);
      if (e < 0) return -1;
      const res = parseCidrBytes(b, from, e, this.#addr);
      if (res < 0) return -1;
      this.out.cidr(from, e, this.#addr, res);
      return e;
    }
    const e = nameEnd(b, from);
    if (e <= from) return -1; // not a plain lower-case name, or empty
    if (k === K_SUFFIX && e === from + 1 && b[from] === 46 /* "." */) return -1;
    this.out.item(ITEM_KIND[k]!, from, e);
    return e;
  }
}
shapeOf(() => new RulesScanner(new Uint8Array(0)));

/** Where `route.rules` is: the index of its `[` and just past its `]`. */
export interface Located {
  readonly open: number;
  readonly close: number;
}

/**
 * Walks the members of the object whose `{` is at `i`, calling `onMember`
 * with the key's byte range and the index of its value; `onMember` returns
 * the index past the value, or -1 to give up. Keys with escapes give up.
 * Returns the index past the `}`, or -1.
 */
function members(
  b: Uint8Array,
  i: number,
  onMember: (ks: number, ke: number, at: number) => number,
): number {
  i = skipWs(b, i + 1);
  if (b[i] === CLOSE_BRACE) return i + 1;
  for (;;) {
    if (b[i] !== QUOTE) return -1;
    const ke = plainEnd(b, i + 1);
    if (ke < 0) return -1;
    let at = skipWs(b, ke + 1);
    if (b[at] !== COLON) return -1;
    at = skipWs(b, at + 1);
    const e = onMember(i + 1, ke, at);
    if (e < 0) return -1;
    i = skipWs(b, e);
    if (b[i] === COMMA) i = skipWs(b, i + 1);
    else if (b[i] === CLOSE_BRACE) return i + 1;
    else return -1;
  }
}

/**
 * Finds `route.rules` (exactly one `route` with exactly one `rules` array);
 * `onRules(at)` walks the array whose `[` is at `at` and returns the index
 * past its `]`, or -1 to give up. Null when not found or given up.
 */
export function locate(b: Uint8Array, onRules: (at: number) => number): Located | null {
  let start = 0;
  if (b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf) start = 3; // BOM: TextDecoder drops it
  start = skipWs(b, start);
  if (b[start] !== OPEN_BRACE) return null;
  let found: Located | null = null, routes = 0;
  const end = members(b, start, (ks, ke, at) => {
    if (!equalBytes(b, ks, ke, ROUTE)) return skipValue(b, at);
    if (++routes > 1 || b[at] !== OPEN_BRACE) return -1;
    return members(b, at, (rks, rke, rat) => {
      if (!equalBytes(b, rks, rke, RULES)) return skipValue(b, rat);
      if (found !== null || b[rat] !== OPEN_BRACKET) return -1;
      const close = onRules(rat);
      if (close < 0) return -1;
      found = { open: rat, close };
      return close;
    });
  });
  if (end < 0 || skipWs(b, end) !== b.length) return null;
  return found;
}

/** `JSON.parse` + `parseConfig` of the file with the rules array at `loc` spliced out; null on any issue. */
function parseHead(bytes: Uint8Array, loc: Located, opts: ParseOptions): RouterConfig | null {
  let raw: unknown;
  try {
    raw = JSON.parse(
      decoder.decode(bytes.subarray(0, loc.open)) + "[]" +
        decoder.decode(bytes.subarray(loc.close)),
    );
  } catch {
    return null;
  }
  const route = (raw as { route?: { rules?: unknown } }).route;
  if (!Array.isArray(route?.rules) || route.rules.length !== 0) return null;
  try {
    return parseConfig(raw, opts);
  } catch (e) {
    if (e instanceof ConfigError) return null;
    throw e;
  }
}

/**
 * What the meaning of a config's route rules depends on besides their text:
 * the tags they may refer to and the inline rule sets. Null when the config
 * has rule-set files (their content is not part of the config: such rules
 * are never taken as unchanged).
 */
export function rulesContext(head: RouterConfig): string | null {
  if (head.route.rule_set.some((s) => s.type === "local")) return null;
  return JSON.stringify([
    head.outbounds.map((o) => o.tag),
    head.inbounds.map((i) => i.tag),
    head.route.geoip !== null,
    head.route.rule_set,
  ]);
}

/**
 * The identity of a config's route rules, to tell a later config with the
 * same rules (see {@linkcode parseConfigSameRules}): the rules array's bytes,
 * the context they were validated in, and the reject outbounds they use.
 */
export interface RulesIdentity {
  /** The `route.rules` array as written (a view into the file's bytes). */
  readonly rules: Uint8Array;
  /** See `rulesContext`; null: not reusable. */
  readonly context: string | null;
  /** Tags of the implicit reject outbounds the rules use. */
  readonly rejects: readonly string[];
}

/**
 * Parses the config file `bytes` like `parseConfig(JSON.parse(text))`, with
 * `route.rules` read as {@linkcode ScannedRules}; null when this fast path
 * does not apply or finds anything wrong (the caller then takes the general
 * path: see the module doc). The returned config's `route.rules` is empty.
 */
export function parseConfigBytes(
  bytes: Uint8Array,
  opts: ParseOptions,
): (BytesConfig & { readonly identity: RulesIdentity }) | null {
  const scanner = new RulesScanner(bytes);
  const loc = locate(bytes, (at) => scanner.array(at));
  if (loc === null) return null;
  const head = parseHead(bytes, loc, opts);
  if (head === null) return null;
  const { out, outbounds } = scanner;
  const tags = new Set(head.outbounds.map((x) => x.tag));
  const names = outbounds.names.map((n) => decoder.decode(n));
  if (!names.every((n) => tags.has(n))) return null;
  const refs = {
    inbounds: new Set(head.inbounds.map((x) => x.tag)),
    outbounds: tags,
    ruleSets: new Set(head.route.rule_set.map((x) => x.tag)),
    hasGeoip: head.route.geoip !== null,
  };
  const ctx: RuleContext = { ...refs, iss: new Issues(), usedReject: new Set() };
  for (const i of out.parsedIndexes()) {
    const [from, end] = out.span(i);
    let v: unknown;
    try {
      v = JSON.parse(decoder.decode(bytes.subarray(from, end)));
    } catch {
      return null;
    }
    const r = parseRouteRule(v, `route.rules[${i}]`, ctx);
    if (r === undefined || !ctx.iss.ok) return null;
    out.setParsed(i, r);
  }
  const rules = out.build(names, validatedRuleParser(refs));
  const outboundsAll = [...head.outbounds, ...implicitOutbounds(ctx.usedReject)];
  return {
    config: { ...head, outbounds: outboundsAll },
    rules,
    identity: {
      rules: bytes.subarray(loc.open, loc.close),
      context: rulesContext(head),
      rejects: [...ctx.usedReject],
    },
  };
}

/**
 * The {@linkcode RulesIdentity} of `config`, parsed in full (its rules
 * included) from the file `bytes`; null when `route.rules` cannot be located
 * in the bytes as {@linkcode parseConfigBytes} would.
 */
export function rulesIdentity(bytes: Uint8Array, config: RouterConfig): RulesIdentity | null {
  const loc = locate(bytes, (at) => skipValue(bytes, at));
  if (loc === null) return null;
  const implicit = (o: RouterConfig["outbounds"][number]) => o.type === "block" && o.implicit;
  const head = { ...config, outbounds: config.outbounds.filter((o) => !implicit(o)) };
  return {
    rules: bytes.subarray(loc.open, loc.close),
    context: rulesContext(head),
    rejects: config.outbounds.filter(implicit).map((o) => o.tag),
  };
}

/**
 * The config in `bytes` when its route rules are the same as those of
 * `prev` (a {@linkcode RulesIdentity} from {@linkcode parseConfigBytes}):
 * the rules array byte for byte (compared natively, without walking it),
 * the same context, and the rest of the file valid. Its `route.rules` is
 * empty; the caller reuses what it compiled for `prev`. Null otherwise
 * (then parse it in full).
 */
export function parseConfigSameRules(
  bytes: Uint8Array,
  prev: RulesIdentity,
  opts: ParseOptions,
): RouterConfig | null {
  if (prev.context === null) return null;
  const want = prev.rules;
  const loc = locate(bytes, (at) => {
    const end = at + want.length;
    return end <= bytes.length && Buffer.compare(bytes.subarray(at, end), want) === 0 ? end : -1;
  });
  if (loc === null) return null;
  const head = parseHead(bytes, loc, opts);
  if (head === null || rulesContext(head) !== prev.context) return null;
  return {
    ...head,
    outbounds: [...head.outbounds, ...implicitOutbounds(new Set(prev.rejects))],
  };
}
