/**
 * `fwmark` (our addition): matches the netfilter mark of the flow's first
 * packet, `(mark & mask) === value`; and `dscp` (our addition).
 *
 * @module
 */

import type { MarkMatch } from "./spec.ts";

/** True when `mark` (unknown: never) matches any item. */
export function markMatches(items: readonly MarkMatch[], mark: number | undefined): boolean {
  if (mark === undefined) return false;
  for (let i = 0; i < items.length; i++) {
    const m = items[i]!;
    if (((mark & m.mask) >>> 0) === m.value) return true;
  }
  return false;
}

/** True when `dscp` (unknown: never) is one of `values`. */
export function dscpMatches(values: readonly number[], dscp: number | undefined): boolean {
  return dscp !== undefined && values.includes(dscp);
}

/** A {@linkcode MarkIndex} as plain data (typed arrays, transferable between threads). */
export interface MarkImage {
  /** The distinct masks (as int32 bit patterns). */
  readonly masks: Int32Array;
  /** Entries of mask k: `[start[k], start[k + 1])`, sorted by value. */
  readonly start: Int32Array;
  /** Per entry: the masked value (int32 bit pattern) and its node. */
  readonly values: Int32Array;
  readonly nodes: Int32Array;
}

/** A node and its `fwmark` items, to index. */
export interface MarkEntry {
  readonly node: number;
  readonly items: readonly MarkMatch[];
}

/**
 * The `fwmark` items of many rules: per distinct mask, the values sorted
 * (binary search on `mark & mask`). A lookup costs one search per distinct
 * mask, whatever the number of rules (they tested their items one by one:
 * 20,000 mark rules took 345 µs per flow).
 */
export class MarkIndex {
  readonly #img: MarkImage;
  /** The index as plain data. */
  readonly image: MarkImage;

  /** Indexes `entries`, or wraps an image built elsewhere. */
  constructor(entries: readonly MarkEntry[] | MarkImage) {
    this.image = this.#img = Array.isArray(entries)
      ? buildMarkImage(entries)
      : entries as MarkImage;
  }

  /** Calls `emit(node)` for every node with an item matching `mark` (maybe more than once). */
  lookup(mark: number, emit: (node: number) => void): void {
    const { masks, start, values, nodes } = this.#img;
    for (let k = 0; k < masks.length; k++) {
      const v = mark & masks[k]!;
      let lo = start[k]!, hi = start[k + 1]!;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (values[mid]! < v) lo = mid + 1;
        else hi = mid;
      }
      for (let j = lo; j < start[k + 1]! && values[j] === v; j++) emit(nodes[j]!);
    }
  }
}

function buildMarkImage(entries: readonly MarkEntry[]): MarkImage {
  const byMask = new Map<number, [value: number, node: number][]>();
  let total = 0;
  for (const e of entries) {
    for (const m of e.items) {
      const mask = m.mask | 0;
      let list = byMask.get(mask);
      if (list === undefined) byMask.set(mask, list = []);
      list.push([m.value | 0, e.node]);
      total++;
    }
  }
  const masks = new Int32Array(byMask.size), start = new Int32Array(byMask.size + 1);
  const values = new Int32Array(total), nodes = new Int32Array(total);
  let k = 0, at = 0;
  for (const [mask, list] of byMask) {
    masks[k] = mask;
    start[k++] = at;
    for (const [v, node] of list.sort((a, b) => a[0] - b[0])) {
      values[at] = v;
      nodes[at++] = node;
    }
  }
  start[k] = at;
  return { masks, start, values, nodes };
}
