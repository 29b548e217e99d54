/**
 * Allocation-free CIDR text parsing for the compile fast path: reads
 * `10.0.0.0/8`, `2001:db8::/32` or a bare address into a caller-owned
 * 16-byte scratch buffer. Accepts exactly what the config parser's `cidr()`
 * accepts (dotted quads without leading zeros; RFC 4291 IPv6 text, with an
 * optional dotted IPv4 tail; a 1–3 digit prefix within range) and applies
 * the same normalisation (`::ffff:a.b.c.d/N≥96` becomes IPv4 `/N-96`).
 * Host bits are left as written: a trie insert only reads the prefix bits.
 *
 * @module
 */

import { parseIp } from "../core/ip.ts";
import { shapeOf } from "../core/keep_shape.ts";

/** Result flag: the parsed prefix is IPv6 (the address fills all 16 bytes). */
export const CIDR_V6 = 0x100;

/** Longest text any valid CIDR has (IPv6 with a dotted tail and a prefix: 49). */
const MAX_CIDR_TEXT = 64;
const textScratch = new Uint8Array(MAX_CIDR_TEXT);

/**
 * Parses `s` into `out` (≥ 16 bytes). Returns the prefix length, ORed with
 * {@linkcode CIDR_V6} for IPv6, or -1 when `s` is not a valid CIDR.
 */
export function parseCidrInto(s: string, out: Uint8Array): number {
  if (s.length > MAX_CIDR_TEXT) return -1;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0x7f) return -1;
    textScratch[i] = c;
  }
  return parseCidrBytes(textScratch, 0, s.length, out);
}

/**
 * {@linkcode parseCidrInto} for ASCII text `b[from..end)` (e.g. a JSON
 * string read straight from a config file's bytes): same acceptance, same result.
 */
export function parseCidrBytes(b: Uint8Array, from: number, end: number, out: Uint8Array): number {
  if (end - from > MAX_CIDR_TEXT) return -1;
  let slash = -1;
  for (let i = from; i < end; i++) {
    if (b[i] === 47 /* / */) {
      slash = i;
      break;
    }
  }
  const addrEnd = slash < 0 ? end : slash;
  let v6: boolean;
  if (parseIpv4Into(b, from, addrEnd, out)) v6 = false;
  else if (parseIpv6Into(b, from, addrEnd, out)) v6 = true;
  else return -1;
  const max = v6 ? 128 : 32;
  let prefix = max;
  if (slash >= 0) {
    const digits = end - slash - 1;
    if (digits < 1 || digits > 3) return -1;
    prefix = 0;
    for (let i = slash + 1; i < end; i++) {
      const c = b[i]!;
      if (c < 48 || c > 57) return -1;
      prefix = prefix * 10 + c - 48;
    }
    if (prefix > max) return -1;
  }
  if (v6 && prefix >= 96 && isMappedV4(out)) {
    out[0] = out[12]!, out[1] = out[13]!, out[2] = out[14]!, out[3] = out[15]!;
    return prefix - 96;
  }
  return v6 ? prefix | CIDR_V6 : prefix;
}

function isMappedV4(a: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (a[i] !== 0) return false;
  return a[10] === 0xff && a[11] === 0xff;
}

/** Dotted quad `b[from..end)` into `out[0..4)`; no leading zeros. */
function parseIpv4Into(b: Uint8Array, from: number, end: number, out: Uint8Array): boolean {
  let part = 0, value = 0, digits = 0;
  for (let i = from; i <= end; i++) {
    const c = i < end ? b[i]! : 46;
    if (c === 46) {
      if (digits === 0 || part > 3) return false;
      out[part++] = value;
      value = digits = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && value === 0) return false; // leading zero
      value = value * 10 + c - 48;
      if (++digits > 3 || value > 255) return false;
    } else return false;
  }
  return part === 4;
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  const l = c | 0x20;
  return l >= 97 && l <= 102 ? l - 87 : -1;
}

