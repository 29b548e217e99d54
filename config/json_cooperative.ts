/**
 * `JSON.parse` for big config and rule-set files without one long blocking
 * call: a scan records the outline of the document (the members of the
 * containers near the top), then the members are parsed with `JSON.parse`
 * in pieces of about {@linkcode PIECE_CHARS} characters, pausing between
 * pieces when the {@linkcode Pacing} says so. The result equals
 * `JSON.parse(text)`; on invalid input it throws exactly what `JSON.parse`
 * throws (it re-parses the whole text to get that error).
 *
 * @module
 */

import type { Pacing } from "../rules/pacing.ts";

/** Texts up to this many characters are parsed in one `JSON.parse` call. */
export const ONE_GO_CHARS = 512 * 1024;
/** Target size of one piece. */
export const PIECE_CHARS = 64 * 1024;
/** Containers nested up to this depth (top level = 0) are outlined and split. */
const OUTLINE_DEPTH = 3;
/** Characters scanned between two pacing checks. */
const SCAN_STEP = 256 * 1024;

/** An outlined container: its members' separator positions. */
interface Outline {
  readonly object: boolean;
  readonly start: number;
  end: number;
  /** Per member: segment start (after `[`, `{` or `,`), colon (objects; else -1), segment end. */
  readonly members: number[];
  /** Per member: index of its outline when the member is an outlined container, else -1. */
  readonly inner: number[];
}

class Invalid extends Error {}

/** Parses `text` like `JSON.parse`, pausing between pieces when `pacing` is due. */
export async function parseJsonCooperative(text: string, pacing: Pacing): Promise<unknown> {
  if (text.length <= ONE_GO_CHARS) return JSON.parse(text);
  try {
    const outlines = await outline(text, pacing);
    if (outlines.length === 0) return JSON.parse(text);
    return await build(text, outlines, 0, pacing);
  } catch (e) {
    if (e instanceof Invalid || e instanceof SyntaxError) return JSON.parse(text); // throws the real error
    throw e;
  }
}

function isSpace(c: number): boolean {
  return c === 32 || c === 10 || c === 13 || c === 9;
}

/** Scans `text` once; returns the outlines of containers at depth ≤ OUTLINE_DEPTH (root first). */
async function outline(text: string, pacing: Pacing): Promise<Outline[]> {
  const outlines: Outline[] = [];
  /** Open containers: outline index, or -1 when deeper than OUTLINE_DEPTH. */
  const stack: number[] = [];
  /** Closing char expected per open container. */
  const closers: number[] = [];
  let i = 0;
  while (i < text.length && isSpace(text.charCodeAt(i))) i++;
  const first = text.charCodeAt(i);
  if (first !== 123 && first !== 91) return []; // not a container: parse in one go
  let nextCheck = SCAN_STEP;
  for (; i < text.length; i++) {
    if (i >= nextCheck) {
      nextCheck = i + SCAN_STEP;
      if (pacing.due()) await pacing.pause();
    }
    const c = text.charCodeAt(i);
    if (c === 34) { // string: jump to its closing quote
      let j = i;
      for (;;) {
        j = text.indexOf('"', j + 1);
        if (j < 0) throw new Invalid();
        let k = j - 1;
        while (text.charCodeAt(k) === 92) k--;
        if ((j - 1 - k) % 2 === 0) break; // an even number of backslashes: not escaped
      }
      i = j;
      continue;
    }
    if (c === 123 || c === 91) {
      const parent = stack.length === 0 ? -1 : stack[stack.length - 1]!;
      let idx = -1;
      if (stack.length <= OUTLINE_DEPTH && (stack.length === 0 || parent >= 0)) {
        idx = outlines.length;
        outlines.push({
          object: c === 123,
          start: i,
          end: -1,
          members: [i + 1, -1, -1],
          inner: [-1],
        });
        if (parent >= 0) {
          const p = outlines[parent]!;
          p.inner[p.inner.length - 1] = idx;
        }
      }
      stack.push(idx);
      closers.push(c + 2); // { → }, [ → ]
      continue;
    }
    if (c === 125 || c === 93) {
      if (closers.pop() !== c) throw new Invalid();
      const idx = stack.pop()!;
      if (idx >= 0) {
        const o = outlines[idx]!;
        o.end = i;
        o.members[o.members.length - 1] = i;
        // A small container is parsed whole: drop its outline (its own were dropped first).
        if (idx !== 0 && idx === outlines.length - 1 && i - o.start <= PIECE_CHARS) {
          outlines.pop();
          const p = outlines[stack[stack.length - 1]!]!;
          p.inner[p.inner.length - 1] = -1;
        }
      }
      if (stack.length === 0) {
        for (let k = i + 1; k < text.length; k++) {
          if (!isSpace(text.charCodeAt(k))) throw new Invalid();
        }
        return outlines;
      }
      continue;
    }
    const top = stack.length === 0 ? -1 : stack[stack.length - 1]!;
    if (top < 0) continue;
    if (c === 44) { // ","
      const o = outlines[top]!;
      o.members[o.members.length - 1] = i;
      o.members.push(i + 1, -1, -1);
      o.inner.push(-1);
    } else if (c === 58) { // ":"
      const o = outlines[top]!;
      if (!o.object || o.members[o.members.length - 2] !== -1) throw new Invalid();
      o.members[o.members.length - 2] = i;
    }
  }
  throw new Invalid(); // unterminated
}

