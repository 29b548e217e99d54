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
 * The frozen index is plain data ({@linkcode DomainImage}: typed arrays and
 * a few regex sources), so it can be built on a worker thread and handed to
 * the data-plane thread without copying.
 *
 * @module
 */

import { AhoCorasick, type AhoCorasickImage } from "./aho_corasick.ts";
import { KeyedListsBuilder, type PostingLists, PostingListsBuilder } from "./posting_lists.ts";
import { shapeOf } from "../core/keep_shape.ts";
import { giveInts, takeInts } from "./spare.ts";

/** Domain items of one rule node, to add to the index. */
export interface DomainItems {
  readonly domain: readonly string[];
  readonly domain_suffix: readonly string[];
  readonly domain_keyword: readonly string[];
  readonly domain_regex: readonly string[];
}

/** The frozen domain index as plain data (see {@linkcode DomainIndex}). */
export interface DomainImage {
  /** Name hash table: slot i holds `[2i]` = hash, `[2i+1]` = record offset + 1 (0 = empty). */
  readonly slots: Int32Array;
  /**
   * One record per name, all a hit needs in one place: at offset o, `[o]` =
   * name length, `[o + 1 + kind]` = list id (≥ 0), none (-1) or one node n
   * as -2 - n, then the name's UTF-16 code units two per element (read
   * through a `Uint16Array` view from element o + 4).
   */
  readonly records: Int32Array;
  readonly nameCount: number;
  readonly hasSuffix: boolean;
  readonly keywords: AhoCorasickImage;
  /** List id per keyword. */
  readonly kwList: Int32Array;
  /** Distinct `domain_regex` sources and their list ids. */
  readonly regexes: readonly string[];
  readonly regexList: Int32Array;
  readonly lists: PostingLists;
}

/** Builds a {@linkcode DomainIndex}. */
export class DomainIndexBuilder {
  readonly #lists: PostingListsBuilder;
  readonly #names: NameTableBuilder;
  /**
   * Per name entry e, at 3e + kind: the list id of its exact (`domain`),
   * suffix (`x.com`) and dot-suffix (`.x.com`) items; -1 none.
   */
  #entryLists: Int32Array;
  #entryCount = 0;
  readonly #keywords: KeyedListsBuilder;
  readonly #regexes: KeyedListsBuilder;
  #built = false;

  /**
   * `expectedNames` (and their total length, `expectedChars`) presize the
   * tables (hints; they grow as needed).
   */
  constructor(expectedNames = 0, expectedChars = 0) {
    this.#lists = new PostingListsBuilder(expectedNames);
    this.#names = new NameTableBuilder(expectedNames, expectedChars);
    this.#entryLists = takeInts(3 * Math.max(1024, expectedNames));
    this.#keywords = new KeyedListsBuilder(this.#lists);
    this.#regexes = new KeyedListsBuilder(this.#lists);
  }

