/**
 * Flattened integer lists ("posting lists"): list `i` is
 * `data[start[i] .. start[i + 1])`. Built once, read on the hot path without
 * allocation.
 *
 * @module
 */

import { shapeOf } from "../core/keep_shape.ts";
import { giveInts, takeInts } from "./spare.ts";

/** Immutable flattened lists of node ids. */
export interface PostingLists {
  readonly start: Int32Array;
  readonly data: Int32Array;
}

/**
 * Collects lists by numeric id, then freezes them into {@linkcode PostingLists}.
 * Values are appended to one flat buffer of (list, value) pairs and grouped
 * by a counting sort at `build()`: no per-list arrays while building.
 */
export class PostingListsBuilder {
  #pairs: Int32Array;
  #len = 0;
  /** Last value added per list (to skip immediate duplicates). */
  #last: Int32Array;
  #lists = 0;
  #built = false;

  /** `expected`: about how many values (and at most lists) will be added (a hint; it grows as needed). */
  constructor(expected = 0) {
    this.#pairs = takeInts(Math.max(1024, 2 * expected));
    this.#last = takeInts(Math.max(256, expected));
  }

  /** Creates a new empty list and returns its id. */
  newList(): number {
    if (this.#lists === this.#last.length) {
      const grown = takeInts(this.#last.length * 2);
      grown.set(this.#last);
      giveInts(this.#last);
      this.#last = grown;
    }
    this.#last[this.#lists] = -1;
    return this.#lists++;
  }

  /** Appends `value` (≥ 0) to list `id` (skips an immediate duplicate). */
  add(id: number, value: number): void {
    if (this.#last[id] === value) return;
    this.#last[id] = value;
    if (this.#len + 2 > this.#pairs.length) {
      const grown = takeInts(this.#pairs.length * 2);
      grown.set(this.#pairs);
      giveInts(this.#pairs);
      this.#pairs = grown;
    }
    this.#pairs[this.#len++] = id;
    this.#pairs[this.#len++] = value;
  }

  /** Number of lists so far. */
  get size(): number {
    return this.#lists;
  }

  /** Freezes the lists into flat typed arrays (values keep their insertion order). */
  build(): PostingLists {
    // Its arrays go to the next compile below (`spare.ts`): a second build would read them.
    if (this.#built) throw new Error("PostingListsBuilder.build() called twice");
    this.#built = true;
    const n = this.#lists, pairs = this.#pairs, len = this.#len;
    const start = new Int32Array(n + 1);
    countLists(pairs, len, start);
    prefixSums(start);
    const fill = start.slice(0, n);
    const data = new Int32Array(len / 2);
    scatter(pairs, len, fill, data);
    // The builder is done (it is not added to after `build()`): its scratch goes to the next
    // compile (`spare.ts`).
    giveInts(pairs);
    giveInts(this.#last);
    giveInts(fill);
    return { start, data };
  }
}
shapeOf(() => new PostingListsBuilder());

// One loop per function: V8 optimises a long loop on the stack mid-call, and
// such code used to give up ("insufficient type feedback") on whatever came
// after the loop, at every call of a function that runs once per reload.

/** `start[l + 1]` = number of values of list l. */
function countLists(pairs: Int32Array, len: number, start: Int32Array): void {
  for (let i = 0; i < len; i += 2) start[pairs[i]! + 1]!++;
}

/** Counts to starts. */
function prefixSums(start: Int32Array): void {
  for (let i = 0; i + 1 < start.length; i++) start[i + 1]! += start[i]!;
}

/** Puts each value at the next free place of its list. */
function scatter(pairs: Int32Array, len: number, fill: Int32Array, data: Int32Array): void {
  for (let i = 0; i < len; i += 2) data[fill[pairs[i]!]!++] = pairs[i + 1]!;
}

/** Maps string keys to posting lists. */
export class KeyedListsBuilder {
  readonly #ids = new Map<string, number>();
  readonly #lists: PostingListsBuilder;

  /** Lists are allocated in `lists`, shared with other builders. */
  constructor(lists: PostingListsBuilder) {
    this.#lists = lists;
  }

  /** Adds `value` to the list of `key`. */
  add(key: string, value: number): void {
    let id = this.#ids.get(key);
    if (id === undefined) {
      id = this.#lists.newList();
      this.#ids.set(key, id);
    }
    this.#lists.add(id, value);
  }

  /** The key → list id map (valid against the shared builder's lists). */
  build(): Map<string, number> {
    return this.#ids;
  }
}
shapeOf(() => new KeyedListsBuilder(new PostingListsBuilder()));
