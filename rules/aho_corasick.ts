/**
 * Aho-Corasick automaton over all `domain_keyword` values at once: one pass
 * over the domain reports every keyword it contains.
 *
 * The automaton is a dense DFA over a compact alphabet: every character that
 * occurs in some keyword gets a class 1..A; all other characters share class
 * 0, which always leads back to the root (no keyword contains them).
 *
 * @module
 */

/** A compiled keyword automaton. */
export class AhoCorasick {
  readonly #ascii = new Int32Array(128);
  readonly #other = new Map<number, number>();
  readonly #width: number;
  readonly #delta: Int32Array;
  /** Keyword index ending exactly at a state, or -1. */
  readonly #out: Int32Array;
  /** Nearest proper suffix state that ends a keyword, or 0 (root: none). */
  readonly #dict: Int32Array;
  /** Number of keywords. */
  readonly size: number;

  /** Builds the automaton; keyword `i` is reported as `i`. Duplicates must be removed first. */
  constructor(keywords: readonly string[]) {
    this.size = keywords.length;
    let classes = 0;
    const classOf = (c: number): number => {
      if (c < 128) {
        if (this.#ascii[c] === 0) this.#ascii[c] = ++classes;
        return this.#ascii[c]!;
      }
      let k = this.#other.get(c);
      if (k === undefined) this.#other.set(c, k = ++classes);
      return k;
    };
    // Trie first, with sparse children.
    const children: Map<number, number>[] = [new Map()];
    const out: number[] = [-1];
    keywords.forEach((kw, idx) => {
      let s = 0;
      for (let i = 0; i < kw.length; i++) {
        const k = classOf(kw.charCodeAt(i));
        let next = children[s]!.get(k);
        if (next === undefined) {
          next = children.length;
          children.push(new Map());
          out.push(-1);
          children[s]!.set(k, next);
        }
        s = next;
      }
      out[s] = idx;
    });
    const n = children.length;
    const width = classes + 1;
    this.#width = width;
    const delta = new Int32Array(n * width);
    const fail = new Int32Array(n);
    const dict = new Int32Array(n);
    // BFS: fill the dense transition table with failure transitions folded in.
    const queue = new Int32Array(n);
    let head = 0, tail = 0;
    for (const [k, t] of children[0]!) {
      delta[k] = t;
      queue[tail++] = t;
    }
    while (head < tail) {
      const s = queue[head++]!;
      const f = fail[s]!;
      dict[s] = out[f]! >= 0 ? f : dict[f]!;
      for (let k = 0; k < width; k++) delta[s * width + k] = delta[f * width + k]!;
      for (const [k, t] of children[s]!) {
        delta[s * width + k] = t;
        fail[t] = s === 0 ? 0 : delta[f * width + k]!;
        queue[tail++] = t;
      }
    }
    this.#delta = delta;
    this.#out = Int32Array.from(out);
    this.#dict = dict;
  }

  /** Calls `hit(keywordIndex)` for every keyword occurring in `text` (repeats possible). */
  scan(text: string, hit: (keyword: number) => void): void {
    if (this.size === 0) return;
    const delta = this.#delta, width = this.#width, out = this.#out, dict = this.#dict;
    const ascii = this.#ascii;
    let s = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      const k = c < 128 ? ascii[c]! : (this.#other.get(c) ?? 0);
      s = delta[s * width + k]!;
      let t = out[s]! >= 0 ? s : dict[s]!;
      while (t !== 0) {
        hit(out[t]!);
        t = dict[t]!;
      }
    }
  }
}