  #addTo(name: string, kind: number, node: number): void {
    this.#addEntry(this.#names.intern(name), kind, node);
  }

  #addEntry(e: number, kind: number, node: number): void {
    let lists = this.#entryLists;
    if (3 * e + 3 > lists.length) {
      const grown = takeInts(lists.length * 2);
      grown.set(lists);
      giveInts(lists);
      this.#entryLists = lists = grown;
    }
    if (e === this.#entryCount) { // a new name: no lists yet
      lists[3 * e] = lists[3 * e + 1] = lists[3 * e + 2] = -1;
      this.#entryCount++;
    }
    let id = lists[3 * e + kind]!;
    if (id < 0) lists[3 * e + kind] = id = this.#lists.newList();
    this.#lists.add(id, node);
  }

  /** Adds the items of rule node `node`. */
  add(node: number, items: DomainItems): void {
    for (const d of items.domain) this.addExact(node, d);
    for (const s of items.domain_suffix) this.addSuffix(node, s);
    for (const k of items.domain_keyword) this.addKeyword(node, k);
    for (const r of items.domain_regex) this.#regexes.add(r, node);
  }

  /** Adds one `domain` value (lower-case) of rule node `node`. */
  addExact(node: number, name: string): void {
    this.#addTo(name, EXACT, node);
  }

  /** Adds one `domain_suffix` value (lower-case; `.x.com` = subdomains only) of `node`. */
  addSuffix(node: number, suffix: string): void {
    if (suffix.charCodeAt(0) === 46 /* . */) this.#addTo(suffix.slice(1), DOT, node);
    else this.#addTo(suffix, SUFFIX, node);
  }

  /** Adds one `domain_keyword` value (lower-case) of rule node `node`. */
  addKeyword(node: number, keyword: string): void {
    this.#keywords.add(keyword, node);
  }

  /** {@linkcode addExact} of the ASCII name `b[from..end)`. */
  addExactBytes(node: number, b: Uint8Array, from: number, end: number): void {
    this.#addEntry(this.#names.internBytes(b, from, end), EXACT, node);
  }

  /** {@linkcode addSuffix} of the ASCII suffix `b[from..end)`. */
  addSuffixBytes(node: number, b: Uint8Array, from: number, end: number): void {
    if (b[from] === 46 /* . */) {
      this.#addEntry(this.#names.internBytes(b, from + 1, end), DOT, node);
    } else this.#addEntry(this.#names.internBytes(b, from, end), SUFFIX, node);
  }

  /** {@linkcode addKeyword} of the ASCII keyword `b[from..end)`. */
  addKeywordBytes(node: number, b: Uint8Array, from: number, end: number): void {
    this.#keywords.add(asciiDecoder.decode(b.subarray(from, end)), node);
  }

  /** Freezes the index. */
  build(): DomainIndex {
    return new DomainIndex(this.buildImage());
  }

  /** Freezes the index as plain data (for {@linkcode DomainIndex}, possibly on another thread). */
  buildImage(): DomainImage {
    // Its scratch goes to the next compile below (`spare.ts`): a second build would read it.
    if (this.#built) throw new Error("DomainIndexBuilder built twice");
    this.#built = true;
    const lists = this.#lists.build();
    const names = this.#names, nameCount = names.count;
    const entries = this.#entryLists.slice(0, 3 * nameCount);
    const hasSuffix = inlineSingles(entries, lists);
    const keywords = this.#keywords.build(), regexes = this.#regexes.build();
    const offset = new Int32Array(nameCount + 1);
    recordOffsets(names.keyStart, offset);
    const records = new Int32Array(offset[nameCount]!);
    fillRecords(names.keyStart, names.chars, entries, offset, records);
    const slots = names.slots.slice();
    slotsToRecords(slots, offset);
    // This builder is done: its scratch goes to the next compile (`spare.ts`).
    giveInts(this.#entryLists);
    names.release();
    return {
      slots,
      records,
      nameCount,
      hasSuffix,
      keywords: new AhoCorasick([...keywords.keys()]).image,
      kwList: Int32Array.from(keywords.values()),
      regexes: [...regexes.keys()],
      regexList: Int32Array.from(regexes.values()),
      lists,
    };
  }
}
shapeOf(() => new DomainIndexBuilder());

const EXACT = 0, SUFFIX = 1, DOT = 2;
/** Decodes keyword bytes (ASCII, so one char per byte; no spread of a long keyword into arguments). */
const asciiDecoder = new TextDecoder();
/** Elements before a record's characters: length and three list ids. */
const REC_HEAD = 4;

// The freezing steps, one loop per function (see `posting_lists.ts`).

/**
 * Inlines one-node lists into the entry table as -2 - node (saves two
 * lookups per hit); says whether any suffix entry exists.
 */
function inlineSingles(entries: Int32Array, lists: PostingLists): boolean {
  const { start, data } = lists;
  let hasSuffix = false;
  for (let i = 0; i < entries.length; i++) {
    const id = entries[i]!;
    if (id < 0) continue;
    if (i % 3 !== EXACT) hasSuffix = true;
    if (start[id + 1]! - start[id]! === 1) entries[i] = -2 - data[start[id]!]!;
  }
  return hasSuffix;
}

/** `offset[e]`: where entry e's record starts; `offset[count]`: the records' total length. */
function recordOffsets(keyStart: Int32Array, offset: Int32Array): void {
  let total = 0;
  for (let e = 0; e + 1 < offset.length; e++) {
    offset[e] = total;
    total += REC_HEAD + ((keyStart[e + 1]! - keyStart[e]! + 1) >> 1);
  }
  offset[offset.length - 1] = total;
}

/** Writes every entry's record: name length, its three list ids, its code units. */
function fillRecords(
  keyStart: Int32Array,
  arena: Uint16Array,
  entries: Int32Array,
  offset: Int32Array,
  records: Int32Array,
): void {
  const chars = new Uint16Array(records.buffer);
  for (let e = 0; e + 1 < offset.length; e++) {
    const from = keyStart[e]!, len = keyStart[e + 1]! - from, o = offset[e]!;
    records[o] = len;
    records[o + 1] = entries[3 * e]!;
    records[o + 2] = entries[3 * e + 1]!;
    records[o + 3] = entries[3 * e + 2]!;
    const at = 2 * (o + REC_HEAD);
    for (let j = 0; j < len; j++) chars[at + j] = arena[from + j]!;
  }
}

/** Hash slots from entry + 1 to record offset + 1. */
function slotsToRecords(slots: Int32Array, offset: Int32Array): void {
  for (let i = 1; i < slots.length; i += 2) {
    if (slots[i] !== 0) slots[i] = offset[slots[i]! - 1]! + 1;
  }
}

/** Spreads a hash over table slots. */
function slotOf(h: number, mask: number): number {
  return (Math.imul(h ^ (h >>> 16), 0x45d9f3b) >>> 0) & mask;
}

/**
 * Open-addressing hash table of names keyed by a hash computed from the end
 * of the name (`h = h * 31 + code`, the one `DomainIndex.lookupNames` rolls
 * over a flow's name, so every parent name's hash comes for free): slot i
 * holds `[2i]` = hash, `[2i+1]` = entry + 1 (0 = empty). Entries are
 * numbered in insertion order; their names are kept as UTF-16 code units in
 * one arena (entry e is `chars[keyStart[e] .. keyStart[e + 1])`), so names
 * read straight from a file's bytes need no string. Frozen into
 * {@linkcode DomainImage} form by the index builder.
 */
class NameTableBuilder {
  slots: Int32Array;
  mask: number;
  /** Code units of every name, back to back. */
  chars: Uint16Array;
  /** Entry e's name starts at `keyStart[e]`; `keyStart[count]` is the arena's used length. */
  keyStart: Int32Array;
  count = 0;

  /**
   * Room for `expected` names of `chars` code units in all before the first
   * growth (growing by doubling allocates twice what it keeps, and a large
   * compile's allocations are what trigger its garbage collections).
   */
  constructor(expected: number, chars: number) {
    let size = 1024;
    while (size < 2 * expected) size *= 2;
    this.mask = size - 1;
    this.slots = takeInts(2 * size);
    this.chars = new Uint16Array(Math.max(16384, chars));
    this.keyStart = takeInts(Math.max(1025, expected + 1));
  }

  /** Entry of `name`, adding it when new. */
  intern(name: string): number {
    const at = this.#reserve(name.length);
    for (let i = 0; i < name.length; i++) this.chars[at + i] = name.charCodeAt(i);
    return this.#internTail(name.length);
  }

  /** Entry of the name `b[from..end)` (one byte per code unit), adding it when new. */
  internBytes(b: Uint8Array, from: number, end: number): number {
    const at = this.#reserve(end - from), chars = this.chars;
    // A loop, not `set(subarray)`: names are short, and a view per name is garbage.
    for (let i = from; i < end; i++) chars[at + i - from] = b[i]!;
    return this.#internTail(end - from);
  }

  /**
   * Entry of the name of `len` code units just written past the arena's end:
   * an existing entry's (the written copy is dropped) or a new one.
   */
  #internTail(len: number): number {
    const chars = this.chars, at = this.keyStart[this.count]!;
    let h = 0;
    for (let i = at + len - 1; i >= at; i--) h = (Math.imul(h, 31) + chars[i]!) | 0;
    const slots = this.slots, mask = this.mask;
    for (let i = slotOf(h, mask);; i = (i + 1) & mask) {
      const slot = slots[2 * i + 1]!;
      if (slot === 0) break;
      if (slots[2 * i] !== h) continue;
      const k = this.keyStart[slot - 1]!;
      if (this.keyStart[slot]! - k !== len) continue;
      let j = 0;
      while (j < len && chars[k + j] === chars[at + j]) j++;
      if (j === len) return slot - 1;
    }
    return this.#commit(h, len);
  }

  /** Makes room for a new name of `len` code units; returns where it goes. */
  #reserve(len: number): number {
    const at = this.keyStart[this.count]!;
    if (at + len > this.chars.length) {
      const grown = new Uint16Array(Math.max(2 * this.chars.length, at + len));
      grown.set(this.chars.subarray(0, at));
      this.chars = grown;
    }
    if (this.count + 2 > this.keyStart.length) {
      const grown = takeInts(2 * this.keyStart.length);
      grown.set(this.keyStart);
      giveInts(this.keyStart);
      this.keyStart = grown;
    }
    return at;
  }

  /** Adds the name just written at the arena's end (`len` units, hash `h`) as a new entry. */
  #commit(h: number, len: number): number {
    if (this.count * 2 >= this.mask) this.#grow();
    const e = this.count++;
    this.keyStart[e + 1] = this.keyStart[e]! + len;
    this.#place(h, e + 1);
    return e;
  }

  #place(h: number, entryPlusOne: number): void {
    let i = slotOf(h, this.mask);
    while (this.slots[2 * i + 1] !== 0) i = (i + 1) & this.mask;
    this.slots[2 * i] = h;
    this.slots[2 * i + 1] = entryPlusOne;
  }

  #grow(): void {
    const old = this.slots;
    this.mask = this.mask * 2 + 1;
    this.slots = takeInts(2 * (this.mask + 1));
    for (let i = 0; i < old.length; i += 2) if (old[i + 1] !== 0) this.#place(old[i]!, old[i + 1]!);
    giveInts(old);
  }

  /** Gives the tables to the next compile (`spare.ts`); the builder is not used after. */
  release(): void {
    giveInts(this.slots);
    giveInts(this.keyStart);
  }
}
shapeOf(() => new NameTableBuilder(0, 0));

