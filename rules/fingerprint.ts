/**
 * Canonical rule fingerprints: JSON with object keys sorted, so a rule that
 * is unchanged across a reload (same fields and values, any key order) keeps
 * its hit counter.
 *
 * @module
 */

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
    m.a = 0x811c9dc5 | 0;
    m.b = 0x2545f491;
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

/**
 * A 53-bit hash of {@linkcode fingerprint}`(value)` computed without
 * building the string (object members are hashed separately and summed, so
 * key order does not matter and nothing is sorted): equal fingerprints give
 * equal hashes; different ones collide with a probability of about 2^-53
 * per pair. Hit counters are carried across reloads by this key.
 */
export function fingerprintHash(value: unknown): number {
  const h: HashState = { a: 0x811c9dc5 | 0, b: 0x2545f491 };
  feed(h, value);
  const a = Math.imul(h.a ^ (h.a >>> 16), 0x45d9f3b) >>> 0;
  const b = (h.b ^ (h.b >>> 13)) & 0x1fffff;
  return b * 0x100000000 + a;
}
