/**
 * `performance.now()` read once per synchronous run of the event loop: the
 * first call samples the clock, later calls before the next microtask
 * checkpoint get the same value. For per-datagram bookkeeping (UDP session
 * activity, reply-socket LRU): a batch of datagrams is handled in one
 * synchronous run, so it costs one clock read instead of one per datagram
 * (the clock read is an op call: ~4 % of the router's CPU under a 64-byte
 * UDP flood). A value is at most as old as the run that is using it, which
 * the read loops bound (they yield after a few milliseconds of work).
 *
 * @module
 */

let cached = -1;

function forget(): void {
  cached = -1;
}

/** Milliseconds (as `performance.now()`), sampled at most once per synchronous run. */
export function coarseNow(): number {
  if (cached < 0) {
    cached = performance.now();
    queueMicrotask(forget);
  }
  return cached;
}