function blank(text: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (!isSpace(text.charCodeAt(i))) return false;
  return true;
}

/** Sets `obj[key] = value` as JSON.parse does (an own property, even for `__proto__`). */
function setMember(obj: Record<string, unknown>, key: string, value: unknown): void {
  if (key === "__proto__") {
    Object.defineProperty(obj, key, {
      value,
      writable: true,
      enumerable: true,
      configurable: true,
    });
  } else obj[key] = value;
}

async function build(
  text: string,
  outlines: Outline[],
  idx: number,
  pacing: Pacing,
): Promise<unknown> {
  const o = outlines[idx]!;
  if (o.end - o.start <= PIECE_CHARS) return JSON.parse(text.slice(o.start, o.end + 1));
  const m = o.members;
  const n = m.length / 3;
  if (n === 1 && blank(text, m[0]!, m[2]!)) return o.object ? {} : [];
  const out: unknown[] | Record<string, unknown> = o.object ? {} : [];
  const open = o.object ? "{" : "[";
  const close = o.object ? "}" : "]";
  // Members in runs of small ones (parsed together) and big outlined ones (recursed into).
  let k = 0;
  while (k < n) {
    if (pacing.due()) await pacing.pause();
    const segStart = m[3 * k]!, colon = m[3 * k + 1]!, segEnd = m[3 * k + 2]!;
    if (o.object && colon < 0) throw new Invalid();
    const valueStart = o.object ? colon + 1 : segStart;
    if (blank(text, valueStart, segEnd)) throw new Invalid(); // "[1,,2]", "[1,]", {"a":}
    const inner = o.inner[k]!;
    if (inner >= 0 && segEnd - segStart > PIECE_CHARS) {
      const value = await build(text, outlines, inner, pacing);
      if (Array.isArray(out)) out.push(value);
      else {
        const key: unknown = JSON.parse(text.slice(segStart, colon));
        if (typeof key !== "string") throw new Invalid();
        setMember(out, key, value);
      }
      k++;
      continue;
    }
    // A run of members up to about PIECE_CHARS, stopping before a big outlined member.
    let last = k;
    while (
      last + 1 < n && m[3 * (last + 1) + 2]! - segStart <= PIECE_CHARS &&
      !(o.inner[last + 1]! >= 0 && m[3 * (last + 1) + 2]! - m[3 * (last + 1)]! > PIECE_CHARS)
    ) {
      last++;
      const from = o.object ? m[3 * last + 1]! + 1 : m[3 * last]!;
      if (o.object && m[3 * last + 1]! < 0) throw new Invalid();
      if (blank(text, from, m[3 * last + 2]!)) throw new Invalid();
    }
    const piece = JSON.parse(open + text.slice(segStart, m[3 * last + 2]!) + close);
    if (Array.isArray(out)) {
      for (const v of piece as unknown[]) out.push(v);
    } else {
      const obj = piece as Record<string, unknown>;
      for (const key of Object.keys(obj)) setMember(out, key, obj[key]);
    }
    k = last + 1;
  }
  return out;
}

