/**
 * The generation cell at the start of a shared arena (`config/arena.ts`):
 * an engine whose indexes live in an arena reads it when built and checks
 * it before each lookup, so a use after the arena was reused fails loudly.
 *
 * @module
 */

/** Bytes before an arena's first array: the generation (`Int32`), padded. */
export const ARENA_HEADER = 8;

/** The generation cell of the arena `buffer` is, or null when it is not a shared buffer. */
export function arenaCell(buffer: ArrayBufferLike): Int32Array | null {
  return buffer instanceof SharedArrayBuffer && buffer.byteLength >= ARENA_HEADER
    ? new Int32Array(buffer, 0, 1)
    : null;
}
