/**
 * The addresses clients were told for names (`route.dns_reverse_mapping`):
 * filled from the DNS responses the UDP plane relays back to clients
 * (`sniff/dns.ts`), read when a new flow has no sniffed name, so that domain
 * rules also route protocols that carry no name (SSH, games, plain TCP).
 * The name of an address is the last one a response gave for it.
 *
 * Bounded: at most `maxEntries` addresses (the least recently answered one
 * goes first), each kept for its record's TTL, but at least `minTtlMs`
 * (clients reuse an answer past its TTL: resolver caches, connections opened
 * late) and at most `maxTtlMs`.
 *
 * @module
 */

import type { DnsAnswers } from "../sniff/dns.ts";
import { latin1 } from "../sniff/domain.ts";

/** Options of {@linkcode ReverseDnsMap}. */
export interface ReverseDnsOptions {
  /** Addresses remembered (default 65536). */
  readonly maxEntries?: number;
  /** Shortest time an answer is kept, ms (default 5 min). */
  readonly minTtlMs?: number;
  /** Longest, ms (default 24 h). */
  readonly maxTtlMs?: number;
  /** Clock (ms, monotonic); default `performance.now`. */
  readonly now?: () => number;
}

interface Entry {
  readonly name: string;
  readonly expires: number;
}

/** Address → name, from DNS answers; see the module doc. */
export class ReverseDnsMap {
  readonly #map = new Map<string, Entry>();
  readonly #max: number;
  readonly #minTtl: number;
  readonly #maxTtl: number;
  readonly #now: () => number;
  #answers = 0;

  constructor(opts: ReverseDnsOptions = {}) {
    this.#max = opts.maxEntries ?? 65536;
    this.#minTtl = opts.minTtlMs ?? 300_000;
    this.#maxTtl = opts.maxTtlMs ?? 86_400_000;
    this.#now = opts.now ?? (() => performance.now());
    if (!Number.isInteger(this.#max) || this.#max < 1) {
      throw new RangeError(`maxEntries: ${this.#max}: expected a positive integer`);
    }
  }

  /** Remembers the addresses of one response. */
  record(answers: DnsAnswers): void {
    this.#answers++;
    const now = this.#now();
    for (const a of answers.addresses) {
      const k = latin1(a.addr);
      const ttl = Math.min(this.#maxTtl, Math.max(this.#minTtl, a.ttl * 1000));
      // Re-inserted: the most recent answer is the last to be dropped.
      this.#map.delete(k);
      this.#map.set(k, { name: answers.name, expires: now + ttl });
    }
    while (this.#map.size > this.#max) {
      this.#map.delete(this.#map.keys().next().value!);
    }
  }

  /** The name last answered for `addr`, if it has not expired. */
  lookup(addr: Uint8Array): string | undefined {
    const k = latin1(addr);
    const e = this.#map.get(k);
    if (e === undefined) return undefined;
    if (e.expires <= this.#now()) {
      this.#map.delete(k);
      return undefined;
    }
    return e.name;
  }

  /** Addresses held (expired ones included until looked up or pushed out). */
  get size(): number {
    return this.#map.size;
  }

  /** Responses recorded since start. */
  get answers(): number {
    return this.#answers;
  }

  /** Forgets everything. */
  clear(): void {
    this.#map.clear();
  }
}
