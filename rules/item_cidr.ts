/**
 * One binary trie per address family over the `ip_cidr` (or
 * `source_ip_cidr`) items of every rule. A lookup walks at most 32 / 128
 * bits and reports every rule node that has a prefix containing the address.
 *
 * @module
 */

import type { Cidr } from "./spec.ts";
import { type PostingLists, PostingListsBuilder } from "./posting_lists.ts";

class TrieBuilder {
  /** child[2n], child[2n+1]; 0 = none (the root is never a child). */
  child: number[] = [0, 0];
  list: number[] = [-1];

  insert(addr: Uint8Array, prefix: number, listId: () => number): number {
    let n = 0;
    for (let i = 0; i < prefix; i++) {
      const bit = (addr[i >> 3]! >> (7 - (i & 7))) & 1;
      let next = this.child[2 * n + bit]!;
      if (next === 0) {
        next = this.list.length;
        this.list.push(-1);
        this.child.push(0, 0);
        this.child[2 * n + bit] = next;
      }
      n = next;
    }
    if (this.list[n]! < 0) this.list[n] = listId();
    return this.list[n]!;
  }
}

/** Builds a {@linkcode CidrIndex}. */
export class CidrIndexBuilder {
  readonly #v4 = new TrieBuilder();
  readonly #v6 = new TrieBuilder();
  readonly #lists = new PostingListsBuilder();
  #count = 0;

  /** Adds the prefixes of rule node `node`. */
  add(node: number, cidrs: readonly Cidr[]): void {
    for (const c of cidrs) {
      const trie = c.addr.length === 4 ? this.#v4 : this.#v6;
      const id = trie.insert(c.addr, c.prefix, () => this.#lists.newList());
      this.#lists.add(id, node);
      this.#count++;
    }
  }

  /** Freezes the index. */
  build(): CidrIndex {
    return new CidrIndex(this.#v4, this.#v6, this.#lists.build(), this.#count);
  }
}

/** Frozen prefix index; see the module doc. */
export class CidrIndex {
  readonly #c4: Int32Array;
  readonly #l4: Int32Array;
  readonly #c6: Int32Array;
  readonly #l6: Int32Array;
  readonly #lists: PostingLists;
  /** Number of prefixes indexed. */
  readonly size: number;

  /** Use {@linkcode CidrIndexBuilder}. */
  constructor(v4: TrieBuilder, v6: TrieBuilder, lists: PostingLists, size: number) {
    this.#c4 = Int32Array.from(v4.child);
    this.#l4 = Int32Array.from(v4.list);
    this.#c6 = Int32Array.from(v6.child);
    this.#l6 = Int32Array.from(v6.list);
    this.#lists = lists;
    this.size = size;
  }

  /** Calls `emit(node)` for every rule node with a prefix containing `addr` (4 or 16 bytes). */
  lookup(addr: Uint8Array, emit: (node: number) => void): void {
    if (this.size === 0) return;
    const v4 = addr.length === 4;
    const child = v4 ? this.#c4 : this.#c6;
    const list = v4 ? this.#l4 : this.#l6;
    const { start, data } = this.#lists;
    const bits = addr.length * 8;
    let n = 0;
    for (let i = 0;; i++) {
      const id = list[n]!;
      if (id >= 0) {
        const end = start[id + 1]!;
        for (let j = start[id]!; j < end; j++) emit(data[j]!);
      }
      if (i === bits) return;
      n = child[2 * n + ((addr[i >> 3]! >> (7 - (i & 7))) & 1)]!;
      if (n === 0) return;
    }
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
