/**
 * Port items (`port`, `port_range`, `source_port`, `source_port_range`) and
 * an interval index over the port items of many rules.
 *
 * @module
 */

import type { PortRange } from "./spec.ts";

/** True when `port` lies in any of `ranges`. */
export function portMatches(ranges: readonly PortRange[], port: number): boolean {
  for (let i = 0; i < ranges.length; i++) {
    const r = ranges[i]!;
    if (port >= r.from && port <= r.to) return true;
  }
  return false;
}

/** A {@linkcode PortIndex} as plain data (typed arrays, transferable between threads). */
export interface PortImage {
  /** Sorted piece starts; piece i = [bounds[i], bounds[i+1]). */
  readonly bounds: Int32Array;
  /**
   * Nodes of segment-tree node t: data[start[t] .. start[t + 1]). The tree
   * is implicit over the pieces: with L leaves (`(start.length - 1) / 2`, a
   * power of two), piece i is leaf L + i and node t's parent is t >> 1.
   */
  readonly start: Int32Array;
  readonly data: Int32Array;
}

/** A node and its port ranges, to index. */
export interface PortEntry {
  readonly node: number;
  readonly ranges: readonly PortRange[];
}

/**
 * Interval index: the ports 0..65535 are cut at every range boundary into
 * pieces, and a segment tree over the pieces holds each range at the
 * O(log n) tree nodes that exactly cover its pieces. A lookup finds the
 * port's piece by binary search and walks from that leaf to the root. Size
 * O(n log n) for n ranges however much they overlap (listing every node per
 * piece took O(n²): 5,000 wide ranges made 4 M entries and 116 ms, and a
 * config of many more could exhaust the heap).
 */
export class PortIndex {
  readonly #bounds: Int32Array;
  readonly #start: Int32Array;
  readonly #data: Int32Array;
  readonly #leaves: number;
  /** The index as plain data. */
  readonly image: PortImage;

  /** Indexes `entries` (node id and its ranges), or wraps an image built elsewhere. */
  constructor(entries: readonly PortEntry[] | PortImage) {
    const img = Array.isArray(entries) ? buildPortImage(entries) : entries as PortImage;
    this.image = img;
    this.#bounds = img.bounds;
    this.#start = img.start;
    this.#data = img.data;
    this.#leaves = (img.start.length - 1) >> 1;
  }

  /** Calls `emit(node)` for every node with a range containing `port` (maybe more than once). */
  lookup(port: number, emit: (node: number) => void): void {
    if (this.#data.length === 0) return;
    const start = this.#start, data = this.#data;
    for (let t = this.#leaves + upperBound(this.#bounds, port) - 1; t >= 1; t >>= 1) {
      const end = start[t + 1]!;
      for (let j = start[t]!; j < end; j++) emit(data[j]!);
    }
  }
}

/**
 * Calls `at(t)` for the segment-tree nodes that exactly cover leaves
 * `lo..hi` (inclusive) of a tree with `leaves` leaves.
 */
function cover(leaves: number, lo: number, hi: number, at: (t: number) => void): void {
  for (let l = lo + leaves, r = hi + leaves + 1; l < r; l >>= 1, r >>= 1) {
    if (l & 1) at(l++);
    if (r & 1) at(--r);
  }
}

function buildPortImage(entries: readonly PortEntry[]): PortImage {
  const cuts = new Set<number>([0, 65536]);
  for (const e of entries) for (const r of e.ranges) cuts.add(r.from).add(r.to + 1);
  const bounds = Int32Array.from([...cuts].sort((a, b) => a - b));
  const pieces = bounds.length - 1;
  let leaves = 1;
  while (leaves < pieces) leaves *= 2;
  // Pieces of a range: from the one starting at `from` to the one ending at `to`.
  const each = (f: (r: PortRange, node: number) => void) => {
    for (const e of entries) for (const r of e.ranges) f(r, e.node);
  };
  const span = (r: PortRange, at: (t: number) => void) =>
    cover(leaves, upperBound(bounds, r.from) - 1, upperBound(bounds, r.to) - 1, at);
  const start = new Int32Array(2 * leaves + 1);
  each((r) => span(r, (t) => start[t + 1]!++));
  for (let t = 1; t <= 2 * leaves; t++) start[t]! += start[t - 1]!;
  const data = new Int32Array(start[2 * leaves]!);
  const fill = start.slice(0, 2 * leaves);
  each((r, node) => span(r, (t) => data[fill[t]!++] = node));
  return { bounds, start, data };
}

/** Index of the first element greater than `x`. */
function upperBound(a: Int32Array, x: number): number {
  let lo = 0, hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid]! <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