/** IPv6 text `b[from..end)` into `out[0..16)`. */
function parseIpv6Into(b: Uint8Array, from: number, end: number, out: Uint8Array): boolean {
  let hasColon = false;
  for (let i = from; i < end; i++) {
    const c = b[i]!;
    if (c === 46) { // dotted IPv4 tail: rare, take the general parser
      const parsed = parseIp(String.fromCharCode(...b.subarray(from, end)));
      if (parsed === null || parsed.length !== 16) return false;
      out.set(parsed);
      return true;
    }
    if (c === 58) hasColon = true;
  }
  if (!hasColon) return false;
  // Groups are written to out as they come; the ones after "::" are moved right at the end.
  let count = 0, gap = -1, i = from;
  if (b[from] === 58) {
    if (from + 1 >= end || b[from + 1] !== 58) return false;
    gap = 0;
    i = from + 2;
  }
  while (i < end) {
    let g = 0, digits = 0;
    for (; i < end; i++) {
      const h = hexValue(b[i]!);
      if (h < 0) break;
      g = (g << 4) | h;
      if (++digits > 4) return false;
    }
    if (digits === 0 || count === 8) return false;
    out[2 * count] = g >> 8;
    out[2 * count + 1] = g & 0xff;
    count++;
    if (i === end) break;
    if (b[i] !== 58) return false;
    if (i + 1 < end && b[i + 1] === 58) {
      if (gap >= 0) return false;
      gap = count;
      i += 2;
    } else if (++i === end) return false; // trailing single ":"
  }
  if (gap < 0) return count === 8;
  if (count > 7) return false;
  const tail = count - gap, shift = 8 - count;
  for (let k = tail - 1; k >= 0; k--) {
    out[2 * (gap + shift + k)] = out[2 * (gap + k)]!;
    out[2 * (gap + shift + k) + 1] = out[2 * (gap + k) + 1]!;
  }
  out.fill(0, 2 * gap, 2 * (gap + shift));
  return true;
}

/**
 * CIDRs already parsed by {@linkcode parseCidrInto} (by the config parser
 * while it validates a compact rule), so the index builder does not parse
 * them a second time: prefix i is `addr[16(from + i) ..]` with result
 * `res[from + i]` (as {@linkcode parseCidrInto} returns it), for i < `count`.
 */
export interface ParsedCidrs {
  readonly addr: Uint8Array;
  readonly res: Int32Array;
  readonly from: number;
  readonly count: number;
}

/** CIDRs per chunk of a {@linkcode ParsedCidrPool}. */
const POOL_CHUNK = 4096;

/**
 * Where the config parser keeps {@linkcode ParsedCidrs}: chunks of 4,096
 * prefixes (20 bytes each), a new chunk when one is full; a chunk lives as
 * long as a rule refers to it.
 */
export class ParsedCidrPool {
  #addr = new Uint8Array(16 * POOL_CHUNK);
  #res = new Int32Array(POOL_CHUNK);
  #used = 0;
  #from = 0;
  readonly #scratch = new Uint8Array(16);

  /** Starts a group of `max` prefixes (a rule's list). */
  begin(max: number): void {
    if (this.#used + max > this.#res.length) {
      const size = Math.max(POOL_CHUNK, max);
      this.#addr = new Uint8Array(16 * size);
      this.#res = new Int32Array(size);
      this.#used = 0;
    }
    this.#from = this.#used;
  }

  /** Parses `s` into the current group; false (nothing kept) when it is not a valid CIDR. */
  add(s: string): boolean {
    const at = this.#used, scratch = this.#scratch;
    const r = parseCidrInto(s, scratch);
    if (r < 0) return false;
    const addr = this.#addr, len = (r & CIDR_V6) !== 0 ? 16 : 4;
    for (let i = 0; i < len; i++) addr[16 * at + i] = scratch[i]!;
    this.#res[at] = r;
    this.#used = at + 1;
    return true;
  }

  /** Drops the current group (its rule was not compact after all). */
  abort(): void {
    this.#used = this.#from;
  }

  /** The current group. */
  end(): ParsedCidrs {
    return { addr: this.#addr, res: this.#res, from: this.#from, count: this.#used - this.#from };
  }
}
shapeOf(() => new ParsedCidrPool());
