import assert from "node:assert/strict";
import { AhoCorasick } from "./aho_corasick.ts";

function found(ac: AhoCorasick, text: string): number[] {
  const out = new Set<number>();
  ac.scan(text, (k) => out.add(k));
  return [...out].sort((a, b) => a - b);
}

Deno.test("AhoCorasick.scan() reports every keyword contained in the text", () => {
  const ac = new AhoCorasick(["he", "she", "his", "hers", "goo"]);
  assert.deepEqual(found(ac, "ushers"), [0, 1, 3]);
  assert.deepEqual(found(ac, "google.com"), [4]);
  assert.deepEqual(found(ac, "example.com"), []);
});

Deno.test("AhoCorasick.scan() finds overlapping and suffix keywords via failure links", () => {
  const ac = new AhoCorasick(["abcd", "bc", "c", "aab"]);
  assert.deepEqual(found(ac, "aabcd"), [0, 1, 2, 3]);
  assert.deepEqual(found(ac, "xbcx"), [1, 2]);
});

Deno.test("AhoCorasick.scan() handles characters outside every keyword and non-ASCII", () => {
  const ac = new AhoCorasick(["ü", "a-b"]);
  assert.deepEqual(found(ac, "zzzüzz"), [0]);
  assert.deepEqual(found(ac, "x.a-b.y"), [1]);
  assert.deepEqual(found(ac, "a_b"), []);
});

Deno.test("AhoCorasick agrees with String.includes on random keyword sets", () => {
  let seed = 7;
  const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) % 2147483648) % n;
  const alpha = "abc.-";
  const word = (max: number) =>
    Array.from({ length: 1 + rnd(max) }, () => alpha[rnd(alpha.length)]).join("");
  for (let round = 0; round < 200; round++) {
    const kws = [...new Set(Array.from({ length: 1 + rnd(8) }, () => word(4)))];
    const ac = new AhoCorasick(kws);
    for (let t = 0; t < 20; t++) {
      const text = word(12);
      const want = kws.map((k, i) => text.includes(k) ? i : -1).filter((i) => i >= 0);
      assert.deepEqual(found(ac, text), want, `${JSON.stringify(kws)} in ${text}`);
    }
  }
});
