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

/** Collects lists by numeric id, then freezes them into {@linkcode PostingLists}. */
export class PostingListsBuilder {
  #lists: number[][] = [];

  /** Creates a new empty list and returns its id. */
  newList(): number {
    this.#lists.push([]);
    return this.#lists.length - 1;
  }

  /** Appends `value` to list `id` (skips an immediate duplicate). */
  add(id: number, value: number): void {
    const list = this.#lists[id]!;
    if (list[list.length - 1] !== value) list.push(value);
  }

  /** Number of lists so far. */
  get size(): number {
    return this.#lists.length;
  }

  /** Freezes the lists into flat typed arrays. */
  build(): PostingLists {
    let total = 0;
    for (const l of this.#lists) total += l.length;
    const start = new Int32Array(this.#lists.length + 1);
    const data = new Int32Array(total);
    let pos = 0;
    this.#lists.forEach((l, i) => {
      start[i] = pos;
      for (const v of l) data[pos++] = v;
    });
    start[this.#lists.length] = pos;
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