/**
 * Frozen domain index; see the module doc. Names (domains and suffixes) sit
 * in an open-addressing hash table keyed by a hash computed from the end of
 * the name, so one backwards pass over a flow's name yields the hash of
 * every parent name at its label boundary: no substrings are allocated.
 */
export class DomainIndex {
  readonly #slots: Int32Array;
  readonly #mask: number;
  /** See {@linkcode DomainImage.records}; `#chars` is the same memory as code units. */
  readonly #records: Int32Array;
  readonly #chars: Uint16Array;
  readonly #nameCount: number;
  readonly #hasSuffix: boolean;
  readonly #ac: AhoCorasick;
  readonly #kwList: Int32Array;
  readonly #regexes: RegExp[];
  readonly #regexList: Int32Array;
  readonly #lists: PostingLists;
  #emit: (node: number) => void = () => {};
  readonly #onKeyword = (k: number) => this.#emitList(this.#kwList[k]!);
  /** The index as plain data. */
  readonly image: DomainImage;

  /** Wraps an image from {@linkcode DomainIndexBuilder.buildImage} (no copy). */
  constructor(img: DomainImage) {
    this.image = img;
    this.#slots = img.slots;
    this.#mask = (img.slots.length >> 1) - 1;
    this.#records = img.records;
    this.#chars = new Uint16Array(
      img.records.buffer,
      img.records.byteOffset,
      2 * img.records.length,
    );
    this.#nameCount = img.nameCount;
    this.#hasSuffix = img.hasSuffix;
    this.#ac = new AhoCorasick(img.keywords);
    this.#kwList = img.kwList;
    this.#regexes = img.regexes.map((r) => new RegExp(r));
    this.#regexList = img.regexList;
    this.#lists = img.lists;
  }

  /** Record offset of the name equal to `name.slice(from)` (whose hash is `h`), or -1. */
  #find(name: string, from: number, h: number): number {
    const slots = this.#slots, mask = this.#mask, len = name.length - from;
    for (let i = slotOf(h, mask);; i = (i + 1) & mask) {
      const slot = slots[2 * i + 1]!;
      if (slot === 0) return -1;
      if (slots[2 * i] !== h) continue;
      const o = slot - 1;
      if (this.#records[o] !== len) continue;
      const chars = this.#chars, at = 2 * (o + REC_HEAD) - from;
      let j = from;
      while (j < name.length && chars[at + j] === name.charCodeAt(j)) j++;
      if (j === name.length) return o;
    }
  }

  /** True when no rule has a domain item. */
  get empty(): boolean {
    return this.#nameCount === 0 && this.#ac.size === 0 && this.#regexes.length === 0;
  }

  /** Emits list `id`: a list id, -1 (none), or -2 - node (a single node). */
  #emitList(id: number): void {
    if (id < 0) {
      if (id !== -1) this.#emit(-2 - id);
      return;
    }
    const { start, data } = this.#lists;
    const end = start[id + 1]!;
    for (let i = start[id]!; i < end; i++) this.#emit(data[i]!);
  }

  /**
   * Calls `emit(node)` for each rule node with a domain item matching
   * `name` (a node may be reported more than once): {@linkcode lookupNames}
   * then {@linkcode lookupPatterns}.
   */
  lookup(name: string, emit: (node: number) => void): void {
    this.lookupNames(name, emit);
    this.lookupPatterns(name, emit);
  }

  /** True when some rule has a `domain_keyword` or `domain_regex` item. */
  get hasPatterns(): boolean {
    return this.#ac.size !== 0 || this.#regexes.length !== 0;
  }

  /** Like {@linkcode lookup}, for the `domain` and `domain_suffix` items only. */
  lookupNames(name: string, emit: (node: number) => void): void {
    this.#emit = emit;
    if (this.#nameCount !== 0) {
      const rec = this.#records;
      // Backwards over the name; at each label start, look up the name from there on.
      let h = 0;
      for (let i = name.length - 1; i >= 0; i--) {
        h = (Math.imul(h, 31) + name.charCodeAt(i)) | 0;
        if (i === 0) {
          const o = this.#find(name, 0, h);
          if (o >= 0) {
            this.#emitList(rec[o + 1 + EXACT]!);
            this.#emitList(rec[o + 1 + SUFFIX]!);
          }
        } else if (this.#hasSuffix && name.charCodeAt(i - 1) === 46 /* . */) {
          const o = this.#find(name, i, h);
          if (o >= 0) {
            this.#emitList(rec[o + 1 + SUFFIX]!);
            this.#emitList(rec[o + 1 + DOT]!);
          }
        }
      }
    }
  }

  /** Like {@linkcode lookup}, for the `domain_keyword` and `domain_regex` items only. */
  lookupPatterns(name: string, emit: (node: number) => void): void {
    this.#emit = emit;
    this.#ac.scan(name, this.#onKeyword);
    for (let i = 0; i < this.#regexes.length; i++) {
      if (this.#regexes[i]!.test(name)) this.#emitList(this.#regexList[i]!);
    }
  }
}
