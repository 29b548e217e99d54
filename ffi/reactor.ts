/**
 * One epoll reactor per isolate. Sockets are registered edge-triggered for
 * `EPOLLIN | EPOLLOUT | EPOLLRDHUP`; callers try their non-blocking call
 * first and await {@linkcode Reactor.readable} / {@linkcode Reactor.writable}
 * only after it returned "would block".
 *
 * How it waits (DESIGN.md §3): while someone waits, a loop first polls with
 * a synchronous `epoll_wait(…, 0)` (no thread hop), then blocks briefly
 * (500 µs) in a synchronous `epoll_pwait2`, and only when nothing is ready
 * parks in the `nonblocking` `epoll_wait(…, -1)`, which runs on a worker
 * thread. There is a single parked call per epoll fd, its event
 * buffer lives in a field (Deno does not keep it alive), and an eventfd
 * wakes it when the last waiter goes away or on `close()`. With no waiters
 * nothing is pending, so the reactor never keeps the process alive.
 *
 * @module
 */

import { ClosedError, Errno, ErrnoError } from "./errno.ts";
import { errnoView, libc } from "./libc.ts";

/** `EPOLLIN`. */
export const EPOLLIN = 0x001;
/** `EPOLLOUT`. */
export const EPOLLOUT = 0x004;
/** `EPOLLERR`. */
export const EPOLLERR = 0x008;
/** `EPOLLHUP`. */
export const EPOLLHUP = 0x010;
/** `EPOLLRDHUP`. */
export const EPOLLRDHUP = 0x2000;
/** `EPOLLET`. */
export const EPOLLET = 0x80000000;
/** `EPOLLONESHOT`. */
export const EPOLLONESHOT = 0x40000000;

const EPOLL_CTL_ADD = 1;
const EPOLL_CTL_DEL = 2;
const EPOLL_CTL_MOD = 3;
const EPOLL_CLOEXEC = 0o2000000;
const EFD_NONBLOCK = 0o4000;
const EFD_CLOEXEC = 0o2000000;
/** `struct epoll_event` is packed on x86_64: u32 events · u64 data. */
const EVENT_SIZE = 12;
const WAKE_TOKEN = 0;
const READ_MASK = EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR;
const WRITE_MASK = EPOLLOUT | EPOLLHUP | EPOLLERR;

/** Options of {@linkcode Reactor}. */
export interface ReactorOptions {
  /** Events harvested per epoll_wait call (default 256). */
  maxEvents?: number;
  /**
   * Microtask turns the loop yields, re-polling synchronously, before it
   * blocks (and then parks in the worker-thread epoll_wait); default 16.
   * Lets promise chains woken by the last batch issue their next I/O first:
   * a chain still running when the loop blocks waits out the blocking wait.
   * A new connection takes ~10 hops from its first bytes to its dial
   * (sniff → rules → outbound): with 4 turns it waited 500 µs there, and a
   * new connection through a SOCKS outbound took 1.1 ms instead of 0.25 ms
   * (`bench/socks_bench.ts`).
   */
  spinTurns?: number;
  /**
   * Longest stretch (ms) the loop keeps dispatching synchronously before it
   * parks once anyway, so timers and other I/O of the event loop are not
   * starved under sustained traffic (default 2).
   */
  maxBusyMs?: number;
  /**
   * After the spins, block this long (µs) in a synchronous `epoll_pwait2`
   * before parking in the worker-thread epoll_wait (0 = off). An event
   * arriving within it is handled without two thread hops; timers and other
   * I/O of the isolate wait at most this long. Default 500 µs: in the netns
   * bench (1 stream, 6 GB) 0 / 200 / 500 / 1000 / 2000 µs gave ~23 / ~22 /
   * ~26.5 / ~26 / ~26 Gbit/s at ~118 / ~114 / ~94 / ~96 / ~98 cs of router
   * CPU (docs/performance.md). Skipped when libc has no `epoll_pwait2`
   * (glibc < 2.35).
   */
  blockUs?: number;
}

