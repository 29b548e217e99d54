/**
 * Per-rule hit counters that survive reloads. Each engine counts hits in
 * its own array; {@linkcode RuleStats.adopt} moves the counts of the old
 * engine's rules onto the new engine's rules with the same canonical
 * fingerprint (see `fingerprint.ts`: the rule's JSON, keys sorted, outbound
 * included; compared by its 53-bit hash, `fingerprintHash`). A rule whose
 * text changed starts from zero; `final` keeps its count when the final tag
 * is unchanged. Fingerprints are never computed on the match path.
 *
 * @module
 */

import type { Engine } from "./engine.ts";

/** One row of {@linkcode RuleStats.snapshot}. */
export interface RuleHits {
  /** Rule index, or null for `final`. */
  readonly rule: number | null;
  readonly outbound: string;
  readonly hits: number;
}

/** Owner of the live engine's counters across reloads. */
export class RuleStats {
  #engine: Engine | null = null;
  #pending: Promise<void> | null = null;
  readonly #onRetire: ((engine: Engine) => void) | undefined;

  /**
   * `onRetire` is told when an engine replaced by {@linkcode RuleStats.adopt}
   * is no longer read here (its counts carried over): the router's last use
   * of it (see `CompileWorker.retire`).
   */
  constructor(opts: { onRetire?: (engine: Engine) => void } = {}) {
    this.#onRetire = opts.onRetire;
  }

  /** The engine whose counters are live. */
  get engine(): Engine | null {
    return this.#engine;
  }

  /**
   * Makes `next` the counted engine, carrying counts of unchanged rules
   * over. When `next`'s fingerprints are still on their way from the config
   * worker ({@linkcode Engine.fingerprintsReady}), the rule counts are
   * carried when they arrive (added to what `next` counted meanwhile);
   * `final`'s count is carried at once.
   */
  adopt(next: Engine): void {
    const prev = this.#engine;
    this.#engine = next;
    if (!prev || prev === next) return;
    if (prev.final === next.final) next.addHits("final", prev.finalHits);
    const ready = next.fingerprintsReady, prevReady = prev.fingerprintsReady;
    if (ready === null && prevReady === null && this.#pending === null) {
      carryHits(prev, next);
      prev.releaseCounters();
      this.#onRetire?.(prev);
      return;
    }
    // Carries run in adoption order: `prev`'s own carry may still be pending.
    const p: Promise<void> = Promise.all([this.#pending, prevReady, ready]).then(() => {
      carryHits(prev, next);
      prev.releaseCounters();
      if (this.#pending === p) this.#pending = null;
    }).finally(() => this.#onRetire?.(prev));
    this.#pending = p;
  }

  /** Resolves when every carry of hit counts started by {@linkcode RuleStats.adopt} is done. */
  async settled(): Promise<void> {
    while (this.#pending) await this.#pending;
  }

  /**
   * The rules with at least one hit, most hit first (ties in rule order),
   * at most `limit` of them, then `final`; and how many rules have hits.
   * Allocates nothing for rules without hits (a large set has 100k rules).
   */
  hot(limit: number): { rows: RuleHits[]; hit: number } {
    const e = this.#engine;
    if (!e) return { rows: [], hit: 0 };
    // Most hits first, ties in rule order. A large set may have tens of thousands of rules
    // with hits: the best `limit` are kept in a heap (its root the worst of them), O(n log k).
    const k = Math.max(0, limit);
    const worse = (a: number, b: number) => e.hits(a) - e.hits(b) || b - a; // > 0: a is better
    const heap: number[] = [];
    let hit = 0;
    // Every listed rule has hits (counts only grow; a released engine lists none).
    for (const i of e.hitRules()) {
      hit++;
      if (heap.length < k) heapPush(heap, i, worse);
      else if (k > 0 && worse(i, heap[0]!) > 0) heapReplaceTop(heap, i, worse);
    }
    const top = heap.sort((a, b) => worse(b, a));
    const rows: RuleHits[] = top.map((i) => ({
      rule: i,
      outbound: e.outboundOf(i),
      hits: e.hits(i),
    }));
    rows.push({ rule: null, outbound: e.final, hits: e.finalHits });
    return { rows, hit };
  }

  /** Current counters, one row per rule, then `final`. */
  snapshot(): RuleHits[] {
    const e = this.#engine;
    if (!e) return [];
    const rows: RuleHits[] = [];
    for (let i = 0; i < e.ruleCount; i++) {
      rows.push({ rule: i, outbound: e.outboundOf(i), hits: e.hits(i) });
    }
    rows.push({ rule: null, outbound: e.final, hits: e.finalHits });
    return rows;
  }
}

/** Adds the hits of `prev`'s rules to `next`'s rules with the same fingerprint. */
function carryHits(prev: Engine, next: Engine): void {
  const carried = new Map<number, number>();
  // In rule order: two identical rules share a fingerprint, and the first one's count goes on.
  for (const i of [...prev.hitRules()].sort((a, b) => a - b)) {
    const fp = prev.fingerprint(i);
    if (!carried.has(fp)) carried.set(fp, prev.hits(i));
  }
  if (carried.size === 0) return;
  for (let i = 0; i < next.ruleCount; i++) {
    const fp = next.fingerprint(i);
    const h = carried.get(fp);
    if (h !== undefined) {
      next.addHits(i, h);
      carried.delete(fp);
    }
  }
}

/** Pushes `x` onto the binary heap `h` whose root is its least element by `cmp`. */
function heapPush(h: number[], x: number, cmp: (a: number, b: number) => number): void {
  let i = h.length;
  h.push(x);
  while (i > 0) {
    const p = (i - 1) >> 1;
    if (cmp(h[p]!, x) <= 0) break;
    h[i] = h[p]!;
    i = p;
  }
  h[i] = x;
}

/** Replaces the root of the heap `h` (see {@linkcode heapPush}) with `x`. */
function heapReplaceTop(h: number[], x: number, cmp: (a: number, b: number) => number): void {
  let i = 0;
  for (;;) {
    const l = 2 * i + 1, r = l + 1;
    let m = i, v = x;
    if (l < h.length && cmp(h[l]!, v) < 0) m = l, v = h[l]!;
    if (r < h.length && cmp(h[r]!, v) < 0) m = r, v = h[r]!;
    if (m === i) break;
    h[i] = v;
    i = m;
  }
  h[i] = x;
}
