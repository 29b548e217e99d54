/**
 * Small validators shared by the config and rule parsers. Each records an
 * issue at `path` and returns `undefined` when the value is invalid.
 *
 * @module
 */

import { parseDuration } from "../core/duration.ts";
import { parseIp } from "../core/ip.ts";
import type { Cidr, MarkMatch, PortRange } from "../rules/spec.ts";
import type { Issues } from "./config_error.ts";

/** A JSON object. */
export type Obj = Record<string, unknown>;

/** Names the JSON type of `v` for messages. */
export function typeName(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v;
}

/** Quotes a value for a message. */
export function show(v: unknown): string {
  const s = typeof v === "string" ? JSON.stringify(v) : String(JSON.stringify(v) ?? v);
  return s.length > 80 ? s.slice(0, 77) + "..." : s;
}

/** Checks that `v` is an object; each key outside `known` is an "unknown field" issue. */
export function object(
  v: unknown,
  path: string,
  iss: Issues,
  known: ReadonlySet<string>,
  unsupported?: ReadonlySet<string>,
  messages?: ReadonlyMap<string, string>,
): Obj | undefined {
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    iss.add(path, `expected an object, got ${typeName(v)}`);
    return undefined;
  }
  const o = v as Obj;
  for (const k in o) {
    if (known.has(k)) continue;
    iss.add(
      join(path, k),
      messages?.get(k) ??
        (unsupported?.has(k) ? "field is not supported by vpn-router" : "unknown field"),
    );
  }
  return o;
}

/** `a.b` or `b` when `a` is empty. */
export function join(path: string, key: string): string {
  return path === "" ? key : `${path}.${key}`;
}

/** A string (non-empty unless `allowEmpty`). */
export function str(v: unknown, path: string, iss: Issues, allowEmpty = false): string | undefined {
  if (typeof v !== "string") {
    iss.add(path, `expected a string, got ${typeName(v)}`);
    return undefined;
  }
  if (!allowEmpty && v.length === 0) {
    iss.add(path, "must not be empty");
    return undefined;
  }
  return v;
}

/** One of `choices`. */
export function oneOf<T extends string>(
  v: unknown,
  path: string,
  iss: Issues,
  choices: readonly T[],
): T | undefined {
  if (typeof v === "string" && (choices as readonly string[]).includes(v)) return v as T;
  iss.add(path, `${show(v)}: expected one of ${choices.join(", ")}`);
  return undefined;
}

/** A boolean. */
export function bool(v: unknown, path: string, iss: Issues): boolean | undefined {
  if (typeof v === "boolean") return v;
  iss.add(path, `expected a boolean, got ${typeName(v)}`);
  return undefined;
}

/** An integer in [min, max]. */
export function int(
  v: unknown,
  path: string,
  iss: Issues,
  min: number,
  max: number,
): number | undefined {
  if (typeof v !== "number" || !Number.isInteger(v)) {
    iss.add(path, `${show(v)}: expected an integer`);
    return undefined;
  }
  if (v < min || v > max) {
    iss.add(path, `${v}: out of range (${min}..${max})`);
    return undefined;
  }
  return v;
}

/** A 32-bit mark: integer, or decimal / `0x` hex string. */
export function mark32(v: unknown, path: string, iss: Issues): number | undefined {
  if (typeof v === "string") {
    const n = parseUint32(v);
    if (n === undefined) iss.add(path, `${show(v)}: expected a 32-bit number (e.g. 255 or "0xff")`);
    return n;
  }
  return int(v, path, iss, 0, 0xffffffff);
}

function parseUint32(s: string): number | undefined {
  if (!/^(0x[0-9a-fA-F]{1,8}|\d{1,10})$/.test(s)) return undefined;
  const n = Number(s);
  return n <= 0xffffffff ? n : undefined;
}

/** A duration (`"300ms"`, `"5m"`, or seconds as a number) in ms, > 0. */
export function duration(v: unknown, path: string, iss: Issues): number | undefined {
  if (typeof v !== "string" && typeof v !== "number") {
    iss.add(path, `expected a duration such as "300ms" or "5m", got ${typeName(v)}`);
    return undefined;
  }
  try {
    const ms = parseDuration(v);
    if (ms <= 0) {
      iss.add(path, `${show(v)}: must be greater than zero`);
      return undefined;
    }
    return ms;
  } catch (e) {
    iss.add(path, `${show(v)}: ${(e as Error).message}`);
    return undefined;
  }
}

/**
 * A sing-box "listable": one value or an array of values. Each element goes
 * through `item` with its own path (`x[3]`); invalid elements are dropped
 * after their issue is recorded.
 */
export function listable<T>(
  v: unknown,
  path: string,
  item: (v: unknown, path: string) => T | undefined,
): T[] {
  if (!Array.isArray(v)) {
    const one = item(v, path);
    return one === undefined ? [] : [one];
  }
  const out: T[] = [];
  for (let i = 0; i < v.length; i++) {
    const x = item(v[i], `${path}[${i}]`);
    if (x !== undefined) out.push(x);
  }
  return out;
}

