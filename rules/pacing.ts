/**
 * Cooperative time slicing for long synchronous work on the data-plane
 * thread (parsing and compiling a big rule list on reload): the work checks
 * {@linkcode Pacing.due} every few hundred items and, when its slice of
 * time is used up, awaits {@linkcode Pacing.pause}, which gives the event
 * loop one turn (sockets, timers, IPC) before the next slice.
 *
 * @module
 */

/** How long work gives the event loop a turn. */
export interface Pacing {
  /** True when the current slice of work has used its time budget. */
  due(): boolean;
  /** Yields to the event loop, then starts a new slice. */
  pause(): Promise<void>;
}

/**
 * One turn of the event loop, I/O included: a zero-delay timer (about 1–2 ms
 * here). Measured on Deno 2.9.6: a `MessageChannel` round trip or
 * `setImmediate` returns in ~0.1 ms but lets no socket I/O through (a TCP
 * ping-pong in the same process stalled for the whole 200 ms compile), so
 * they would not unblock the data plane.
 */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** Options of {@linkcode TimeSlicer}. */
export interface TimeSlicerOptions {
  /** Work per slice before a pause, in ms (default 4). */
  readonly sliceMs?: number;
  /** Clock in ms (default `performance.now`). */
  readonly now?: () => number;
  /** How to yield (default {@linkcode nextTurn}). */
  readonly yieldTurn?: () => Promise<void>;
}

/** A {@linkcode Pacing} that pauses after every `sliceMs` of work. */
export class TimeSlicer implements Pacing {
  readonly #sliceMs: number;
  readonly #now: () => number;
  readonly #yield: () => Promise<void>;
  #start: number;
  /** Pauses taken so far. */
  pauses = 0;

  /** Starts the first slice now. */
  constructor(opts: TimeSlicerOptions = {}) {
    this.#sliceMs = opts.sliceMs ?? 4;
    this.#now = opts.now ?? (() => performance.now());
    this.#yield = opts.yieldTurn ?? nextTurn;
    this.#start = this.#now();
  }

  due(): boolean {
    return this.#now() - this.#start >= this.#sliceMs;
  }

  async pause(): Promise<void> {
    this.pauses++;
    await this.#yield();
    this.#start = this.#now();
  }
}

/** A {@linkcode Pacing} that never pauses (work runs in one go). */
export const NO_PAUSE: Pacing = { due: () => false, pause: () => Promise.resolve() };
