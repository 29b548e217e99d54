/**
 * A small bounded pool of pipe pairs for `splice(2)` relaying. Creating a
 * pipe and resizing it costs three syscalls (and closing it two more); a
 * pooled pipe costs none. Only empty pipes may be given back.
 *
 * @module
 */

import { close, pipe, setPipeSize } from "./socket.ts";

/** One pipe: read end, write end and its capacity in bytes. */
export interface Pipe {
  readonly r: number;
  readonly w: number;
  readonly size: number;
}

/** Options of {@linkcode PipePool}. */
export interface PipePoolOptions {
  /** Pipes kept for reuse at most (default 64; 0 disables pooling). */
  maxIdle?: number;
  /** Requested capacity per pipe (default 1 MiB; the kernel may grant less). */
  pipeSize?: number;
}

/** A bounded pool of empty pipes. */
export class PipePool {
  readonly #idle: Pipe[] = [];
  readonly #maxIdle: number;
  readonly #pipeSize: number;
  #created = 0;

  /** Creates an empty pool. */
  constructor(opts: PipePoolOptions = {}) {
    this.#maxIdle = opts.maxIdle ?? 64;
    this.#pipeSize = opts.pipeSize ?? 1 << 20;
  }

  /** Pipes created over the pool's life (for tests and stats). */
  get created(): number {
    return this.#created;
  }

  /** Pipes currently idle in the pool. */
  get idle(): number {
    return this.#idle.length;
  }

  /** Takes an idle pipe or creates one (throws `ErrnoError`, e.g. EMFILE). */
  take(): Pipe {
    const p = this.#idle.pop();
    if (p) return p;
    const [r, w] = pipe();
    let size: number;
    try {
      size = setPipeSize(w, this.#pipeSize);
    } catch (e) {
      close(r);
      close(w);
      throw e;
    }
    this.#created++;
    return { r, w, size };
  }

  /** Returns a pipe: kept if `empty` and there is room, closed otherwise. */
  give(p: Pipe, empty: boolean): void {
    if (empty && this.#idle.length < this.#maxIdle) {
      this.#idle.push(p);
      return;
    }
    close(p.r);
    close(p.w);
  }

  /** Closes every idle pipe. */
  drain(): void {
    for (const p of this.#idle.splice(0)) {
      close(p.r);
      close(p.w);
    }
  }
}

let shared: PipePool | null = null;

/** The isolate's shared pipe pool. */
export function defaultPipePool(): PipePool {
  return (shared ??= new PipePool());
}
