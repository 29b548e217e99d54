/**
 * Test helpers for the sniffer tests: fixture loading and a seeded PRNG.
 * Internal (leading underscore): not exported from `mod.ts`.
 *
 * @module
 */

import type { FixtureEntry } from "../tests/fixtures/_capture_util.ts";
import { prng } from "../tests/_prng.ts";

const fixtures = new URL("../tests/fixtures/", import.meta.url);

/** A fixture manifest entry, as written by the capture scripts. */
export type { FixtureEntry };

/** Reads `tests/fixtures/<kind>/manifest.json`. */
export function manifest(kind: "tls" | "http" | "quic"): FixtureEntry[] {
  return JSON.parse(Deno.readTextFileSync(new URL(`${kind}/manifest.json`, fixtures)));
}

/** Reads a binary fixture. */
export function fixtureBytes(kind: "tls" | "http", file: string): Uint8Array {
  return Deno.readFileSync(new URL(`${kind}/${file}`, fixtures));
}

/** Parses hex, ignoring whitespace. */
export function fromHex(s: string): Uint8Array {
  const clean = s.replace(/\s+/g, "");
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Formats bytes as lower-case hex. */
export function toHex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** Reads a QUIC fixture: one hex datagram per line. */
export function quicDatagrams(file: string): Uint8Array[] {
  return Deno.readTextFileSync(new URL(`quic/${file}`, fixtures)).trim().split("\n").map(fromHex);
}

/** A small seeded PRNG (mulberry32), so fuzz failures reproduce. */
export const rng: (seed: number) => () => number = prng;

/** Copies `b` with 1..4 random bytes replaced, or truncated/extended at random. */
export function mutate(b: Uint8Array, rand: () => number): Uint8Array {
  const kind = Math.floor(rand() * 4);
  if (kind === 0 && b.length > 0) return b.slice(0, Math.floor(rand() * b.length));
  if (kind === 1) {
    const extra = new Uint8Array(Math.floor(rand() * 64));
    for (let i = 0; i < extra.length; i++) extra[i] = Math.floor(rand() * 256);
    const out = new Uint8Array(b.length + extra.length);
    out.set(b);
    out.set(extra, b.length);
    return out;
  }
  const out = b.slice();
  const n = 1 + Math.floor(rand() * 4);
  for (let i = 0; i < n && out.length > 0; i++) {
    out[Math.floor(rand() * out.length)] = Math.floor(rand() * 256);
  }
  return out;
}

/** Random bytes of a random length below `max`. */
export function randomBytes(rand: () => number, max: number): Uint8Array {
  const out = new Uint8Array(Math.floor(rand() * max));
  for (let i = 0; i < out.length; i++) out[i] = Math.floor(rand() * 256);
  return out;
}
