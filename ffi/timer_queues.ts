/**
 * Cheap timeouts for the per-flow hot path. A flow used to arm two or
 * three `setTimeout`s (sniff, connect, idle), each a heavyweight timer
 * object in Deno; at thousands of flows per second they dominated the
 * garbage the data plane made. Here all timeouts of one duration share a
 * FIFO queue (a doubly linked list, so cancelling is O(1) and frees the
 * node at once) and ONE real timer, armed for the oldest live entry:
 * entries of equal duration expire in the order they were added.
 *
 * Timers fire at most {@linkcode TimerQueuesOptions.slackMs} late (they
 * never fire early). The real timer exists only while an entry is
 * pending, so an idle isolate is not kept alive.
 *
 * @module
 */

/** A pending timeout; pass it to {@linkcode TimerQueues.clear}. */
export interface TimeoutHandle {
  /** @internal */ readonly __timeout: true;
}

interface Node extends TimeoutHandle {
  due: number;
  fn: (() => void) | null;
  prev: Node | null;
  next: Node | null;
  queue: Queue | null;
}

/** Timer functions, injectable for tests. */
export interface TimerQueuesClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
}

/** Options of {@linkcode TimerQueues}. */
export interface TimerQueuesOptions {
  /** Timers may fire this much late, so one real timer serves a burst (default 5 ms). */
  slackMs?: number;
  /** Clock and real timers (default `performance.now` and the global timers). */
  clock?: TimerQueuesClock;
}

const realClock: TimerQueuesClock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id as number),
};

class Queue {
  head: Node | null = null;
  tail: Node | null = null;
  timer: unknown = null;
  timerDue = 0;
  constructor(readonly ms: number) {}
}

/** Timeouts grouped by duration, one real timer per duration in use. */
export class TimerQueues {
  readonly #queues = new Map<number, Queue>();
  readonly #clock: TimerQueuesClock;
  readonly #slack: number;
  #pending = 0;

  /** Creates an empty set of queues. */
  constructor(opts: TimerQueuesOptions = {}) {
    this.#clock = opts.clock ?? realClock;
    this.#slack = Math.max(0, opts.slackMs ?? 5);
  }

  /** Timeouts waiting to fire. */
  get pending(): number {
    return this.#pending;
  }

  /** Calls `fn` once, `ms` (≥ 0, rounded to whole ms) from now, unless cleared first. */
  set(ms: number, fn: () => void): TimeoutHandle {
    const d = Number.isFinite(ms) && ms > 0 ? Math.ceil(ms) : 0;
    let q = this.#queues.get(d);
    if (!q) {
      q = new Queue(d);
      this.#queues.set(d, q);
    }
    const node: Node = {
      __timeout: true,
      due: this.#clock.now() + d,
      fn,
      prev: q.tail,
      next: null,
      queue: q,
    };
    if (q.tail) q.tail.next = node;
    else q.head = node;
    q.tail = node;
    this.#pending++;
    if (q.timer === null) this.#arm(q);
    return node;
  }

  /** Cancels a timeout; a no-op when it already fired or was cleared. */
  clear(handle: TimeoutHandle): void {
    const node = handle as Node;
    const q = node.queue;
    if (!q) return;
    this.#unlink(q, node);
    // The real timer stays armed: it fires, finds the next live entry (or
    // none) and re-arms or stops. Cheaper than re-arming on every clear.
  }

  #unlink(q: Queue, node: Node): void {
    if (node.prev) node.prev.next = node.next;
    else q.head = node.next;
    if (node.next) node.next.prev = node.prev;
    else q.tail = node.prev;
    node.prev = node.next = null;
    node.queue = null;
    node.fn = null;
    this.#pending--;
  }

  #arm(q: Queue): void {
    const head = q.head;
    if (!head) {
      q.timer = null;
      this.#queues.delete(q.ms); // durations need not come from a small set
      return;
    }
    const now = this.#clock.now();
    const at = Math.max(head.due, now) + this.#slack;
    q.timerDue = at;
    q.timer = this.#clock.setTimeout(() => this.#fire(q), Math.max(0, at - now));
  }

  #fire(q: Queue): void {
    q.timer = null;
    const now = this.#clock.now();
    while (q.head && q.head.due <= now) {
      const node = q.head;
      const fn = node.fn!;
      this.#unlink(q, node);
      try {
        fn();
      } catch (e) {
        // A throwing callback must not stop the others; report it like a timer would.
        queueMicrotask(() => {
          throw e;
        });
      }
    }
    if (q.timer === null) this.#arm(q);
  }
}

let shared: TimerQueues | null = null;

/** The isolate's shared timer queues. */
export function defaultTimerQueues(): TimerQueues {
  return (shared ??= new TimerQueues());
}
