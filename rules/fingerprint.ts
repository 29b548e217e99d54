/**
 * Canonical rule fingerprints: JSON with object keys sorted, so a rule that
 * is unchanged across a reload (same fields and values, any key order) keeps
 * its hit counter.
 *
 * @module
 */

import { shapeOf } from "../core/keep_shape.ts";

/** Canonical JSON of `value` (keys sorted recursively). */
export function fingerprint(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null";
  if (Array.isArray(value)) return `[${value.map(fingerprint).join(",")}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj).sort();
  return `{${
    keys.filter((k) => obj[k] !== undefined).map((k) =>
      `${JSON.stringify(k)}:${fingerprint(obj[k])}`
    )
      .join(",")
  }}`;
}

/** Running state of {@linkcode fingerprintHash}: two independent 32-bit lanes. */
interface HashState {
  a: number;
  b: number;
}

const SEED_A = 0x811c9dc5 | 0, SEED_B = 0x2545f491;

function mix(h: HashState, x: number): void {
  h.a = Math.imul(h.a ^ x, 0x01000193);
  h.b = Math.imul((h.b + x) | 0, 0x5bd1e995) ^ (h.b >>> 15);
}

function mixString(h: HashState, tag: number, s: string): void {
  mix(h, tag);
  mix(h, s.length);
  for (let i = 0; i < s.length; i++) mix(h, s.charCodeAt(i));
}

function feed(h: HashState, value: unknown): void {
  if (typeof value === "string") return mixString(h, 1, value);
  if (value === null || typeof value !== "object") {
    return mixString(h, 2, JSON.stringify(value) ?? "null");
  }
  if (Array.isArray(value)) {
    mix(h, 3);
    mix(h, value.length);
    for (let i = 0; i < value.length; i++) feed(h, value[i]);
    return;
  }
  // Members hashed one by one and summed: independent of key order, no sorting.
  const obj = value as Record<string, unknown>;
  let sumA = 0, sumB = 0, count = 0;
  const m: HashState = { a: 0, b: 0 };
  for (const k in obj) {
    if (!Object.hasOwn(obj, k) || obj[k] === undefined) continue;
    m.a = SEED_A;
    m.b = SEED_B;
    mixString(m, 1, k);
    feed(m, obj[k]);
    sumA = (sumA + m.a) | 0;
    sumB = (sumB + m.b) | 0;
    count++;
  }
  mix(h, 4);
  mix(h, count);
  mix(h, sumA);
  mix(h, sumB);
}

/** `mixString` of the ASCII text `b[from..end)` (the same steps as {@linkcode mix}, in locals). */
function mixBytes(h: HashState, tag: number, b: Uint8Array, from: number, end: number): void {
  mix(h, tag);
  mix(h, end - from);
  let ha = h.a, hb = h.b;
  for (let i = from; i < end; i++) {
    const x = b[i]!;
    ha = Math.imul(ha ^ x, 0x01000193);
    hb = Math.imul((hb + x) | 0, 0x5bd1e995) ^ (hb >>> 15);
  }
  h.a = ha;
  h.b = hb;
}

function finish(h: HashState): number {
  const a = Math.imul(h.a ^ (h.a >>> 16), 0x45d9f3b) >>> 0;
  const b = (h.b ^ (h.b >>> 13)) & 0x1fffff;
  return b * 0x100000000 + a;
}

/**
 * {@linkcode fingerprintHash} of an object whose members are strings or
 * arrays of strings, fed as ASCII byte ranges of JSON text (no escapes):
 * `begin()`, then per member `key()` and `string()` or `array(n)` +
 * n × `string()`, then `end()`. Equal to `fingerprintHash(JSON.parse(text))`.
 */
export class BytesFingerprint {
  readonly #m: HashState = { a: 0, b: 0 };
  readonly #h: HashState = { a: 0, b: 0 };
  #sumA = 0;
  #sumB = 0;
  #count = 0;
  #open = false;

  /** Starts an object. */
  begin(): void {
    this.#sumA = this.#sumB = this.#count = 0;
    this.#open = false;
  }

  #close(): void {
    if (!this.#open) return;
    this.#sumA = (this.#sumA + this.#m.a) | 0;
    this.#sumB = (this.#sumB + this.#m.b) | 0;
    this.#count++;
    this.#open = false;
  }

  /** Starts a member named `b[from..end)`. */
  key(b: Uint8Array, from: number, end: number): void {
    this.#close();
    this.#m.a = SEED_A;
    this.#m.b = SEED_B;
    mixBytes(this.#m, 1, b, from, end);
    this.#open = true;
  }

  /** The member's value, or the next item of its array: the string `b[from..end)`. */
  string(b: Uint8Array, from: number, end: number): void {
    mixBytes(this.#m, 1, b, from, end);
  }

  /** The member's value is an array of `length` strings (fed next). */
  array(length: number): void {
    mix(this.#m, 3);
    mix(this.#m, length);
  }

  /** The object's {@linkcode fingerprintHash}. */
  end(): number {
    this.#close();
    const h = this.#h;
    h.a = SEED_A;
    h.b = SEED_B;
    mix(h, 4);
    mix(h, this.#count);
    mix(h, this.#sumA);
    mix(h, this.#sumB);
    return finish(h);
  }
}
shapeOf(() => new BytesFingerprint());

/**
 * A 53-bit hash of {@linkcode fingerprint}`(value)` computed without
 * building the string (object members are hashed separately and summed, so
 * key order does not matter and nothing is sorted): equal fingerprints give
 * equal hashes; different ones collide with a probability of about 2^-53
 * per pair. Hit counters are carried across reloads by this key.
 */
export function fingerprintHash(value: unknown): number {
  const h: HashState = { a: SEED_A, b: SEED_B };
  feed(h, value);
  return finish(h);
}
