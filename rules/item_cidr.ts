/**
 * One binary trie per address family over the `ip_cidr` (or
 * `source_ip_cidr`) items of every rule. A lookup reports every rule node
 * that has a prefix containing the address.
 *
 * Layout, for cache locality: node n is `[list, child0, child1]` at
 * `3n` in one Int32Array (child 0 = none; the root is never a child). The
 * first 16 bits are skipped with a jump table that gives, per 16-bit head
 * in use, the node at depth 16 and the posting lists met above it (both
 * side by side: one cache line per lookup), so an IPv4 lookup usually walks
 * only the bits between /16 and its longest prefix. The table holds only
 * the heads in use (found by rank in a bitmap of all 65,536): a few prefixes
 * cost a few bytes, not 512 KiB. Freezing visits only the heads in use (and
 * the ranges short prefixes cover), not all 65,536.
 *
 * The frozen index is plain data ({@linkcode CidrImage}: typed arrays), so
 * it can be built on a worker thread and handed over without copying.
 *
 * @module
 */

import type { Cidr } from "./spec.ts";
import { CIDR_V6, parseCidrInto, type ParsedCidrs } from "./cidr_text.ts";
import { type PostingLists, PostingListsBuilder } from "./posting_lists.ts";
import { shapeOf } from "../core/keep_shape.ts";
import { giveInts, takeInts } from "./spare.ts";

const JUMP_BITS = 16;

/**
 * Prefixes of /16 and longer start at a per-head subtree root (`heads`), so
 * an insert walks only the bits past 16; shorter ones go into a small trie
 * from the root that the frozen {@linkcode Trie} folds into `above`.
 */
class TrieBuilder {
  /** [list, child0, child1] per node; grown by doubling. Node 0 is the root. */
  nodes: Int32Array;
  count = 1;
  /** Node at depth 16 per 16-bit head, or 0; allocated on first use. */
  heads: Int32Array | null = null;
  /** The heads with a node in `heads`, in insertion order. */
  readonly headsInUse: number[] = [];
  /** True once a prefix shorter than 16 bits was inserted (the trie above depth 16 has lists). */
  short = false;

  /** Room for `expectedNodes` nodes before the first growth. */
  constructor(expectedNodes = 0) {
    this.nodes = takeInts(3 * Math.max(1024, expectedNodes));
    this.nodes[0] = -1;
  }

  #newNode(): number {
    if (3 * (this.count + 1) > this.nodes.length) {
      const grown = takeInts(this.nodes.length * 2);
      grown.set(this.nodes);
      giveInts(this.nodes);
      this.nodes = grown;
    }
    this.nodes[3 * this.count] = -1;
    return this.count++;
  }

  /**
   * Inserts the prefix `addr[at ..]` / `prefix`; returns its node's list id
   * (a new list of `lists` for a new node). The builder itself, not a
   * callback: a closure made per index builder changed the call target at
   * every reload, and the optimised code gave up on it ("wrong call target").
   */
  insert(addr: Uint8Array, prefix: number, lists: PostingListsBuilder, at = 0): number {
    let n = 0, i = 0;
    if (prefix >= JUMP_BITS) {
      const heads = this.heads ??= takeInts(1 << JUMP_BITS);
      const head = (addr[at]! << 8) | addr[at + 1]!;
      n = heads[head]!;
      if (n === 0) {
        heads[head] = n = this.#newNode();
        this.headsInUse.push(head);
      }
      i = JUMP_BITS;
    } else this.short = true;
    for (; i < prefix; i++) {
      const bit = (addr[at + (i >> 3)]! >> (7 - (i & 7))) & 1;
      let next = this.nodes[3 * n + 1 + bit]!;
      if (next === 0) {
        next = this.#newNode();
        this.nodes[3 * n + 1 + bit] = next;
      }
      n = next;
    }
    if (this.nodes[3 * n]! < 0) this.nodes[3 * n] = lists.newList();
    return this.nodes[3 * n]!;
  }
}
shapeOf(() => new TrieBuilder());

