/**
 * Shared arenas for a full compile's typed arrays (the config worker's
 * side of `CompileWorker`'s `handBack`). A transferred `ArrayBuffer`
 * becomes the data-plane thread's to free, and counts towards that thread's
 * heap limits until a major collection finds it dead: under
 * `--optimize-for-size` every full reload of a big rule set started a
 * mark-compact there (docs/rules.md, rounds 7–8). A `SharedArrayBuffer` is
 * not counted per thread; the worker copies a reply's arrays into one
 * (an *arena*) and keeps it in a pool: when the data-plane thread reports
 * the arena free (no engine reads it: `CompileWorker.retire`), the next
 * compile of about its size reuses it, so reloads allocate nothing new on
 * either side.
 *
 * The first 8 bytes of an arena are its generation (an `Int32`), bumped by
 * the data-plane thread when it gives the arena back: an engine built on it
 * reads the generation once and checks it before each lookup (`Engine`,
 * `rules/arena_cell.ts`), so a use after the arena went back fails loudly
 * instead of reading another compile's indexes.
 *
 * @module
 */

import { ARENA_HEADER } from "../rules/arena_cell.ts";

/** An arena the pool handed out, as the worker names it to the caller. */
export interface Arena {
  readonly id: number;
  /** The arena itself (shared, not copied, by `postMessage`): its first Int32 is the generation. */
  readonly sab: SharedArrayBuffer;
}

/** Free arenas kept for reuse (beyond that, freed ones are dropped for the collector). */
const KEEP_FREE = 2;

/** The worker's arenas; see the module doc. */
export class ArenaPool {
  readonly #arenas = new Map<number, { sab: SharedArrayBuffer; free: boolean }>();
  #next = 1;
  #allocated = 0;

  /** An arena of at least `bytes` (header included): a free one that fits, else a new one. */
  take(bytes: number): Arena {
    let best: [number, SharedArrayBuffer] | null = null;
    for (const [id, a] of this.#arenas) {
      if (!a.free || a.sab.byteLength < bytes || a.sab.byteLength > 2 * bytes + (1 << 20)) continue;
      if (best === null || a.sab.byteLength < best[1].byteLength) best = [id, a.sab];
    }
    if (best !== null) {
      this.#arenas.get(best[0])!.free = false;
      return { id: best[0], sab: best[1] };
    }
    // Room to grow an eighth before the next compile needs a bigger one; whole 64 KiB.
    const size = Math.ceil((bytes + (bytes >> 3)) / 65536) * 65536;
    const sab = new SharedArrayBuffer(size);
    const id = this.#next++;
    this.#arenas.set(id, { sab, free: false });
    this.#allocated++;
    return { id, sab };
  }

  /**
   * Arenas the data-plane thread no longer reads (it bumped their
   * generation): they may be reused; past {@linkcode KEEP_FREE} free ones,
   * the oldest are dropped. Unknown ids are ignored.
   */
  free(ids: readonly number[]): void {
    for (const id of ids) {
      const a = this.#arenas.get(id);
      if (a !== undefined) a.free = true;
    }
    const free = [...this.#arenas].filter(([, a]) => a.free);
    for (const [id] of free.slice(0, Math.max(0, free.length - KEEP_FREE))) {
      this.#arenas.delete(id);
    }
  }

  /**
   * Drops every free arena (an idle worker's: the memory goes once both
   * threads' collectors let go of it); returns how many.
   */
  dropFree(): number {
    let n = 0;
    for (const [id, a] of this.#arenas) {
      if (!a.free) continue;
      this.#arenas.delete(id);
      n++;
    }
    return n;
  }

  /** Arenas held (in use or free) and allocated since start. */
  counts(): { held: number; free: number; allocated: number } {
    let free = 0;
    for (const a of this.#arenas.values()) if (a.free) free++;
    return { held: this.#arenas.size, free, allocated: this.#allocated };
  }
}

/**
 * `msg` with every typed array whose buffer is in `buffers` or `keep`
 * copied into one arena from `pool`, at the same offset within its buffer;
 * other values are passed as they are (see below). The copy is meant to be
 * posted without a transfer list; the `buffers` are detached (freed at
 * once), as a transfer would leave them; the `keep` ones stay the caller's.
 */
export function intoArena<T>(
  msg: T,
  buffers: readonly ArrayBufferLike[],
  pool: ArenaPool,
  keep: readonly ArrayBufferLike[] = [],
): { msg: T; arena: Arena } {
  const at = new Map<ArrayBufferLike, number>();
  let end = ARENA_HEADER;
  for (const b of [...buffers, ...keep]) {
    if (at.has(b)) continue;
    end = (end + 7) & ~7;
    at.set(b, end);
    end += b.byteLength;
  }
  const arena = pool.take(end);
  const bytes = new Uint8Array(arena.sab);
  for (const [b, off] of at) bytes.set(new Uint8Array(b), off);
  // Objects and arrays are rebuilt only when something in them moved into the arena: the
  // config and the complex rules' specs (thousands of small objects) are passed as they are.
  const copy = (x: unknown): unknown => {
    if (x === null || typeof x !== "object") return x;
    if (ArrayBuffer.isView(x)) {
      const off = at.get(x.buffer);
      if (off === undefined) return x;
      if (x instanceof DataView) return new DataView(arena.sab, off + x.byteOffset, x.byteLength);
      const C = x.constructor as new (b: ArrayBufferLike, o: number, n: number) => unknown;
      return new C(arena.sab, off + x.byteOffset, (x as unknown as { length: number }).length);
    }
    if (Array.isArray(x)) {
      for (let i = 0; i < x.length; i++) {
        const c = copy(x[i]);
        if (c === x[i]) continue;
        const out = x.slice();
        out[i] = c;
        for (let j = i + 1; j < x.length; j++) out[j] = copy(x[j]);
        return out;
      }
      return x;
    }
    if (Object.getPrototypeOf(x) !== Object.prototype) return x;
    let o: Record<string, unknown> | null = null;
    for (const k in x) {
      const v = (x as Record<string, unknown>)[k], c = copy(v);
      if (c !== v) (o ??= { ...x })[k] = c;
    }
    return o ?? x;
  };
  const out = copy(msg) as T;
  // The originals are freed now rather than by a later collection (as a transfer would have
  // detached them; nothing here reads them after posting).
  for (const b of buffers) {
    if (b instanceof ArrayBuffer) {
      (b as ArrayBuffer & { transfer(n: number): ArrayBuffer }).transfer(0);
    }
  }
  return { msg: out, arena };
}