/** Index of the closing quote of the string whose opening quote is at `i`. */
function stringEnd(text: string, i: number): number {
  for (let j = i;;) {
    j = text.indexOf('"', j + 1);
    if (j < 0) return text.length;
    let k = j - 1;
    while (text.charCodeAt(k) === 92) k--;
    if ((j - 1 - k) % 2 === 0) return j; // an even number of backslashes: not escaped
  }
}

/** Index just past the value starting at `i` (no leading whitespace) of valid JSON. */
function valueEnd(text: string, i: number): number {
  const c = text.charCodeAt(i);
  if (c === 34) return stringEnd(text, i) + 1;
  if (c !== 123 && c !== 91) { // number, true, false, null
    let j = i + 1;
    for (; j < text.length; j++) {
      const d = text.charCodeAt(j);
      if (d === 44 || d === 125 || d === 93 || isSpace(d)) break;
    }
    return j;
  }
  let depth = 0;
  for (let j = i; j < text.length; j++) {
    const d = text.charCodeAt(j);
    if (d === 34) j = stringEnd(text, j);
    else if (d === 123 || d === 91) depth++;
    else if ((d === 125 || d === 93) && --depth === 0) return j + 1;
  }
  return text.length;
}

function skipSpace(text: string, i: number): number {
  while (i < text.length && isSpace(text.charCodeAt(i))) i++;
  return i;
}

/**
 * Where the members of the array at `path` (object keys from the root,
 * e.g. `["route", "rules"]`) sit in `text`: member i is
 * `text.slice(spans[2i], spans[2i + 1])`. `text` must be valid JSON
 * (`JSON.parse` accepted it); null when the path does not lead to an array.
 * For a duplicated key the last one counts, as in `JSON.parse`. One pass,
 * strings skipped with `indexOf`, no allocation per member but the spans.
 */
export function arrayMemberSpans(text: string, path: readonly string[]): Int32Array | null {
  let i = skipSpace(text, 0);
  for (const key of path) {
    if (text.charCodeAt(i) !== 123) return null;
    let found = -1;
    i = skipSpace(text, i + 1);
    while (text.charCodeAt(i) === 34) {
      const keyEnd = stringEnd(text, i);
      let name = text.slice(i + 1, keyEnd);
      if (name.includes("\\")) name = JSON.parse(text.slice(i, keyEnd + 1));
      i = skipSpace(text, skipSpace(text, keyEnd + 1) + 1); // past ":"
      if (name === key) found = i;
      i = skipSpace(text, valueEnd(text, i));
      if (text.charCodeAt(i) === 44) i = skipSpace(text, i + 1);
    }
    if (found < 0) return null;
    i = found;
  }
  if (text.charCodeAt(i) !== 91) return null;
  let spans = new Int32Array(1024), n = 0;
  i = skipSpace(text, i + 1);
  while (i < text.length && text.charCodeAt(i) !== 93) {
    const end = valueEnd(text, i);
    if (2 * n + 2 > spans.length) {
      const grown = new Int32Array(spans.length * 2);
      grown.set(spans);
      spans = grown;
    }
    spans[2 * n] = i;
    spans[2 * n + 1] = end;
    n++;
    i = skipSpace(text, end);
    if (text.charCodeAt(i) === 44) i = skipSpace(text, i + 1);
  }
  return spans.slice(0, 2 * n);
}
