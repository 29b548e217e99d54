/**
 * The table of open flows: what `connections.list` shows and
 * `connections.close` acts on. Bounded: the router refuses new flows past
 * `maxFlows` rather than exhausting fds.
 *
 * @module
 */

import { formatEndpoint } from "../core/ip.ts";
import type { FlowMeta } from "../core/types.ts";

/** One open flow. Counters are updated live by the relay. */
export interface Flow {
  readonly id: number;
  readonly meta: FlowMeta;
  readonly startedAt: number;
  /** Set once the rule engine decided. */
  outbound: string | null;
  rule: number | null;
  /** Engine generation the decision came from. */
  generation: number;
  readonly counters: { up: number; down: number };
  /** Aborting closes the flow (both sides). */
  readonly abort: AbortController;
}

/** JSON shape of a flow in `connections.list`. */
export interface FlowInfo {
  id: number;
  network: string;
  inbound: string;
  source: string;
  destination: string;
  domain: string | null;
  protocol: string | null;
  outbound: string | null;
  rule: number | null;
  generation: number;
  upload: number;
  download: number;
  age_ms: number;
}

/** Open flows by id. */
export class FlowTable {
  readonly #flows = new Map<number, Flow>();
  #nextId = 1;
  readonly #maxFlows: number;
  readonly #now: () => number;

  /** Creates an empty table holding at most `maxFlows` flows. */
  constructor(opts: { maxFlows: number; now?: () => number }) {
    this.#maxFlows = opts.maxFlows;
    this.#now = opts.now ?? Date.now;
  }

  /** Number of open flows. */
  get size(): number {
    return this.#flows.size;
  }

  /** A new id from the flows' sequence (UDP sessions take theirs from it too). */
  allocateId(): number {
    return this.#nextId++;
  }

  /** Adds a flow, or returns null when the table is full. */
  add(meta: FlowMeta): Flow | null {
    if (this.#flows.size >= this.#maxFlows) return null;
    const flow: Flow = {
      id: this.#nextId++,
      meta,
      startedAt: this.#now(),
      outbound: null,
      rule: null,
      generation: 0,
      counters: { up: 0, down: 0 },
      abort: new AbortController(),
    };
    this.#flows.set(flow.id, flow);
    return flow;
  }

  /** Removes a flow (idempotent). */
  delete(id: number): void {
    this.#flows.delete(id);
  }

  /** The flow with `id`, if open. */
  get(id: number): Flow | undefined {
    return this.#flows.get(id);
  }

  /** All open flows, oldest first. */
  values(): IterableIterator<Flow> {
    return this.#flows.values();
  }

  /** Aborts the flows `pick` selects; returns how many. */
  close(pick: (f: Flow) => boolean, reason: string): number {
    let n = 0;
    for (const f of this.#flows.values()) {
      if (!pick(f)) continue;
      f.abort.abort(new Error(reason));
      n++;
    }
    return n;
  }

  /** JSON view of one flow. */
  info(f: Flow): FlowInfo {
    return {
      id: f.id,
      network: f.meta.network,
      inbound: f.meta.inbound,
      source: formatEndpoint(f.meta.source),
      destination: formatEndpoint(f.meta.destination),
      domain: f.meta.domain ?? null,
      protocol: f.meta.protocol ?? null,
      outbound: f.outbound,
      rule: f.rule,
      generation: f.generation,
      upload: f.counters.up,
      download: f.counters.down,
      age_ms: this.#now() - f.startedAt,
    };
  }
}
