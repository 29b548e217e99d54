/**
 * Flattened integer lists ("posting lists"): list `i` is
 * `data[start[i] .. start[i + 1])`. Built once, read on the hot path without
 * allocation.
 *
 * @module
 */

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
  #pairs = new Int32Array(1024);
  #len = 0;
  /** Last value added per list (to skip immediate duplicates). */
  #last = new Int32Array(256);
  #lists = 0;

  /** Creates a new empty list and returns its id. */
  newList(): number {
    if (this.#lists === this.#last.length) {
      const grown = new Int32Array(this.#last.length * 2);
      grown.set(this.#last);
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
      const grown = new Int32Array(this.#pairs.length * 2);
      grown.set(this.#pairs);
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
    const n = this.#lists, pairs = this.#pairs, len = this.#len;
    const start = new Int32Array(n + 1);
    for (let i = 0; i < len; i += 2) start[pairs[i]! + 1]!++;
    for (let i = 0; i < n; i++) start[i + 1]! += start[i]!;
    const fill = start.slice(0, n);
    const data = new Int32Array(len / 2);
    for (let i = 0; i < len; i += 2) data[fill[pairs[i]!]!++] = pairs[i + 1]!;
    return { start, data };
  }
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
