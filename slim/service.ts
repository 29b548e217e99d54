/**
 * The Slim Node's operations over the store and the kernel. Every change is
 * serialised, applied to the kernel and the store together, and undone in
 * the kernel when it cannot be stored (or the other way round), so state and
 * kernel never drift apart. At start {@linkcode SlimService.reconcile} makes
 * the kernel match the store and reports what failed.
 *
 * @module
 */

import type { Logger } from "../core/log.ts";
import { ConflictError, KernelError, NotFoundError } from "./errors.ts";
import type { Kernel } from "./kernel.ts";
import { generateKeyPair, publicKeyOf } from "./keys.ts";
import {
  type PeerInput,
  type PeerRecord,
  peerToJson,
  type RuleInput,
  type RuleRecord,
  ruleToJson,
} from "./model.ts";
import { renderRuleset } from "./nft.ts";
import type { Store } from "./store.ts";
import { peerInterface, ValidationError } from "./validate.ts";

/** Options of {@linkcode SlimService}. */
export interface ServiceOptions {
  store: Store;
  kernel: Kernel;
  logger: Logger;
  /** Our nftables table name. */
  table: string;
  /** Drop traffic from a peer to anything but another peer. */
  peersOnly: boolean;
  /** MTU of new peers without one. */
  defaultMtu: number;
  /** Keepalive of new peers without one; null for off. */
  defaultKeepalive: number | null;
  /** Listen ports handed out to peers without one (inclusive). */
  listenPortRange: readonly [number, number];
  /** Most peers the node holds. */
  maxPeers: number;
  /** Most forwarding rules the node holds. */
  maxRules: number;
  /** Delete `wg-peer-*` interfaces that are not in the store at start. */
  pruneUnknownInterfaces: boolean;
  /** Clock, injectable for tests. */
  now?: () => Date;
}

/** A problem found while applying stored state to the kernel. */
export interface Problem {
  /** `peer`, `rule` or `table`. */
  readonly kind: "peer" | "rule" | "table";
  /** Peer tag, rule id, or table name. */
  readonly id: string;
  readonly error: string;
}

/** What {@linkcode SlimService.reconcile} did. */
export interface ReconcileReport {
  readonly peersApplied: string[];
  readonly pruned: string[];
  readonly rulesApplied: number[];
  readonly problems: Problem[];
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function sameRule(a: RuleInput, b: RuleInput): boolean {
  return a.from === b.from && a.to === b.to && a.bidirectional === b.bidirectional &&
    a.protocol === b.protocol && JSON.stringify(a.ports) === JSON.stringify(b.ports);
}

/** The Slim Node's operations. */
export class SlimService {
  readonly #o: ServiceOptions;
  readonly #log: Logger;
  readonly #now: () => Date;
  /** Problems by `kind:id`; cleared when the thing applies again. */
  readonly #problems = new Map<string, Problem>();
  #tail: Promise<unknown> = Promise.resolve();
  readonly startedAt: Date;

  constructor(opts: ServiceOptions) {
    this.#o = opts;
    this.#log = opts.logger;
    this.#now = opts.now ?? (() => new Date());
    this.startedAt = this.#now();
  }

  /** Runs `fn` after every change before it: one change at a time. */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(fn, fn);
    this.#tail = run.catch(() => {});
    return run;
  }

