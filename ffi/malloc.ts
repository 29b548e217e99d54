/**
 * glibc malloc tuning for a long-running router.
 *
 * glibc serves allocations of 128 KiB and more with `mmap` and returns them
 * with `munmap` — until it frees such a block: then it raises its mmap
 * threshold to that block's size (up to 32 MiB), and later blocks of that
 * size come from the heap arenas, which give memory back to the system only
 * from their top. V8's typed arrays are such blocks: every reload allocates
 * the new engine's indexes (5 MB for 10,000 rules, ~26 MB for 100,000) on
 * the config worker's thread (its own arena) and frees the old ones, so
 * after a few reloads the freed holes stay resident. Fixing the threshold
 * (`M_MMAP_THRESHOLD`, which also turns the adjustment off) makes big
 * blocks that do not fit free arena space go to `mmap` instead of growing
 * an arena — so it is set at start, before the arenas hold much: with the
 * 10k set, RSS after eight full reloads and 30 s idle 127 → 108 MiB
 * (`docs/performance.md`).
 *
 * @module
 */

import { libc } from "./libc.ts";

/** `mallopt` parameter (glibc `malloc.h`). */
const M_MMAP_THRESHOLD = -3;

/** The threshold {@linkcode fixMmapThreshold} sets by default: glibc's own starting value. */
export const MMAP_THRESHOLD = 128 * 1024;

/**
 * Fixes glibc's mmap threshold at `bytes` (see the module doc). Returns
 * false where the libc has no `mallopt` or refuses (musl, for one, ignores it).
 */
export function fixMmapThreshold(bytes = MMAP_THRESHOLD): boolean {
  const mallopt = libc().mallopt;
  if (!mallopt) return false;
  return mallopt(M_MMAP_THRESHOLD, bytes) === 1;
}