interface Waiter {
  resolve: () => void;
  reject: (e: Error) => void;
}

interface Entry {
  readonly fd: number;
  readonly token: number;
  rdReady: boolean;
  wrReady: boolean;
  rd: Waiter | null;
  wr: Waiter | null;
  /** Armed only while someone waits (see {@linkcode RegisterOptions.oneshot}). */
  readonly oneshot: boolean;
}

/** Options of {@linkcode Reactor.register}. */
export interface RegisterOptions {
  /**
   * Report events only while a wait is pending (`EPOLLONESHOT`, re-armed by
   * each wait that is not already satisfied; one `epoll_ctl` per such wait).
   * For sockets that are read or written in bursts without waiting — a UDP
   * socket under load gets a readiness edge for every datagram that arrives
   * and a write-space wake-up for every one it sends — so that the reactor
   * does not poll for events nobody waits for. Default false: edge-triggered
   * in + out, always armed.
   */
  readonly oneshot?: boolean;
}

/** Counters of a reactor, for status output and tests. */
export interface ReactorStats {
  /** Registered fds. */
  registered: number;
  /** Pending readable/writable waits. */
  waiters: number;
  /** Synchronous epoll_wait calls that returned events. */
  syncPolls: number;
  /** Short blocking epoll_pwait2 calls (the thread blocked up to `blockUs`). */
  blocks: number;
  /** Short blocking epoll_pwait2 calls that returned events. */
  blockPolls: number;
  /** Worker-thread (parked) epoll_wait calls. */
  parkedPolls: number;
  /** eventfd wake-ups written. */
  wakeups: number;
}

const RESOLVED: Promise<void> = Promise.resolve();

/** An epoll reactor. Use {@linkcode defaultReactor} for the isolate's shared one. */
export class Reactor {
  #epfd = -1;
  #efd = -1;
  readonly #byFd = new Map<number, Entry>();
  readonly #byToken = new Map<number, Entry>();
  #nextToken = 1;
  #waiters = 0;
  #running = false;
  #parked = false;
  /** Set by {@linkcode parkSoon}: park at the next poll. */
  #parkSoon = false;
  #closed = false;
  #idleWaiters: (() => void)[] = [];
  readonly #maxEvents: number;
  readonly #spinTurns: number;
  readonly #maxBusyMs: number;
  readonly #blockUs: number;
  /** `struct timespec` of the short blocking wait. */
  readonly #blockTs = new Uint8Array(new ArrayBuffer(16));
  // Long-lived buffers: the parked nonblocking epoll_wait writes into
  // #events after this function returned, and eventfd reads/writes use
  // #wakeBuf; both must outlive any pending call.
  readonly #events: Uint8Array;
  readonly #eventsView: DataView;
  readonly #wakeBuf = new Uint8Array(new ArrayBuffer(8));
  readonly #epollEvent = new Uint8Array(new ArrayBuffer(EVENT_SIZE));
  readonly #stats = { syncPolls: 0, blocks: 0, blockPolls: 0, parkedPolls: 0, wakeups: 0 };

