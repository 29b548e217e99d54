/**
 * The UDP session table: sessions keyed by (client address, original
 * destination), so each destination a client talks to is routed on its own.
 * Bounded (least recently used session evicted when full), expiring (idle
 * timeout per session), with counters. Pure: no sockets, clock injected.
 *
 * Order of the underlying `Map` is recency: {@linkcode touch} moves a
 * session to the end (at most once per `reorderMs`, so a busy session costs
 * no map surgery per datagram), eviction takes the first entry, and a sweep
 * stops at the first session placed less than the shortest timeout ago:
 * every later one was active since.
 *
 * @module
 */

import { coarseNow } from "../core/coarse_clock.ts";
import type { Endpoint } from "../core/types.ts";

/** What the table needs of a session. */
export interface SessionEntry {
  /** Clock reading of the last datagram either way. */
  lastActive: number;
  /** Idle time after which the session expires. */
  timeoutMs: number;
  /** Clock reading when the session last moved to the end (set by the table). */
  orderedAt?: number;
}

/** Why a session left the table. */
export type RemoveReason = "expired" | "evicted" | "closed";

/** Counters of a {@linkcode UdpSessionTable}. */
export interface UdpSessionCounters {
  /** Sessions created. */
  created: number;
  /** Sessions removed after their idle timeout. */
  expired: number;
  /** Sessions removed to make room (LRU). */
  evicted: number;
  /** Sessions closed otherwise (error, upstream gone, shutdown). */
  closed: number;
  /** Datagrams dropped (blocked, buffer full, send failed, no session possible). */
  dropped: number;
}

/** Options of {@linkcode UdpSessionTable}. */
export interface UdpSessionTableOptions<S> {
  /** Most sessions at once (≥ 1). */
  maxSessions: number;
  /** Monotonic clock in ms (default `performance.now`). */
  now?: () => number;
  /** Called once for every session leaving the table (close its sockets here). */
  onRemove?: (session: S, reason: RemoveReason) => void;
  /**
   * A touched session moves to the recent end only when it last moved at
   * least this long ago (default 1000 ms; 0 = every touch). Eviction is then
   * LRU within this granularity.
   */
  reorderMs?: number;
}

/** A bounded, expiring LRU of UDP sessions. */
export class UdpSessionTable<S extends SessionEntry> {
  readonly #map = new Map<string, S>();
  readonly #max: number;
  readonly #now: () => number;
  readonly #onRemove: (session: S, reason: RemoveReason) => void;
  readonly #reorderMs: number;
  #minTimeout = Infinity;
  readonly #c: UdpSessionCounters = { created: 0, expired: 0, evicted: 0, closed: 0, dropped: 0 };

  /** Creates an empty table; throws `RangeError` for a bad `maxSessions`. */
  constructor(opts: UdpSessionTableOptions<S>) {
    if (!Number.isInteger(opts.maxSessions) || opts.maxSessions < 1) {
      throw new RangeError(`udp_max_sessions: ${opts.maxSessions}: expected an integer ≥ 1`);
    }
    this.#max = opts.maxSessions;
    this.#now = opts.now ?? coarseNow;
    this.#onRemove = opts.onRemove ?? (() => {});
    this.#reorderMs = opts.reorderMs ?? 1000;
  }

  /** Sessions in the table. */
  get size(): number {
    return this.#map.size;
  }

  /** The configured bound. */
  get maxSessions(): number {
    return this.#max;
  }

