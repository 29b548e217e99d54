/**
 * The cache of UDP reply sockets. A reply to a TPROXY'd client must come
 * from the address the client sent to, so it leaves through a socket bound
 * (with `IP_TRANSPARENT` + `SO_REUSEADDR`) to that original destination.
 * One such socket serves every client of that destination; the cache keeps
 * the most recently used ones, bounded, and closes the least recently used
 * when full, so fd use stays bounded whatever the churn of destinations.
 * Separate from the session table (as in shadowsocks-rust's redir): many
 * sessions share one reply socket, and evicting a socket ends no session
 * (the next reply opens it again).
 *
 * @module
 */

import { coarseNow } from "../core/coarse_clock.ts";
import type { Endpoint } from "../core/types.ts";
import { endpointKey } from "./udp_sessions.ts";

/** Counters of a {@linkcode ReplySocketCache}. */
export interface ReplyCacheCounters {
  /** Sockets opened. */
  opened: number;
  /** Sockets closed to make room. */
  evicted: number;
  /** Lookups served by a cached socket. */
  hits: number;
  /** Sockets that could not be opened (bind refused, EMFILE, …). */
  errors: number;
}

/** Options of {@linkcode ReplySocketCache}. */
export interface ReplyCacheOptions {
  /** Most sockets kept open (≥ 1). */
  maxSockets: number;
  /** Opens a reply socket bound to `ep` (throws on failure). */
  open: (ep: Endpoint) => number;
  /** Closes one. */
  close: (fd: number) => void;
  /**
   * A hit moves the socket to the recent end only when it last moved at
   * least this long ago (default 1000 ms; 0 = every hit).
   */
  reorderMs?: number;
  /** Monotonic clock in ms (default `performance.now`). */
  now?: () => number;
}

interface Entry {
  readonly fd: number;
  movedAt: number;
}

/** A bounded LRU of reply sockets keyed by the address they are bound to. */
export class ReplySocketCache {
  readonly #map = new Map<string, Entry>();
  readonly #reorderMs: number;
  readonly #now: () => number;
  readonly #max: number;
  readonly #open: (ep: Endpoint) => number;
  readonly #close: (fd: number) => void;
  readonly #c: ReplyCacheCounters = { opened: 0, evicted: 0, hits: 0, errors: 0 };

  /** Creates an empty cache; throws `RangeError` for a bad `maxSockets`. */
  constructor(opts: ReplyCacheOptions) {
    if (!Number.isInteger(opts.maxSockets) || opts.maxSockets < 1) {
      throw new RangeError(`reply socket cache size ${opts.maxSockets}: expected an integer ≥ 1`);
    }
    this.#max = opts.maxSockets;
    this.#open = opts.open;
    this.#close = opts.close;
    this.#reorderMs = opts.reorderMs ?? 1000;
    this.#now = opts.now ?? coarseNow;
  }

  /** Open sockets. */
  get size(): number {
    return this.#map.size;
  }

  /** A copy of the counters. */
  counters(): ReplyCacheCounters {
    return { ...this.#c };
  }

  /**
   * The reply socket bound to `ep`, opened on first use. Returns -1 (and
   * counts an error) when it cannot be opened.
   */
  get(ep: Endpoint, key: string = endpointKey(ep)): number {
    const hit = this.#map.get(key);
    if (hit !== undefined) {
      this.#c.hits++;
      if (this.#reorderMs > 0) {
        const now = this.#now();
        if (now - hit.movedAt < this.#reorderMs) return hit.fd;
        hit.movedAt = now;
      }
      this.#map.delete(key);
      this.#map.set(key, hit);
      return hit.fd;
    }
    if (this.#map.size >= this.#max) {
      const first = this.#map.entries().next();
      if (!first.done) {
        this.#map.delete(first.value[0]);
        this.#c.evicted++;
        this.#close(first.value[1].fd);
      }
    }
    let opened: number;
    try {
      opened = this.#open(ep);
    } catch {
      this.#c.errors++;
      return -1;
    }
    this.#c.opened++;
    this.#map.set(key, { fd: opened, movedAt: this.#reorderMs > 0 ? this.#now() : 0 });
    return opened;
  }

  /** Closes and forgets the socket bound to `ep` (e.g. after a send error). */
  invalidate(ep: Endpoint, key: string = endpointKey(ep)): void {
    const e = this.#map.get(key);
    if (e === undefined) return;
    this.#map.delete(key);
    this.#close(e.fd);
  }

  /** Closes every socket. */
  clear(): void {
    for (const e of this.#map.values()) this.#close(e.fd);
    this.#map.clear();
  }
}
