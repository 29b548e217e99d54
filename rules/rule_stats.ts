/**
 * Per-rule hit counters that survive reloads. Each engine counts hits in
 * its own array; {@linkcode RuleStats.adopt} moves the counts of the old
 * engine's rules onto the new engine's rules with the same canonical
 * fingerprint (see `fingerprint.ts`: the rule's JSON, keys sorted, outbound
 * included; compared by its 53-bit hash, `fingerprintHash`). A rule whose text changed starts from zero; `final` keeps its
 * count when the final tag is unchanged. Fingerprints are computed only at
 * `adopt` time, never on the match path.
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

  /** The engine whose counters are live. */
  get engine(): Engine | null {
    return this.#engine;
  }

  /** Makes `next` the counted engine, carrying counts of unchanged rules over. */
  adopt(next: Engine): void {
    const prev = this.#engine;
    if (prev && prev !== next) {
      const carried = new Map<number, number>();
      for (let i = 0; i < prev.ruleCount; i++) {
        const h = prev.hits(i);
        if (h === 0) continue;
        const fp = prev.fingerprint(i);
        if (!carried.has(fp)) carried.set(fp, h);
      }
      if (carried.size !== 0) {
        for (let i = 0; i < next.ruleCount; i++) {
          const fp = next.fingerprint(i);
          const h = carried.get(fp);
          if (h !== undefined) {
            next.setHits(i, h);
            carried.delete(fp);
          }
        }
      }
      if (prev.final === next.final) next.setHits("final", prev.finalHits);
    }
    this.#engine = next;
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
