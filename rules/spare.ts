/**
 * Int32Arrays that a compile needs only while it runs (trie builders'
 * nodes, per-head tables), kept on the thread for the next compile instead
 * of left to the collector. The config worker allocated ~7 MB of typed
 * arrays per 10k-rule compile, most of it such scratch; under
 * `--optimize-for-size` array buffers count towards the isolate's global
 * allocation limit (about 1 MB of slack), so nearly every compile started a
 * memory-reducing mark-compact (docs/rules.md, round 11).
 *
 * Off by default: {@linkcode takeInts} then allocates and
 * {@linkcode giveInts} does nothing. The config worker turns it on
 * ({@linkcode keepSpares}) and drops the spares when idle
 * ({@linkcode dropSpares}). A given array must not be used again by its
 * giver: the next {@linkcode takeInts} of its length hands it out zeroed.
 *
 * @module
 */

let on = false;
const spares: Int32Array[] = [];
let spareBytes = 0;

/** Spares kept at most (bytes); beyond that, given arrays go to the collector. */
export const SPARE_MAX_BYTES = 32 << 20;

/** Turns keeping spares on for this thread. */
export function keepSpares(): void {
  on = true;
}

/** A zeroed `Int32Array` of `n` elements: a spare of that length when there is one. */
export function takeInts(n: number): Int32Array {
  for (let i = spares.length - 1; i >= 0; i--) {
    const a = spares[i]!;
    if (a.length !== n) continue;
    spares[i] = spares[spares.length - 1]!;
    spares.pop();
    spareBytes -= a.byteLength;
    return a.fill(0);
  }
  return new Int32Array(n);
}

/** Gives back `a` (from {@linkcode takeInts}, or any whole-buffer array) for later takes. */
export function giveInts(a: Int32Array): void {
  if (!on || a.byteOffset !== 0 || a.byteLength !== a.buffer.byteLength) return;
  if (spareBytes + a.byteLength > SPARE_MAX_BYTES) return;
  spares.push(a);
  spareBytes += a.byteLength;
}

/** Frees every spare now (their buffers are detached, not left to the collector). */
export function dropSpares(): void {
  for (const a of spares) (a.buffer as ArrayBuffer).transfer(0);
  spares.length = 0;
  spareBytes = 0;
}

/** Bytes of spares kept (for tests). */
export function spareBytesKept(): number {
  return spareBytes;
}
