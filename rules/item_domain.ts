/**
 * One index over the domain items of every rule: `domain` (exact),
 * `domain_suffix`, `domain_keyword` and `domain_regex`. A lookup reports the
 * ids of all rule nodes that have a domain item matching the name.
 *
 * - `domain`: exact, via a hash map.
 * - `domain_suffix: "x.com"`: `x.com` and any subdomain; `".x.com"`:
 *   subdomains only. Looked up per label boundary of the name, so cost grows
 *   with the number of labels, not with the number of rules.
 * - `domain_keyword`: substring, one Aho-Corasick pass for all keywords.
 * - `domain_regex`: each distinct pattern tested once.
 *
 * @module
 */

import { AhoCorasick } from "./aho_corasick.ts";
import { KeyedListsBuilder, type PostingLists, PostingListsBuilder } from "./posting_lists.ts";

/** Domain items of one rule node, to add to the index. */
export interface DomainItems {
  readonly domain: readonly string[];
  readonly domain_suffix: readonly string[];
  readonly domain_keyword: readonly string[];
  readonly domain_regex: readonly string[];
}

/** Builds a {@linkcode DomainIndex}. */
export class DomainIndexBuilder {
  readonly #lists = new PostingListsBuilder();
  /** name → entry; entry e has lists exact[e], suffix[e] ("x.com"), dot[e] (".x.com"). */
  readonly #names = new Map<string, number>();
  readonly #exact: number[] = [];
  readonly #suffix: number[] = [];
  readonly #dot: number[] = [];
  readonly #keywords = new KeyedListsBuilder(this.#lists);
  readonly #regexes = new KeyedListsBuilder(this.#lists);