  /** Creates a reactor; the epoll fd is opened on the first `register`. */
  constructor(opts: ReactorOptions = {}) {
    this.#maxEvents = opts.maxEvents ?? 256;
    this.#spinTurns = opts.spinTurns ?? 16;
    this.#maxBusyMs = opts.maxBusyMs ?? 2;
    this.#blockUs = Math.max(0, Math.min(opts.blockUs ?? 500, 999_999));
    const ts = new DataView(this.#blockTs.buffer);
    ts.setBigInt64(0, 0n, true);
    ts.setBigInt64(8, BigInt(Math.floor(this.#blockUs * 1000)), true);
    this.#events = new Uint8Array(new ArrayBuffer(this.#maxEvents * EVENT_SIZE));
    this.#eventsView = new DataView(this.#events.buffer);
  }

  /** True after {@linkcode close}. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Current counters. */
  stats(): ReactorStats {
    return { registered: this.#byFd.size, waiters: this.#waiters, ...this.#stats };
  }

  #open(): void {
    if (this.#epfd >= 0) return;
    const L = libc();
    const E = errnoView();
    const epfd = L.epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) throw new ErrnoError("epoll_create1", E[0]!);
    const efd = L.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (efd < 0) {
      const e = E[0]!;
      L.close(epfd);
      throw new ErrnoError("eventfd", e);
    }
    this.#epfd = epfd;
    this.#efd = efd;
    this.#ctlAdd(efd, WAKE_TOKEN, EPOLLIN);
  }

  /** `epoll_ctl(op, fd)` with `events` and `token`: 0 or the errno. */
  #ctlTry(op: number, fd: number, token: number, events: number): number {
    const ev = this.#epollEvent;
    const dv = new DataView(ev.buffer);
    dv.setUint32(0, events >>> 0, true);
    dv.setUint32(4, token, true);
    dv.setUint32(8, 0, true);
    const E = errnoView();
    return libc().epoll_ctl(this.#epfd, op, fd, ev) < 0 ? E[0]! : 0;
  }

  #ctlAdd(fd: number, token: number, events: number): void {
    const e = this.#ctlTry(EPOLL_CTL_ADD, fd, token, events);
    if (e !== 0) throw new ErrnoError("epoll_ctl", e, `ADD fd=${fd}`);
  }

  /**
   * Arms a oneshot entry for the directions waited on. Modifying a ready fd
   * queues its event at once, so readiness that came before is not lost.
   */
  #arm(entry: Entry): void {
    const events = (entry.rd ? EPOLLIN | EPOLLRDHUP : 0) | (entry.wr ? EPOLLOUT : 0);
    const e = this.#ctlTry(EPOLL_CTL_MOD, entry.fd, entry.token, events | EPOLLONESHOT);
    if (e === 0) return;
    const err = new ErrnoError("epoll_ctl", e, `MOD fd=${entry.fd}`);
    this.#settle(entry, "rd", err);
    this.#settle(entry, "wr", err);
  }

  /**
   * Registers a non-blocking fd: edge-triggered in + out + rdhup, or armed
   * per wait with `oneshot` (see {@linkcode RegisterOptions}).
   */
  register(fd: number, opts: RegisterOptions = {}): void {
    if (this.#closed) throw new ClosedError("Cannot register fd: reactor is closed");
    if (this.#byFd.has(fd)) throw new Error(`Cannot register fd ${fd}: already registered`);
    this.#open();
    let token = this.#nextToken;
    this.#nextToken = token >= 0xfffffffe ? 1 : token + 1;
    while (this.#byToken.has(token)) token = token >= 0xfffffffe ? 1 : token + 1;
    const oneshot = opts.oneshot === true;
    // A oneshot fd starts disarmed: its owner tries its call first and waits
    // only after "would block", and the wait arms it.
    this.#ctlAdd(fd, token, oneshot ? EPOLLONESHOT : EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
    const entry: Entry = {
      fd,
      token,
      rdReady: false,
      wrReady: false,
      rd: null,
      wr: null,
      oneshot,
    };
    this.#byFd.set(fd, entry);
    this.#byToken.set(token, entry);
  }

  /** True when `fd` is registered. */
  has(fd: number): boolean {
    return this.#byFd.has(fd);
  }

  /**
   * Removes `fd` from epoll and rejects its pending waits with a
   * `ClosedError`. Call it before closing the fd. Unknown fds are ignored.
   */
  unregister(fd: number): void {
    const entry = this.#byFd.get(fd);
    if (!entry) return;
    this.#byFd.delete(fd);
    this.#byToken.delete(entry.token);
    if (this.#epfd >= 0) libc().epoll_ctl(this.#epfd, EPOLL_CTL_DEL, fd, this.#epollEvent);
    const err = entry.rd || entry.wr ? new ClosedError(`fd ${fd} was closed`) : null;
    if (entry.rd) this.#settle(entry, "rd", err);
    if (entry.wr) this.#settle(entry, "wr", err);
  }

  /** Resolves once `fd` reports readability (or EOF/error) after the last wait. */
  readable(fd: number): Promise<void> {
    return this.#wait(fd, "rd");
  }

  /** Resolves once `fd` reports writability (or error) after the last wait. */
  writable(fd: number): Promise<void> {
    return this.#wait(fd, "wr");
  }

  /**
   * Makes the reactor park at its next poll (waiting on a worker thread, so
   * that the event loop gets a turn: timers, the rest of its I/O), however
   * long it has been busy. For a loop that kept the thread busy and now
   * waits on its fd: `parkSoon()` then `await readable(fd)`, the wait
   * returning right after the turn when the fd is still readable. (A
   * `setTimeout(0)` instead is clamped to 4 ms once nested five deep.)
   */
  parkSoon(): void {
    if (!this.#parked) this.#parkSoon = true;
  }

  /**
   * Rejects a pending wait on `fd` with `reason` (used for timeouts).
   * Returns false when nothing was waiting.
   */
  cancel(fd: number, dir: "read" | "write", reason: Error): boolean {
    const entry = this.#byFd.get(fd);
    const key = dir === "read" ? "rd" : "wr";
    if (!entry || !entry[key]) return false;
    this.#settle(entry, key, reason);
    return true;
  }

  #wait(fd: number, key: "rd" | "wr"): Promise<void> {
    const entry = this.#byFd.get(fd);
    if (!entry) {
      return Promise.reject(
        this.#closed
          ? new ClosedError("reactor is closed")
          : new ClosedError(`fd ${fd} is not registered`),
      );
    }
    if (key === "rd" ? entry.rdReady : entry.wrReady) {
      if (key === "rd") entry.rdReady = false;
      else entry.wrReady = false;
      return RESOLVED;
    }
    if (entry[key]) {
      return Promise.reject(new Error(`Cannot wait on fd ${fd}: a ${key} wait is pending`));
    }
    const p = new Promise<void>((resolve, reject) => {
      entry[key] = { resolve, reject };
    });
    this.#waiters++;
    if (entry.oneshot) this.#arm(entry);
    if (!this.#running) void this.#run();
    return p;
  }

  #settle(entry: Entry, key: "rd" | "wr", err: Error | null): void {
    const w = entry[key];
    if (!w) return;
    entry[key] = null;
    this.#waiters--;
    if (err) w.reject(err);
    else w.resolve();
    if (this.#waiters === 0 && this.#parked) this.#wake();
  }

  #wake(): void {
    if (this.#efd < 0) return;
    new DataView(this.#wakeBuf.buffer).setBigUint64(0, 1n, true);
    libc().write(this.#efd, this.#wakeBuf, 8);
    this.#stats.wakeups++;
  }

  #dispatch(n: number): void {
    const dv = this.#eventsView;
    for (let i = 0; i < n; i++) {
      const off = i * EVENT_SIZE;
      const events = dv.getUint32(off, true);
      const token = dv.getUint32(off + 4, true);
      if (token === WAKE_TOKEN) {
        libc().read(this.#efd, this.#wakeBuf, 8);
        continue;
      }
      const entry = this.#byToken.get(token);
      if (!entry) continue;
      if (events & READ_MASK) {
        if (entry.rd) this.#settle(entry, "rd", null);
        else entry.rdReady = true;
      }
      if (events & WRITE_MASK) {
        if (entry.wr) this.#settle(entry, "wr", null);
        else entry.wrReady = true;
      }
      // The event disarmed it: re-arm for a wait in the other direction.
      if (entry.oneshot && (entry.rd || entry.wr)) this.#arm(entry);
    }
  }

  async #run(): Promise<void> {
    this.#running = true;
    const L = libc();
    try {
      let spins = 0, turns = 0, worked = false;
      let busySince = performance.now();
      while (this.#waiters > 0 && !this.#closed) {
        // Busy for maxBusyMs since the last park: park once now (below), so
        // that timers and the rest of the event loop get their turn. The clock
        // is read after a turn that did work, and every 8th empty one (a read
        // is an op call; an empty turn takes about a microsecond).
        const busy: boolean = this.#parkSoon ||
          ((worked || (++turns & 7) === 0) && performance.now() - busySince > this.#maxBusyMs);
        const n: number = busy ? 0 : L.epoll_wait(this.#epfd, this.#events, this.#maxEvents, 0);
        worked = n > 0;
        if (n > 0) {
          this.#stats.syncPolls++;
          this.#dispatch(n);
          spins = 0;
          await undefined;
          continue;
        }
        if (spins < this.#spinTurns && !busy) {
          spins++;
          await undefined;
          continue;
        }
        spins = 0;
        if (this.#blockUs > 0 && L.epoll_pwait2 !== null && !busy) {
          this.#stats.blocks++;
          const b = L.epoll_pwait2(this.#epfd, this.#events, this.#maxEvents, this.#blockTs, null);
          if (b > 0) {
            this.#stats.blockPolls++;
            this.#dispatch(b);
            await undefined;
            continue;
          }
        }
        this.#parked = true;
        this.#parkSoon = false;
        this.#stats.parkedPolls++;
        let m: number;
        try {
          m = await L.epoll_wait_nb(this.#epfd, this.#events, this.#maxEvents, -1);
        } finally {
          this.#parked = false;
          busySince = performance.now();
        }
        if (m > 0) this.#dispatch(m);
      }
    } catch (e) {
      // A failing epoll_wait would leave every waiter hanging: fail them all.
      const err = e instanceof Error ? e : new Error(String(e));
      for (const entry of this.#byFd.values()) {
        this.#settle(entry, "rd", err);
        this.#settle(entry, "wr", err);
      }
    } finally {
      this.#running = false;
      if (this.#closed) this.#release();
      if (!this.#closed && this.#waiters > 0) void this.#run();
      else for (const r of this.#idleWaiters.splice(0)) r();
    }
  }

  /**
   * Resolves once no epoll_wait is pending (no waiters left, loop ended).
   * Tests await it so that no async op outlives them.
   */
  idle(): Promise<void> {
    if (!this.#running) return RESOLVED;
    return new Promise((r) => this.#idleWaiters.push(r));
  }

  /**
   * Closes the reactor: pending waits reject with `ClosedError`, a parked
   * epoll_wait is woken, and the epoll and event fds are closed once it has
   * returned. Registered fds are not closed (their owners do that).
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const err = new ClosedError("reactor is closed");
    const wasParked = this.#parked;
    for (const entry of [...this.#byFd.values()]) {
      this.#byFd.delete(entry.fd);
      this.#byToken.delete(entry.token);
      this.#settle(entry, "rd", err);
      this.#settle(entry, "wr", err);
    }
    if (wasParked) this.#wake();
    if (!this.#running) this.#release();
  }

  #release(): void {
    if (this.#epfd < 0) return;
    const L = libc();
    L.close(this.#epfd);
    L.close(this.#efd);
    this.#epfd = -1;
    this.#efd = -1;
  }
}

let shared: Reactor | null = null;

/** The isolate's shared reactor (created on first use; replaced if it was closed). */
export function defaultReactor(): Reactor {
  if (!shared || shared.closed) shared = new Reactor();
  return shared;
}

/** Errno check helper for callers that must not throw on a closed reactor. */
export function isClosedError(e: unknown): boolean {
  return e instanceof ClosedError ||
    (e instanceof ErrnoError && e.errno === Errno.EBADF);
}
