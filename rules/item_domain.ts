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
  readonly #exact = new KeyedListsBuilder(this.#lists);
  /** `x.com`: the name equals the key or ends with `.key`. */
  readonly #suffix = new KeyedListsBuilder(this.#lists);
  /** `.x.com`: the name ends with `.key` (key without the dot). */
  readonly #dotSuffix = new KeyedListsBuilder(this.#lists);
  readonly #keywords = new KeyedListsBuilder(this.#lists);
  readonly #regexes = new KeyedListsBuilder(this.#lists);

  /** Adds the items of rule node `node`. */
  add(node: number, items: DomainItems): void {
    for (const d of items.domain) this.#exact.add(d, node);
    for (const s of items.domain_suffix) {
      if (s.startsWith(".")) this.#dotSuffix.add(s.slice(1), node);
      else this.#suffix.add(s, node);
    }
    for (const k of items.domain_keyword) this.#keywords.add(k, node);
    for (const r of items.domain_regex) this.#regexes.add(r, node);
  }

  /** Freezes the index. */
  build(): DomainIndex {
    return new DomainIndex(
      this.#exact.build(),
      this.#suffix.build(),
      this.#dotSuffix.build(),
      this.#keywords.build(),
      this.#regexes.build(),
      this.#lists.build(),
    );
  }
}

/** Frozen domain index; see the module doc. */
export class DomainIndex {
  readonly #exact: Map<string, number>;
  readonly #suffix: Map<string, number>;
  readonly #dotSuffix: Map<string, number>;
  readonly #ac: AhoCorasick;
  readonly #kwList: Int32Array;
  readonly #regexes: RegExp[];
  readonly #regexList: Int32Array;
  readonly #lists: PostingLists;
  #emit: (node: number) => void = () => {};
  readonly #onKeyword = (k: number) => this.#emitList(this.#kwList[k]!);

  /** Use {@linkcode DomainIndexBuilder}. */
  constructor(
    exact: Map<string, number>,
    suffix: Map<string, number>,
    dotSuffix: Map<string, number>,
    keywords: Map<string, number>,
    regexes: Map<string, number>,
    lists: PostingLists,
  ) {
    this.#exact = exact;
    this.#suffix = suffix;
    this.#dotSuffix = dotSuffix;
    this.#ac = new AhoCorasick([...keywords.keys()]);
    this.#kwList = Int32Array.from(keywords.values());
    this.#regexes = [...regexes.keys()].map((r) => new RegExp(r));
    this.#regexList = Int32Array.from(regexes.values());
    this.#lists = lists;
  }

  /** True when no rule has a domain item. */
  get empty(): boolean {
    return this.#exact.size === 0 && this.#suffix.size === 0 && this.#dotSuffix.size === 0 &&
      this.#ac.size === 0 && this.#regexes.length === 0;
  }

  #emitList(id: number): void {
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
    let id = this.#exact.get(name);
    if (id !== undefined) this.#emitList(id);
    id = this.#suffix.get(name);
    if (id !== undefined) this.#emitList(id);
    if (this.#suffix.size !== 0 || this.#dotSuffix.size !== 0) {
      for (let dot = name.indexOf("."); dot >= 0; dot = name.indexOf(".", dot + 1)) {
        const rest = name.slice(dot + 1);
        id = this.#suffix.get(rest);
        if (id !== undefined) this.#emitList(id);
        id = this.#dotSuffix.get(rest);
        if (id !== undefined) this.#emitList(id);
      }
    }
    this.#ac.scan(name, this.#onKeyword);
    for (let i = 0; i < this.#regexes.length; i++) {
      if (this.#regexes[i]!.test(name)) this.#emitList(this.#regexList[i]!);
    }
  }
}