  /** A copy of the counters. */
  counters(): UdpSessionCounters {
    return { ...this.#c };
  }

  /** The session under `key`, if any (does not touch it). */
  get(key: string): S | undefined {
    return this.#map.get(key);
  }

  /** Sessions, least recently active first. */
  values(): IterableIterator<S> {
    return this.#map.values();
  }

  /** Marks `key`'s session active now and makes it the most recent. */
  touch(key: string, session: S): void {
    const now = this.#now();
    session.lastActive = now;
    if (now - (session.orderedAt ?? 0) < this.#reorderMs) return;
    session.orderedAt = now;
    this.#map.delete(key);
    this.#map.set(key, session);
  }

  /**
   * Adds a new session (active now). When the table is full the least
   * recently active session is evicted first. Returns the evicted session.
   */
  add(key: string, session: S): S | null {
    let evicted: S | null = null;
    if (this.#map.has(key)) this.delete(key, "closed");
    if (this.#map.size >= this.#max) {
      const first = this.#map.entries().next();
      if (!first.done) {
        const [k, s] = first.value;
        this.#map.delete(k);
        this.#c.evicted++;
        evicted = s;
        this.#onRemove(s, "evicted");
      }
    }
    session.lastActive = session.orderedAt = this.#now();
    if (session.timeoutMs < this.#minTimeout) this.#minTimeout = session.timeoutMs;
    this.#map.set(key, session);
    this.#c.created++;
    return evicted;
  }

  /** Removes `key`'s session (no-op when absent). Returns true when it was there. */
  delete(key: string, reason: RemoveReason = "closed"): boolean {
    const s = this.#map.get(key);
    if (!s) return false;
    this.#map.delete(key);
    this.#c[reason]++;
    this.#onRemove(s, reason);
    return true;
  }

  /** Counts `n` dropped datagrams. */
  drop(n = 1): void {
    this.#c.dropped += n;
  }

  /**
   * Removes every session idle for at least its timeout. Scans from the
   * least recent and stops at the first session that moved to the end less
   * than the shortest timeout ago (all later ones were active after it).
   * Returns how many expired.
   */
  sweep(): number {
    const now = this.#now();
    const gone: [string, S][] = [];
    for (const [k, s] of this.#map) {
      if (now - (s.orderedAt ?? s.lastActive) < this.#minTimeout) break;
      if (now - s.lastActive >= s.timeoutMs) gone.push([k, s]);
    }
    for (const [k] of gone) this.delete(k, "expired");
    return gone.length;
  }

  /** Removes every session with `reason` (shutdown). */
  clear(reason: RemoveReason = "closed"): void {
    for (const k of [...this.#map.keys()]) this.delete(k, reason);
  }
}

/** Per-protocol idle timeouts (ms); each is capped by the inbound's `udp_timeout`. */
export interface UdpTimeouts {
  /** Default for every session: the inbound's `udp_timeout` (default 5 min). */
  readonly defaultMs: number;
  /** DNS (destination port 53). Default 10 s. */
  readonly dnsMs: number;
  /** QUIC (sniffed as QUIC, or destination port 443 when not sniffed). Default 30 s. */
  readonly quicMs: number;
}

/** Default per-protocol timeouts for a given `udp_timeout`. */
export function defaultUdpTimeouts(udpTimeoutMs = 300_000): UdpTimeouts {
  return { defaultMs: udpTimeoutMs, dnsMs: 10_000, quicMs: 30_000 };
}

/**
 * The idle timeout of a session to `dst`: DNS and QUIC get their shorter
 * timeouts, never longer than the default.
 */
export function sessionTimeout(
  t: UdpTimeouts,
  dst: Endpoint,
  protocol: string | undefined,
): number {
  if (dst.port === 53) return Math.min(t.dnsMs, t.defaultMs);
  if (protocol === "quic" || (protocol === undefined && dst.port === 443)) {
    return Math.min(t.quicMs, t.defaultMs);
  }
  return t.defaultMs;
}

/**
 * The key of one endpoint: the address bytes and port as a short binary
 * string (the reply-socket cache is keyed by destination). Session keys come
 * from the raw sockaddrs instead (`RecvBatch.flowKey`).
 */
export function endpointKey(ep: Endpoint): string {
  let k = String.fromCharCode(ep.addr.length, ep.port >> 8, ep.port & 0xff);
  for (let i = 0; i < ep.addr.length; i++) k += String.fromCharCode(ep.addr[i]!);
  return k;
}