/** A frozen trie of one family with its jump table, as plain data. */
export interface TrieImage {
  /** [list, child0, child1] per node. */
  readonly nodes: Int32Array;
  /**
   * Per 16-bit head h in use, at r = its rank among them: `[2r]` = node at
   * depth 16, or 0 when no prefix of /16 or longer is under it; `[2r + 1]` =
   * chain of the lists met strictly above depth 16, or -1.
   */
  readonly jump: Int32Array;
  /** Bit h set when head h is in use (has an entry in `jump`): 8 KiB that stay in cache. */
  readonly used: Int32Array;
  /** Per 32-bit word w of `used`: heads in use in the words before it (for the rank). */
  readonly rank: Int32Array;
  /** Chain c = list ids chainData[chainStart[c] .. chainStart[c + 1]). */
  readonly chainStart: Int32Array;
  readonly chainData: Int32Array;
}

/** The frozen prefix index of one direction as plain data (see {@linkcode CidrIndex}). */
export interface CidrImage {
  readonly v4: TrieImage | null;
  readonly v6: TrieImage | null;
  readonly lists: PostingLists;
  /** Number of prefixes indexed. */
  readonly size: number;
}

/** Freezes a trie: folds the short-prefix part into per-head chains. */
function freezeTrie(b: TrieBuilder): TrieImage {
  // No copy while the spare capacity is under half (always, when grown by doubling).
  const inUse = 3 * b.count;
  const copied = 2 * inUse < b.nodes.length;
  const nodes = copied ? b.nodes.slice(0, inUse) : b.nodes.subarray(0, inUse);
  const used = new Int32Array((1 << JUMP_BITS) >> 5);
  for (const h of b.headsInUse) used[h >> 5]! |= 1 << (h & 31);
  // Per head under a short prefix: 1 + its chain of lists (0: none). Only when there are any.
  const above = b.short ? takeInts(1 << JUMP_BITS) : null;
  const starts: number[] = [0];
  const data: number[] = [];
  if (above !== null) foldShort(nodes, above, used, starts, data);
  const rank = new Int32Array((1 << JUMP_BITS) >> 5);
  let count = 0;
  for (let w = 0; w < used.length; w++) {
    rank[w] = count;
    count += popcount(used[w]!);
  }
  const jump = new Int32Array(2 * count);
  fillJump(b.heads, above, used, jump);
  // The builder is done: its scratch goes to the next compile (`spare.ts`).
  if (above !== null) giveInts(above);
  if (b.heads) giveInts(b.heads);
  if (copied) giveInts(b.nodes);
  return {
    nodes,
    jump,
    used,
    rank,
    chainStart: Int32Array.from(starts),
    chainData: Int32Array.from(data),
  };
}

/**
 * Folds the trie above depth 16 (prefixes shorter than /16) into chains:
 * per head h under one, `above[h]` = 1 + the chain of the lists met above
 * depth 16 (chain c = `data[starts[c] .. starts[c + 1])`), and h is marked
 * in `used`.
 */
function foldShort(
  nodes: Int32Array,
  above: Int32Array,
  used: Int32Array,
  starts: number[],
  data: number[],
): void {
  const newChain = (parent: number, list: number): number => {
    if (parent >= 0) {
      for (let i = starts[parent]!; i < starts[parent + 1]!; i++) data.push(data[i]!);
    }
    data.push(list);
    starts.push(data.length);
    return starts.length - 2;
  };
  // `chain`: the lists at depths above node n.
  const visit = (n: number, depth: number, head: number, chain: number): void => {
    const list = nodes[3 * n]!;
    const inner = list >= 0 ? newChain(chain, list) : chain;
    for (let bit = 0; bit < 2; bit++) {
      const child = nodes[3 * n + 1 + bit]!;
      const h = (head << 1) | bit;
      if (child !== 0) visit(child, depth + 1, h, inner);
      else if (inner >= 0) {
        const span = JUMP_BITS - depth - 1;
        for (let x = h << span; x < (h + 1) << span; x++) {
          above[x] = inner + 1;
          used[x >> 5]! |= 1 << (x & 31);
        }
      }
    }
  };
  visit(0, 0, 0, -1);
}

