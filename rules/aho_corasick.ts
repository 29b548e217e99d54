/**
 * Aho-Corasick automaton over all `domain_keyword` values at once: one pass
 * over the domain reports every keyword it contains.
 *
 * The automaton is a dense DFA over a compact alphabet: every character that
 * occurs in some keyword gets a class 1..A; all other characters share class
 * 0, which always leads back to the root (no keyword contains them).
 *
 * The compiled automaton is a handful of typed arrays
 * ({@linkcode AhoCorasickImage}), so it can be built on one thread and
 * handed to another without copying.
 *
 * @module
 */

import { shapeOf } from "../core/keep_shape.ts";

/** The compiled automaton as plain data (typed arrays can be transferred between threads). */
export interface AhoCorasickImage {
  /** Class of each ASCII character (0: in no keyword). */
  readonly ascii: Int32Array;
  /** Classes of non-ASCII characters, as (char code, class) pairs. */
  readonly other: Int32Array;
  readonly width: number;
  /**
   * Transitions, row `s` at `s * width`. An entry holds the target state's
   * row offset `t * width`, or `-1 - t * width` when `t` reports a keyword
   * (its own or via a dictionary link): one load per character.
   */
  readonly delta: Int32Array;
  readonly out: Int32Array;
  readonly dict: Int32Array;
  readonly size: number;
}

/** A compiled keyword automaton. */
export class AhoCorasick {
  readonly #ascii: Int32Array;
  readonly #other = new Map<number, number>();
  readonly #width: number;
  readonly #delta: Int32Array;
  /** Keyword index ending exactly at a state, or -1. */
  readonly #out: Int32Array;
  /** Nearest proper suffix state that ends a keyword, or 0 (root: none). */
  readonly #dict: Int32Array;
  /** Number of keywords. */
  readonly size: number;
  /** The automaton as plain data. */
  readonly image: AhoCorasickImage;

  /**
   * Builds the automaton (keyword `i` is reported as `i`; duplicates must be
   * removed first), or wraps an {@linkcode AhoCorasickImage} built elsewhere.
   */
  constructor(keywords: readonly string[] | AhoCorasickImage) {
    const img = Array.isArray(keywords)
      ? buildImage(keywords as readonly string[])
      : keywords as AhoCorasickImage;
    this.#ascii = img.ascii;
    for (let i = 0; i < img.other.length; i += 2) this.#other.set(img.other[i]!, img.other[i + 1]!);
    this.#width = img.width;
    this.#delta = img.delta;
    this.#out = img.out;
    this.#dict = img.dict;
    this.size = img.size;
    this.image = img;
  }

  /** Calls `hit(keywordIndex)` for every keyword occurring in `text` (repeats possible). */
  scan(text: string, hit: (keyword: number) => void): void {
    if (this.size === 0) return;
    const delta = this.#delta, width = this.#width, out = this.#out, dict = this.#dict;
    const ascii = this.#ascii;
    let r = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      const v = delta[r + (c < 128 ? ascii[c]! : (this.#other.get(c) ?? 0))]!;
      if (v >= 0) {
        r = v;
        continue;
      }
      r = -1 - v;
      const s = r / width;
      let t = out[s]! >= 0 ? s : dict[s]!;
      while (t !== 0) {
        hit(out[t]!);
        t = dict[t]!;
      }
    }
  }
}
shapeOf(() => new AhoCorasick([]));

function buildImage(keywords: readonly string[]): AhoCorasickImage {
  const ascii = new Int32Array(128);
  const other = new Map<number, number>();
  let classes = 0, chars = 0;
  // The alphabet first (so the trie can be built straight into the dense table).
  for (const kw of keywords) {
    chars += kw.length;
    for (let i = 0; i < kw.length; i++) {
      const c = kw.charCodeAt(i);
      if (c < 128) {
        if (ascii[c] === 0) ascii[c] = ++classes;
      } else if (!other.has(c)) other.set(c, ++classes);
    }
  }
  const width = classes + 1;
  // The trie, as rows of the transition table: an entry is a child state, 0 none (the root
  // is nobody's child). Rows are added as states are: room for every state there can be
  // (one per character, and the root) when that is under 16 MiB, else grown by doubling.
  const bound = width * (chars + 1);
  let delta = new Int32Array(bound <= 1 << 22 ? bound : width * 1024);
  let n = 1;
  const outList: number[] = [-1];
  for (let idx = 0; idx < keywords.length; idx++) {
    const kw = keywords[idx]!;
    let s = 0;
    for (let i = 0; i < kw.length; i++) {
      const c = kw.charCodeAt(i);
      const at = s * width + (c < 128 ? ascii[c]! : other.get(c)!);
      let next = delta[at]!;
      if (next === 0) {
        if ((n + 1) * width > delta.length) {
          const grown = new Int32Array(Math.min(2 * delta.length, width * (chars + 1)));
          grown.set(delta);
          delta = grown;
        }
        next = n++;
        outList.push(-1);
        delta[at] = next;
      }
      s = next;
    }
    outList[s] = idx;
  }
  delta = delta.slice(0, n * width);
  const out = Int32Array.from(outList);
  const fail = new Int32Array(n);
  const dict = new Int32Array(n);
  // BFS (rows of shallower states are final before deeper ones are filled): a missing
  // child takes the failure state's transition, a child's failure state is that transition.
  const queue = new Int32Array(n);
  let head = 0, tail = 0;
  for (let k = 0; k < width; k++) {
    const t = delta[k]!;
    if (t !== 0) queue[tail++] = t;
  }
  while (head < tail) {
    const s = queue[head++]!;
    const f = fail[s]!;
    dict[s] = out[f]! >= 0 ? f : dict[f]!;
    const row = s * width, frow = f * width;
    for (let k = 0; k < width; k++) {
      const t = delta[row + k]!;
      if (t === 0) delta[row + k] = delta[frow + k]!;
      else {
        fail[t] = delta[frow + k]!;
        queue[tail++] = t;
      }
    }
  }
  // Row offsets instead of state numbers; reporting targets flagged (see AhoCorasickImage).
  for (let i = 0; i < delta.length; i++) {
    const t = delta[i]!;
    delta[i] = out[t]! >= 0 || dict[t]! !== 0 ? -1 - t * width : t * width;
  }
  return {
    ascii,
    other: Int32Array.from([...other].flat()),
    width,
    delta,
    out,
    dict,
    size: keywords.length,
  };
}