/** An IP literal of the given family (or either). */
export function ipLiteral(
  v: unknown,
  path: string,
  iss: Issues,
  family?: 4 | 6,
): string | undefined {
  const s = str(v, path, iss);
  if (s === undefined) return undefined;
  const b = parseIp(s);
  if (!b || (family === 4 && b.length !== 4) || (family === 6 && b.length !== 16)) {
    iss.add(path, `${show(s)}: not an IPv${family ?? "4 or IPv6"} address`);
    return undefined;
  }
  return s;
}

/** A CIDR (`10.0.0.0/8`, `2001:db8::/32`) or a bare address (/32, /128). */
export function cidr(v: unknown, path: string, iss: Issues): Cidr | undefined {
  const s = str(v, path, iss);
  if (s === undefined) return undefined;
  const slash = s.indexOf("/");
  const text = slash < 0 ? s : s.slice(0, slash);
  const addr = parseIpv4Fast(text) ?? parseIp(text);
  if (!addr) {
    iss.add(path, `${show(s)}: invalid IP address`);
    return undefined;
  }
  const max = addr.length * 8;
  let prefix = max;
  if (slash >= 0) {
    const p = s.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p)) {
      iss.add(path, `${show(s)}: invalid prefix length`);
      return undefined;
    }
    prefix = Number(p);
    if (prefix > max) {
      iss.add(path, `${show(s)}: prefix out of range`);
      return undefined;
    }
  }
  return normaliseCidr(addr, prefix);
}

/** Dotted-quad parser without intermediate strings (hot in big rule sets). */
function parseIpv4Fast(s: string): Uint8Array | null {
  const out = new Uint8Array(4);
  let part = 0, value = 0, digits = 0;
  for (let i = 0; i <= s.length; i++) {
    const c = i < s.length ? s.charCodeAt(i) : 46;
    if (c === 46) {
      if (digits === 0 || part > 3) return null;
      out[part++] = value;
      value = digits = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && value === 0) return null; // leading zero
      value = value * 10 + c - 48;
      if (++digits > 3 || value > 255) return null;
    } else return null;
  }
  return part === 4 ? out : null;
}

function isMappedV4(a: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (a[i] !== 0) return false;
  return a[10] === 0xff && a[11] === 0xff;
}

/** Clears host bits; an IPv4-mapped IPv6 prefix (::ffff:0:0/96 and longer) becomes IPv4. */
export function normaliseCidr(addr: Uint8Array, prefix: number): Cidr {
  let a = addr, p = prefix;
  if (a.length === 16 && p >= 96 && isMappedV4(a)) {
    a = a.subarray(12);
    p -= 96;
  }
  const out = new Uint8Array(a.length);
  for (let i = 0; i < a.length; i++) {
    const bits = p - i * 8;
    out[i] = bits >= 8 ? a[i]! : bits <= 0 ? 0 : a[i]! & ((0xff << (8 - bits)) & 0xff);
  }
  return { addr: out, prefix: p };
}

/** A port number 0..65535 as a one-port range. */
export function port(v: unknown, path: string, iss: Issues): PortRange | undefined {
  const n = int(v, path, iss, 0, 65535);
  return n === undefined ? undefined : { from: n, to: n };
}

/** A port range `"1000:2000"`, `":3000"` (from 0), `"4000:"` (to 65535). */
export function portRange(v: unknown, path: string, iss: Issues): PortRange | undefined {
  const s = str(v, path, iss);
  if (s === undefined) return undefined;
  const m = /^(\d{0,5}):(\d{0,5})$/.exec(s);
  if (!m || (m[1] === "" && m[2] === "")) {
    iss.add(path, `${show(s)}: expected "from:to", ":to" or "from:"`);
    return undefined;
  }
  const from = m[1] === "" ? 0 : Number(m[1]);
  const to = m[2] === "" ? 65535 : Number(m[2]);
  if (from > 65535 || to > 65535) {
    iss.add(path, `${show(s)}: port out of range (0..65535)`);
    return undefined;
  }
  if (from > to) {
    iss.add(path, `${show(s)}: start is greater than end`);
    return undefined;
  }
  return { from, to };
}

/** A firewall mark match: number, `"0x100"`, or `"0x100/0xff00"` (value/mask). */
export function markMatch(v: unknown, path: string, iss: Issues): MarkMatch | undefined {
  if (typeof v === "number") {
    const n = int(v, path, iss, 0, 0xffffffff);
    return n === undefined ? undefined : { value: n, mask: 0xffffffff };
  }
  const s = str(v, path, iss);
  if (s === undefined) return undefined;
  const [vs, ms, extra] = s.split("/");
  const value = parseUint32(vs!);
  const mask = ms === undefined ? 0xffffffff : parseUint32(ms);
  if (value === undefined || mask === undefined || extra !== undefined) {
    iss.add(path, `${show(s)}: expected a mark such as 256, "0x100" or "0x100/0xff00"`);
    return undefined;
  }
  if (((value & mask) >>> 0) !== value) {
    iss.add(path, `${show(s)}: value has bits outside the mask`);
    return undefined;
  }
  return { value, mask };
}