/** Bits set in a 32-bit integer. */
function popcount(x: number): number {
  x = x - ((x >>> 1) & 0x55555555);
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  x = (x + (x >>> 4)) & 0x0f0f0f0f;
  return Math.imul(x, 0x01010101) >>> 24;
}

/**
 * The jump table of {@linkcode TrieImage}, in head order, from the heads
 * marked in `used`: their nodes (`heads`) and chains (`above`, 1 + chain).
 */
function fillJump(
  heads: Int32Array | null,
  above: Int32Array | null,
  used: Int32Array,
  jump: Int32Array,
): void {
  let r = 0;
  for (let w = 0; w < used.length; w++) {
    for (let word = used[w]!; word !== 0; word &= word - 1) {
      const h = (w << 5) | (31 - Math.clz32(word & -word));
      jump[2 * r] = heads === null ? 0 : heads[h]!;
      jump[2 * r + 1] = above === null ? -1 : above[h]! - 1;
      r++;
    }
  }
}

/** A frozen trie of one family (see {@linkcode TrieImage}). */
class Trie {
  readonly nodes: Int32Array;
  readonly jump: Int32Array;
  readonly used: Int32Array;
  readonly rank: Int32Array;
  readonly chainStart: Int32Array;
  readonly chainData: Int32Array;

  constructor(img: TrieImage) {
    this.nodes = img.nodes;
    this.jump = img.jump;
    this.used = img.used;
    this.rank = img.rank;
    this.chainStart = img.chainStart;
    this.chainData = img.chainData;
  }

  lookup(addr: Uint8Array, lists: PostingLists, emit: (node: number) => void): void {
    const { start, data } = lists;
    const head = (addr[0]! << 8) | addr[1]!;
    const w = head >> 5, bit = 1 << (head & 31), word = this.used[w]!;
    if ((word & bit) === 0) return;
    const r = this.rank[w]! + popcount(word & (bit - 1));
    const c = this.jump[2 * r + 1]!;
    if (c >= 0) {
      for (let k = this.chainStart[c]!; k < this.chainStart[c + 1]!; k++) {
        const id = this.chainData[k]!;
        for (let j = start[id]!; j < start[id + 1]!; j++) emit(data[j]!);
      }
    }
    let n = this.jump[2 * r]!;
    if (n === 0) return;
    const nodes = this.nodes;
    const bits = addr.length * 8;
    for (let i = JUMP_BITS;; i++) {
      const id = nodes[3 * n]!;
      if (id >= 0) {
        const end = start[id + 1]!;
        for (let j = start[id]!; j < end; j++) emit(data[j]!);
      }
      if (i === bits) return;
      n = nodes[3 * n + 1 + ((addr[i >> 3]! >> (7 - (i & 7))) & 1)]!;
      if (n === 0) return;
    }
  }
}

const NO_HINT = { prefixes: 0, v4Nodes: 0, v6Nodes: 0 };

/**
 * Trie nodes an insert of a prefix of `prefix` bits may add (an upper
 * bound: paths share nodes), for {@linkcode CidrIndexBuilder}'s size hints.
 */
export function trieNodesFor(prefix: number): number {
  return prefix >= JUMP_BITS ? prefix - JUMP_BITS + 1 : prefix;
}

/** Builds a {@linkcode CidrIndex}. */
export class CidrIndexBuilder {
  readonly #v4: TrieBuilder;
  readonly #v6: TrieBuilder;
  readonly #lists: PostingListsBuilder;
  readonly #scratch = new Uint8Array(16);
  #n4 = 0;
  #n6 = 0;
  #built = false;

  /** Presized for about `hint.prefixes` prefixes and the trie nodes given (hints; all grow as needed). */
  constructor(hint: { prefixes: number; v4Nodes: number; v6Nodes: number } = NO_HINT) {
    this.#v4 = new TrieBuilder(hint.v4Nodes);
    this.#v6 = new TrieBuilder(hint.v6Nodes);
    this.#lists = new PostingListsBuilder(hint.prefixes);
  }

