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
  /** Nodes of piece i: data[start[i] .. start[i + 1]). */
  readonly start: Int32Array;
  readonly data: Int32Array;
}

/** A node and its port ranges, to index. */
export interface PortEntry {
  readonly node: number;
  readonly ranges: readonly PortRange[];
}

/**
 * Elementary-interval index: the ports 0..65535 are cut at every range
 * boundary; each piece lists the nodes whose ranges cover it. A lookup is a
 * binary search.
 */
export class PortIndex {
  readonly #bounds: Int32Array;
  readonly #start: Int32Array;
  readonly #data: Int32Array;
  /** The index as plain data. */
  readonly image: PortImage;

  /** Indexes `entries` (node id and its ranges), or wraps an image built elsewhere. */
  constructor(entries: readonly PortEntry[] | PortImage) {
    const img = Array.isArray(entries) ? buildPortImage(entries) : entries as PortImage;
    this.image = img;
    this.#bounds = img.bounds;
    this.#start = img.start;
    this.#data = img.data;
  }

  /** Calls `emit(node)` for every node with a range containing `port` (maybe more than once). */
  lookup(port: number, emit: (node: number) => void): void {
    if (this.#data.length === 0) return;
    const i = upperBound(this.#bounds, port) - 1;
    const end = this.#start[i + 1]!;
    for (let j = this.#start[i]!; j < end; j++) emit(this.#data[j]!);
  }
}

function buildPortImage(entries: readonly PortEntry[]): PortImage {
  const cuts = new Set<number>([0, 65536]);
  for (const e of entries) for (const r of e.ranges) cuts.add(r.from).add(r.to + 1);
  const bounds = Int32Array.from([...cuts].sort((a, b) => a - b));
  const pieces: number[][] = Array.from({ length: bounds.length - 1 }, () => []);
  for (const e of entries) {
    for (const r of e.ranges) {
      let i = upperBound(bounds, r.from) - 1;
      for (; i < pieces.length && bounds[i]! <= r.to; i++) {
        const p = pieces[i]!;
        if (p[p.length - 1] !== e.node) p.push(e.node);
      }
    }
  }
  const start = new Int32Array(pieces.length + 1);
  let total = 0;
  pieces.forEach((p, i) => {
    start[i] = total;
    total += p.length;
  });
  start[pieces.length] = total;
  return { bounds, start, data: Int32Array.from(pieces.flat()) };
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