  #problem(kind: Problem["kind"], id: string, error: unknown): void {
    const p = { kind, id, error: message(error) };
    this.#problems.set(`${kind}:${id}`, p);
    this.#log.error(`cannot apply ${kind}`, { id, error: p.error });
  }

  #clear(kind: Problem["kind"], id: string): void {
    this.#problems.delete(`${kind}:${id}`);
  }

  #render(rules: readonly RuleRecord[]): string {
    return renderRuleset(rules, { table: this.#o.table, peersOnly: this.#o.peersOnly });
  }

  /** Applies `rules` as our table; a failure becomes a KernelError. */
  async #applyRules(rules: readonly RuleRecord[]): Promise<void> {
    try {
      await this.#o.kernel.applyRuleset(this.#render(rules));
    } catch (e) {
      throw new KernelError(`Cannot apply nftables table ${this.#o.table}: ${message(e)}`, {
        cause: e,
      });
    }
    this.#clear("table", this.#o.table);
    for (const r of rules) this.#clear("rule", String(r.id));
  }

  /** Health: `ok`, or `degraded` with the problems found. */
  health() {
    const problems = [...this.#problems.values()];
    return {
      status: problems.length === 0 ? "ok" : "degraded",
      started_at: this.startedAt.toISOString(),
      peers: this.#o.store.listPeers().length,
      rules: this.#o.store.listRules().length,
      problems,
    };
  }

  async #peerJson(p: PeerRecord) {
    const live = await this.#o.kernel.peerStatus(peerInterface(p.tag)).catch(() => null);
    return peerToJson(p, live, this.#problems.get(`peer:${p.tag}`)?.error ?? null);
  }

  /** All peers with their live state. */
  listPeers() {
    return Promise.all(this.#o.store.listPeers().map((p) => this.#peerJson(p)));
  }

  /** One peer with its live state. */
  getPeer(tag: string) {
    const p = this.#o.store.getPeer(tag);
    if (!p) throw new NotFoundError(`No peer "${tag}"`);
    return this.#peerJson(p);
  }

  #freePort(peers: readonly PeerRecord[]): number {
    const used = new Set(peers.map((p) => p.listenPort));
    const [lo, hi] = this.#o.listenPortRange;
    for (let port = lo; port <= hi; port++) if (!used.has(port)) return port;
    throw new ConflictError(`No free listen port in ${lo}..${hi}`);
  }

  /** Creates a peer: kernel first, then the store; undone in the kernel on failure. */
  addPeer(input: PeerInput) {
    return this.#serial(async () => {
      const { store, kernel } = this.#o;
      const peers = store.listPeers();
      if (peers.some((p) => p.tag === input.tag)) {
        throw new ConflictError(`Peer "${input.tag}" already exists`);
      }
      if (peers.length >= this.#o.maxPeers) {
        throw new ConflictError(`Peer limit reached (${this.#o.maxPeers})`);
      }
      if (input.listenPort !== null && peers.some((p) => p.listenPort === input.listenPort)) {
        throw new ConflictError(`listen_port ${input.listenPort} is used by another peer`);
      }
      const keys = input.privateKey === null
        ? await generateKeyPair()
        : { privateKey: input.privateKey, publicKey: await publicKeyOf(input.privateKey) };
      const peer: PeerRecord = {
        tag: input.tag,
        privateKey: keys.privateKey,
        publicKey: keys.publicKey,
        peerPublicKey: input.peerPublicKey,
        preSharedKey: input.preSharedKey,
        listenPort: input.listenPort ?? this.#freePort(peers),
        address: input.address,
        allowedIps: input.allowedIps,
        endpoint: input.endpoint,
        persistentKeepalive: input.persistentKeepalive ?? this.#o.defaultKeepalive,
        mtu: input.mtu ?? this.#o.defaultMtu,
        enabled: input.enabled,
        createdAt: this.#now().toISOString(),
      };
      const iface = peerInterface(peer.tag);
      try {
        await kernel.applyPeer(peer);
      } catch (e) {
        await kernel.removePeer(iface).catch(() => {});
        throw new KernelError(`Cannot create ${iface}: ${message(e)}`, { cause: e });
      }
      try {
        store.transaction(() => store.insertPeer(peer));
      } catch (e) {
        await kernel.removePeer(iface).catch(() => {});
        throw e;
      }
      this.#clear("peer", peer.tag);
      this.#log.info("peer added", { tag: peer.tag, iface, listen_port: peer.listenPort });
      return this.#peerJson(peer);
    });
  }

  /**
   * Deletes a peer. Refused (409) while rules use it unless `cascade`, which
   * deletes those rules too: never a dangling rule.
   */
  deletePeer(tag: string, cascade: boolean) {
    return this.#serial(async () => {
      const { store, kernel } = this.#o;
      if (!store.getPeer(tag)) throw new NotFoundError(`No peer "${tag}"`);
      const using = store.rulesOfPeer(tag);
      if (using.length > 0 && !cascade) {
        throw new ConflictError(
          `Peer "${tag}" is used by forwarding rule(s) ${
            using.map((r) => r.id).join(", ")
          }; delete them first or pass ?cascade=true`,
        );
      }
      const all = store.listRules();
      const gone = new Set(using.map((r) => r.id));
      if (using.length > 0) await this.#applyRules(all.filter((r) => !gone.has(r.id)));
      const iface = peerInterface(tag);
      try {
        await kernel.removePeer(iface);
      } catch (e) {
        if (using.length > 0) await this.#applyRules(all).catch(() => {});
        throw new KernelError(`Cannot delete ${iface}: ${message(e)}`, { cause: e });
      }
      store.transaction(() => {
        for (const r of using) store.deleteRule(r.id);
        store.deletePeer(tag);
      });
      this.#clear("peer", tag);
      this.#log.info("peer deleted", { tag, rules_deleted: using.length });
      return { deleted: tag, deleted_rules: using.map((r) => r.id) };
    });
  }

  /** Brings a peer's interface up (`true`) or down and records it. */
  setConnected(tag: string, enabled: boolean) {
    return this.#serial(async () => {
      const { store, kernel } = this.#o;
      const old = store.getPeer(tag);
      if (!old) throw new NotFoundError(`No peer "${tag}"`);
      const peer = { ...old, enabled };
      try {
        await kernel.applyPeer(peer);
      } catch (e) {
        this.#problem("peer", tag, e);
        await kernel.applyPeer(old).catch(() => {});
        throw new KernelError(
          `Cannot ${enabled ? "connect" : "disconnect"} ${peerInterface(tag)}: ${message(e)}`,
          { cause: e },
        );
      }
      store.transaction(() => store.setPeerEnabled(tag, enabled));
      this.#clear("peer", tag);
      this.#log.info(enabled ? "peer connected" : "peer disconnected", { tag });
      return this.#peerJson(peer);
    });
  }

  /** All forwarding rules. */
  listRules() {
    return this.#o.store.listRules().map((r) =>
      ruleToJson(r, this.#problems.get(`rule:${r.id}`)?.error ?? null)
    );
  }

  /** Adds a forwarding rule: stored, applied, and removed again if nft refuses it. */
  addRule(input: RuleInput) {
    return this.#serial(async () => {
      const { store } = this.#o;
      if (!store.getPeer(input.from)) {
        throw new ValidationError("from", `no peer ${JSON.stringify(input.from)}`);
      }
      if (!store.getPeer(input.to)) {
        throw new ValidationError("to", `no peer ${JSON.stringify(input.to)}`);
      }
      const rules = store.listRules();
      const dup = rules.find((r) => sameRule(r, input));
      if (dup) throw new ConflictError(`Forwarding rule ${dup.id} is the same`);
      if (rules.length >= this.#o.maxRules) {
        throw new ConflictError(`Rule limit reached (${this.#o.maxRules})`);
      }
      const rule = store.transaction(() => store.insertRule(input, this.#now().toISOString()));
      try {
        await this.#applyRules([...rules, rule]);
      } catch (e) {
        store.transaction(() => store.deleteRule(rule.id));
        throw e;
      }
      this.#log.info("forwarding rule added", { id: rule.id, from: rule.from, to: rule.to });
      return ruleToJson(rule, null);
    });
  }

  /** Deletes a forwarding rule. */
  deleteRule(id: number) {
    return this.#serial(async () => {
      const { store } = this.#o;
      const rules = store.listRules();
      if (!rules.some((r) => r.id === id)) throw new NotFoundError(`No forwarding rule ${id}`);
      await this.#applyRules(rules.filter((r) => r.id !== id));
      store.transaction(() => store.deleteRule(id));
      this.#clear("rule", String(id));
      this.#log.info("forwarding rule deleted", { id });
      return { deleted: id };
    });
  }

  /**
   * Makes the kernel match the store: every peer applied, unknown
   * `wg-peer-*` interfaces removed (when configured), our table replaced.
   * Nothing that fails is skipped silently: it is logged, returned, and
   * shown by `health()` and the peer/rule `status.error` until it applies.
   * A rule nft refuses is left out, so its traffic stays dropped.
   */
  reconcile(): Promise<ReconcileReport> {
    return this.#serial(async () => {
      const { store, kernel } = this.#o;
      this.#problems.clear();
      const report: ReconcileReport = {
        peersApplied: [],
        pruned: [],
        rulesApplied: [],
        problems: [],
      };
      const peers = store.listPeers();
      for (const p of peers) {
        try {
          await kernel.applyPeer(p);
          report.peersApplied.push(p.tag);
        } catch (e) {
          this.#problem("peer", p.tag, e);
        }
      }
      if (this.#o.pruneUnknownInterfaces) {
        const known = new Set(peers.map((p) => peerInterface(p.tag)));
        try {
          for (const iface of await kernel.listPeerInterfaces()) {
            if (known.has(iface)) continue;
            await kernel.removePeer(iface);
            report.pruned.push(iface);
            this.#log.info("removed interface not in state", { iface });
          }
        } catch (e) {
          this.#problem("table", "interfaces", e);
        }
      }
      const rules = store.listRules();
      try {
        await this.#applyRules(rules);
        report.rulesApplied.push(...rules.map((r) => r.id));
      } catch {
        // Find the rules nft refuses, apply the others.
        const good: RuleRecord[] = [];
        for (const r of rules) {
          try {
            await kernel.checkRuleset(this.#render([r]));
            good.push(r);
          } catch (e) {
            this.#problem("rule", String(r.id), e);
          }
        }
        try {
          await this.#applyRules(good);
          report.rulesApplied.push(...good.map((r) => r.id));
        } catch (e) {
          this.#problem("table", this.#o.table, e);
          // Fail closed: at least drop all traffic between peers.
          await kernel.applyRuleset(this.#render([])).catch(() => {});
        }
      }
      report.problems.push(...this.#problems.values());
      this.#log.info("reconciled", {
        peers: report.peersApplied.length,
        rules: report.rulesApplied.length,
        pruned: report.pruned.length,
        problems: report.problems.length,
      });
      return report;
    });
  }
}