  /** Adds the prefixes of rule node `node`. */
  add(node: number, cidrs: readonly Cidr[]): void {
    for (const c of cidrs) {
      const v4 = c.addr.length === 4;
      const id = (v4 ? this.#v4 : this.#v6).insert(c.addr, c.prefix, this.#lists);
      this.#lists.add(id, node);
      if (v4) this.#n4++;
      else this.#n6++;
    }
  }

  /** Adds one prefix given as text (validated: see `cidr_text.ts`) of rule node `node`. */
  addText(node: number, text: string): void {
    const r = parseCidrInto(text, this.#scratch);
    if (r < 0) throw new TypeError(`invalid CIDR ${JSON.stringify(text)}`);
    const v6 = (r & CIDR_V6) !== 0;
    const id = (v6 ? this.#v6 : this.#v4).insert(this.#scratch, r & 0xff, this.#lists);
    this.#lists.add(id, node);
    if (v6) this.#n6++;
    else this.#n4++;
  }

  /** Adds prefixes the config parser already parsed (see `cidr_text.ts`) of rule node `node`. */
  addParsed(node: number, p: ParsedCidrs): void {
    for (let k = p.from; k < p.from + p.count; k++) this.addPrefix(node, p.addr, 16 * k, p.res[k]!);
  }

  /**
   * Adds one prefix of rule node `node` already parsed by `parseCidrInto` /
   * `parseCidrBytes` (result `res`) into `addr[at ..]`.
   */
  addPrefix(node: number, addr: Uint8Array, at: number, res: number): void {
    const v6 = (res & CIDR_V6) !== 0;
    const id = (v6 ? this.#v6 : this.#v4).insert(addr, res & 0xff, this.#lists, at);
    this.#lists.add(id, node);
    if (v6) this.#n6++;
    else this.#n4++;
  }

  /** Freezes the index. */
  build(): CidrIndex {
    return new CidrIndex(this.buildImage());
  }

  /** Freezes the index as plain data (for {@linkcode CidrIndex}, possibly on another thread). */
  buildImage(): CidrImage {
    // The tries' scratch goes to the next compile (`spare.ts`): a second build would read it.
    if (this.#built) throw new Error("CidrIndexBuilder built twice");
    this.#built = true;
    return {
      v4: this.#n4 ? freezeTrie(this.#v4) : null,
      v6: this.#n6 ? freezeTrie(this.#v6) : null,
      lists: this.#lists.build(),
      size: this.#n4 + this.#n6,
    };
  }
}
shapeOf(() => new CidrIndexBuilder());

/** Frozen prefix index; see the module doc. */
export class CidrIndex {
  readonly #v4: Trie | null;
  readonly #v6: Trie | null;
  readonly #lists: PostingLists;
  /** Number of prefixes indexed. */
  readonly size: number;
  /** The index as plain data. */
  readonly image: CidrImage;

  /** Wraps an image from {@linkcode CidrIndexBuilder.buildImage} (no copy). */
  constructor(img: CidrImage) {
    this.image = img;
    this.#v4 = img.v4 ? new Trie(img.v4) : null;
    this.#v6 = img.v6 ? new Trie(img.v6) : null;
    this.#lists = img.lists;
    this.size = img.size;
  }

  /** Calls `emit(node)` for every rule node with a prefix containing `addr` (4 or 16 bytes). */
  lookup(addr: Uint8Array, emit: (node: number) => void): void {
    const trie = addr.length === 4 ? this.#v4 : this.#v6;
    if (trie !== null) trie.lookup(addr, this.#lists, emit);
  }
}

/** True when `addr` lies inside `cidr` (same family). Reference-grade helper. */
export function cidrContains(cidr: Cidr, addr: Uint8Array): boolean {
  if (cidr.addr.length !== addr.length) return false;
  const full = cidr.prefix >> 3, rest = cidr.prefix & 7;
  for (let i = 0; i < full; i++) if (cidr.addr[i] !== addr[i]) return false;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (cidr.addr[full]! & mask) === (addr[full]! & mask);
}