  #entry(name: string): number {
    let e = this.#names.get(name);
    if (e === undefined) {
      e = this.#exact.length;
      this.#names.set(name, e);
      this.#exact.push(-1);
      this.#suffix.push(-1);
      this.#dot.push(-1);
    }
    return e;
  }

  #addTo(lists: number[], e: number, node: number): void {
    if (lists[e]! < 0) lists[e] = this.#lists.newList();
    this.#lists.add(lists[e]!, node);
  }

  /** Adds the items of rule node `node`. */
  add(node: number, items: DomainItems): void {
    for (const d of items.domain) this.#addTo(this.#exact, this.#entry(d), node);
    for (const s of items.domain_suffix) {
      if (s.startsWith(".")) this.#addTo(this.#dot, this.#entry(s.slice(1)), node);
      else this.#addTo(this.#suffix, this.#entry(s), node);
    }
    for (const k of items.domain_keyword) this.#keywords.add(k, node);
    for (const r of items.domain_regex) this.#regexes.add(r, node);
  }

  /** Freezes the index. */
  build(): DomainIndex {
    return new DomainIndex(
      this.#names,
      Int32Array.from(this.#exact),
      Int32Array.from(this.#suffix),
      Int32Array.from(this.#dot),
      this.#keywords.build(),
      this.#regexes.build(),
      this.#lists.build(),
    );
  }
}

/** Hash of `s[from..]`, computed from the end (so every suffix hash comes for free). */
function suffixHash(s: string, from: number): number {
  let h = 0;
  for (let i = s.length - 1; i >= from; i--) h = (Math.imul(h, 31) + s.charCodeAt(i)) | 0;
  return h;
}

/** Spreads a hash over table slots. */
function slotOf(h: number, mask: number): number {
  return (Math.imul(h ^ (h >>> 16), 0x45d9f3b) >>> 0) & mask;
}

/**
 * Frozen domain index; see the module doc. Names (domains and suffixes) sit
 * in an open-addressing hash table keyed by a hash computed from the end of
 * the name, so one backwards pass over a flow's name yields the hash of
 * every parent name at its label boundary: no substrings are allocated.
 */
export class DomainIndex {
  readonly #keys: string[];
  readonly #hashes: Int32Array;
  /** entry + 1, 0 = empty slot. */
  readonly #slots: Int32Array;
  readonly #mask: number;
  readonly #exact: Int32Array;
  readonly #suffix: Int32Array;
  readonly #dot: Int32Array;
  readonly #hasSuffix: boolean;
  readonly #ac: AhoCorasick;
  readonly #kwList: Int32Array;
  readonly #regexes: RegExp[];
  readonly #regexList: Int32Array;
  readonly #lists: PostingLists;
  #emit: (node: number) => void = () => {};
  readonly #onKeyword = (k: number) => this.#emitList(this.#kwList[k]!);

  /** Use {@linkcode DomainIndexBuilder}. */
  constructor(
    names: Map<string, number>,
    exact: Int32Array,
    suffix: Int32Array,
    dot: Int32Array,
    keywords: Map<string, number>,
    regexes: Map<string, number>,
    lists: PostingLists,
  ) {
    this.#keys = [...names.keys()];
    this.#hashes = Int32Array.from(this.#keys, (k) => suffixHash(k, 0));
    let size = 16;
    while (size < this.#keys.length * 2) size *= 2;
    this.#mask = size - 1;
    this.#slots = new Int32Array(size);
    this.#keys.forEach((_, e) => {
      let i = slotOf(this.#hashes[e]!, this.#mask);
      while (this.#slots[i] !== 0) i = (i + 1) & this.#mask;
      this.#slots[i] = e + 1;
    });
    this.#exact = exact;
    this.#suffix = suffix;
    this.#dot = dot;
    this.#hasSuffix = suffix.some((x) => x >= 0) || dot.some((x) => x >= 0);
    this.#ac = new AhoCorasick([...keywords.keys()]);
    this.#kwList = Int32Array.from(keywords.values());
    this.#regexes = [...regexes.keys()].map((r) => new RegExp(r));
    this.#regexList = Int32Array.from(regexes.values());
    this.#lists = lists;
  }

  /** True when no rule has a domain item. */
  get empty(): boolean {
    return this.#keys.length === 0 && this.#ac.size === 0 && this.#regexes.length === 0;
  }

  /** Entry whose key equals `name.slice(from)` (hash `h`), or -1. */
  #find(name: string, from: number, h: number): number {
    const len = name.length - from;
    for (let i = slotOf(h, this.#mask);; i = (i + 1) & this.#mask) {
      const slot = this.#slots[i]!;
      if (slot === 0) return -1;
      const e = slot - 1;
      if (this.#hashes[e] === h) {
        const key = this.#keys[e]!;
        if (key.length === len && name.endsWith(key)) return e;
      }
    }
  }

  #emitList(id: number): void {
    if (id < 0) return;
    const { start, data } = this.#lists;
    const end = start[id + 1]!;
    for (let i = start[id]!; i < end; i++) this.#emit(data[i]!);
  }

  /**
   * Calls `emit(node)` for each rule node with a domain item matching
   * `name` (a node may be reported more than once).
   */
  lookup(name: string, emit: (node: number) => void): void {
    this.#emit = emit;
    if (this.#keys.length !== 0) {
      // Backwards over the name; at each label start, look up the name from there on.
      let h = 0;
      for (let i = name.length - 1; i >= 0; i--) {
        h = (Math.imul(h, 31) + name.charCodeAt(i)) | 0;
        if (i === 0) {
          const e = this.#find(name, 0, h);
          if (e >= 0) {
            this.#emitList(this.#exact[e]!);
            this.#emitList(this.#suffix[e]!);
          }
        } else if (this.#hasSuffix && name.charCodeAt(i - 1) === 46 /* . */) {
          const e = this.#find(name, i, h);
          if (e >= 0) {
            this.#emitList(this.#suffix[e]!);
            this.#emitList(this.#dot[e]!);
          }
        }
      }
    }
    this.#ac.scan(name, this.#onKeyword);
    for (let i = 0; i < this.#regexes.length; i++) {
      if (this.#regexes[i]!.test(name)) this.#emitList(this.#regexList[i]!);
    }
  }
}
