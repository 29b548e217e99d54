/**
 * The V8 flags the router runs with, in one place for the code that starts
 * it (`router demo`, the benches, tests). `build.sh` bakes the same string
 * into `dist/router` and `deno.json`'s `router` task passes it;
 * `tests/build_test.ts` checks that the three agree.
 *
 * - `--optimize-for-size`: smaller young generation and heap growth steps,
 *   so connection churn does not leave the heap at 3 × 16 MiB of
 *   semi-spaces plus ~25 MiB of uncollected old-space garbage (RSS with
 *   1,000 flows after a burst ~135 → ~95 MiB; docs/performance.md).
 * - `--no-concurrent-marking`: each isolate marks its own heap, so the
 *   data-plane thread never waits for marking on V8's (reniced) helper
 *   threads (docs/rules.md, round 13).
 * - `--enable-experimental-regexp-engine-on-excessive-backtracks`: a
 *   `domain_regex` that backtracks too long on a client's name is rerun in
 *   linear time (docs/rules.md, "Regular expressions cannot hold the data
 *   plane").
 *
 * @module
 */

/** Comma-separated, as `--v8-flags=` takes them. */
export const ROUTER_V8_FLAGS =
  "--optimize-for-size,--no-concurrent-marking,--enable-experimental-regexp-engine-on-excessive-backtracks";
