/**
 * The running Full Node: TPROXY listeners feed flows through the sniffer and
 * the rule engine to an outbound, and the relay moves the bytes. Rules and
 * outbounds live in one immutable {@linkcode Snapshot} swapped in one step on
 * reload: a flow keeps the decision it was born with, new flows see the new
 * snapshot.
 *
 * @module
 */

import type { OutboundConfig, RouterConfig, TproxyInbound } from "../config/schema.ts";
import { formatEndpoint } from "../core/ip.ts";
import type { Logger } from "../core/log.ts";
import type { Endpoint, FlowMeta } from "../core/types.ts";
import { defaultReactor, type Reactor, type ReactorStats } from "../ffi/reactor.ts";
import { defaultTimerQueues, type TimeoutHandle } from "../ffi/timer_queues.ts";
import type { FdStream } from "../ffi/stream.ts";
import { type AcceptedConn, TcpListener } from "../inbound/tproxy_tcp.ts";
import { markForRules } from "../inbound/flow_marks.ts";
import { BlockedError } from "../outbound/block.ts";
import type { Outbound } from "../outbound/outbound.ts";
import { buildHealthSpec, buildOutbound, outboundKey } from "../outbound/registry.ts";
import { HealthChecker, type HealthCheckerOptions, type HealthStatus } from "../outbound/health.ts";
import type { Engine } from "../rules/engine.ts";
import { type RuleHits, RuleStats } from "../rules/rule_stats.ts";
import { DnsStreamReader, readDnsAnswers } from "../sniff/dns.ts";
import { ReverseDnsMap } from "./reverse_dns.ts";
import { type SniffClock, sniffStream } from "../sniff/sniff.ts";
import { type Flow, FlowTable } from "./flow_table.ts";
import { relay } from "./relay.ts";
import { UdpPlane, type UdpPlaneStats, type UdpSessionInfo } from "./udp_plane.ts";

/** Per-outbound counters; they survive reload while the tag exists. */
export interface OutboundCounters {
  flowsActive: number;
  flowsTotal: number;
  bytesUp: number;
  bytesDown: number;
  errors: number;
  /** Flows reset at once because the outbound was known down (also in `errors`). */
  failFast: number;
}

/** A live outbound and what it was built from. */
interface OutboundSlot {
  readonly outbound: Outbound;
  readonly key: string;
  readonly config: OutboundConfig;
}

/** Rules, outbounds and inbound settings of one generation. */
export interface Snapshot {
  readonly generation: number;
  readonly config: RouterConfig;
  readonly engine: Engine;
  readonly outbounds: ReadonlyMap<string, OutboundSlot>;
  readonly inbounds: ReadonlyMap<string, TproxyInbound>;
}

/** Options of {@linkcode Router.start}. */
export interface RouterOptions {
  readonly logger: Logger;
  readonly reactor?: Reactor;
  /** Most flows open at once; new flows past it are reset (default 65536). */
  readonly maxFlows?: number;
  /** Bytes the TCP sniffer looks at (default 16 KiB). */
  readonly sniffMaxBytes?: number;
  /** Open the TCP listeners with SO_REUSEPORT (one router per worker isolate). */
  readonly reusePort?: boolean;
  /** Health checker settings (clock, concurrency, thresholds); defaults suit production. */
  readonly health?: HealthCheckerOptions;
  /**
   * Told when an engine a reload replaced is no longer read by the router
   * (its hit counts carried over): `CompileWorker.retire`.
   */
  readonly onEngineRetired?: (engine: Engine) => void;
}

/** What a reload did. */
export interface ReloadSummary {
  rules: number;
  outbounds: number;
  added: string[];
  removed: string[];
  changed: string[];
  closed: number;
}

/** Result of a route test. */
export interface RouteTestAnswer {
  outbound: string;
  rule: number | null;
  final: boolean;
  rule_json: unknown;
  /** The name DNS answers gave the destination, when the test used it (see `Router.routeTest`). */
  dns_name?: string;
}

const SNIFF_PEEK_BYTES = 16 * 1024;

/** The sniff deadline on the shared timer queues: no timer object per flow. */
const SNIFF_CLOCK: SniffClock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => defaultTimerQueues().set(ms, fn),
  clearTimeout: (h) => defaultTimerQueues().clear(h as TimeoutHandle),
};

/** The data plane of one isolate. */
export class Router {
  readonly #log: Logger;
  readonly #reactor: Reactor | undefined;
  readonly #reusePort: boolean;
  readonly #flows: FlowTable;
  readonly #sniffMax: number;
  readonly #peekBuf: Uint8Array;
  readonly #listeners: { tag: string; key: string; listener: TcpListener; loop: Promise<void> }[] =
    [];
  readonly #counters = new Map<string, OutboundCounters>();
  readonly #udpPlanes: UdpPlane[] = [];
  readonly #named = new Map<string, number>();
  readonly #ruleStats: RuleStats;
  /** Names by address from relayed DNS answers (`route.dns_reverse_mapping`). */
  readonly #reverse = new ReverseDnsMap();
  readonly #health: HealthChecker;
  readonly #startedAt = Date.now();
  #snap: Snapshot;
  #flowsTotal = 0;
  #bytesUp = 0;
  #bytesDown = 0;
  #stopping = false;

  private constructor(snap: Snapshot, opts: RouterOptions) {
    this.#log = opts.logger;
    this.#reactor = opts.reactor;
    this.#reusePort = opts.reusePort ?? false;
    this.#flows = new FlowTable({ maxFlows: opts.maxFlows ?? 65536 });
    this.#sniffMax = opts.sniffMaxBytes ?? SNIFF_PEEK_BYTES;
    this.#peekBuf = new Uint8Array(this.#sniffMax);
    this.#snap = snap;
    this.#ruleStats = new RuleStats(
      opts.onEngineRetired ? { onRetire: opts.onEngineRetired } : {},
    );
    this.#ruleStats.adopt(snap.engine);
    this.#health = new HealthChecker({ logger: opts.logger.child("health"), ...opts.health });
  }

  /** Builds outbounds, opens the listeners and starts serving. */
  static start(config: RouterConfig, engine: Engine, opts: RouterOptions): Router {
    const outbounds = new Map<string, OutboundSlot>();
    for (const cfg of config.outbounds) {
      outbounds.set(cfg.tag, {
        outbound: buildOutbound(cfg, config.route, opts),
        key: outboundKey(cfg, config.route),
        config: cfg,
      });
    }
    const snap: Snapshot = {
      generation: 1,
      config,
      engine,
      outbounds,
      inbounds: new Map(config.inbounds.map((i) => [i.tag, i])),
    };
    const router = new Router(snap, opts);
    try {
      router.#syncHealth();
      for (const inbound of config.inbounds) router.#openInbound(inbound);
    } catch (e) {
      router.stop();
      throw e;
    }
    return router;
  }

  /** The active snapshot. */
  get snapshot(): Snapshot {
    return this.#snap;
  }

  /** The flow table (connections.list / close). */
  get flows(): FlowTable {
    return this.#flows;
  }

  /** The UDP sessions of every inbound (connections.list). */
  udpSessions(): UdpSessionInfo[] {
    return this.#udpPlanes.flatMap((p) => p.sessions());
  }

  /** Closes the UDP sessions `pick` selects; returns how many. */
  closeUdpSessions(pick: (s: UdpSessionInfo) => boolean): number {
    let n = 0;
    for (const p of this.#udpPlanes) n += p.closeSessions(pick);
    return n;
  }

  /** Bound addresses of the TCP listeners, by inbound tag. */
  listenAddresses(): { tag: string; addresses: readonly Endpoint[] }[] {
    return this.#listeners.map((l) => ({ tag: l.tag, addresses: l.listener.addresses }));
  }

  #openInbound(inbound: TproxyInbound): void {
    // UDP sessions are routed against the newest snapshot.
    if (inbound.network.includes("udp")) {
      const plane = UdpPlane.open({
        inbound,
        snapshot: () => this.#snap,
        health: this.#health,
        nextId: () => this.#flows.allocateId(),
        onDnsReply: (data) => this.#dnsReply(data),
        nameOf: (addr) => this.#nameOf(addr),
        reusePort: this.#reusePort,
        logger: this.#log.child(`udp/${inbound.tag}`),
        ...(this.#reactor ? { reactor: this.#reactor } : {}),
      });
      this.#udpPlanes.push(plane);
      this.#log.info("listening", {
        inbound: inbound.tag,
        network: "udp",
        addresses: plane.addresses.map(formatEndpoint).join(","),
      });
    }
    if (!inbound.network.includes("tcp")) return;
    const listener = TcpListener.open({
      mode: inbound.mode,
      listen: inbound.listen,
      port: inbound.listen_port,
      reusePort: this.#reusePort,
      logger: this.#log.child(`inbound/${inbound.tag}`),
      ...(this.#reactor ? { reactor: this.#reactor } : {}),
    });
    const loop = (async () => {
      for await (const conn of listener) {
        this.#handleTcp(inbound.tag, conn).catch((e) =>
          this.#log.error("flow handler failed", { error: e })
        );
      }
    })();
    this.#listeners.push({ tag: inbound.tag, key: listenKey(inbound), listener, loop });
    this.#log.info("listening", {
      inbound: inbound.tag,
      mode: inbound.mode,
      addresses: listener.addresses.map(formatEndpoint).join(","),
    });
  }

  /** Health of an outbound of the active snapshot (undefined for unknown tags). */
  outboundHealth(tag: string): HealthStatus | undefined {
    return this.#health.status(tag);
  }

  /** Watches the active snapshot's outbounds: unchanged keep their state, new start, gone stop. */
  #syncHealth(): void {
    const deps = { logger: this.#log, ...(this.#reactor ? { reactor: this.#reactor } : {}) };
    const route = this.#snap.config.route;
    this.#health.sync(
      [...this.#snap.outbounds].map(([tag, slot]) => ({
        tag,
        key: slot.key,
        spec: buildHealthSpec(slot.config, slot.outbound, route, deps),
      })),
    );
  }

  /** A DNS response relayed to a client: its addresses are remembered (if enabled). */
  #dnsReply(data: Uint8Array): void {
    if (!this.#snap.config.route.dns_reverse_mapping) return;
    const answers = readDnsAnswers(data);
    if (answers !== null) this.#reverse.record(answers);
  }

  /**
   * The relay's observer of what a DNS server sends back over TCP: its
   * responses are read as over UDP ({@linkcode DnsStreamReader} splits them).
   */
  #dnsOverTcp(): (chunk: Uint8Array) => void {
    const reader = new DnsStreamReader();
    const onMessage = (msg: Uint8Array) => this.#dnsReply(msg);
    let failed = false;
    return (chunk) => {
      if (failed || reader.stopped) return;
      try {
        reader.push(chunk, onMessage);
      } catch (e) {
        // Not expected (both parsers are bounded and fuzzed); the flow goes on regardless.
        failed = true;
        this.#log.warn("DNS over TCP: stopped reading responses", { error: e });
      }
    };
  }

  /** The name `addr` was looked up by, for a flow without a sniffed one (if enabled). */
  #nameOf(addr: Uint8Array): string | undefined {
    if (!this.#snap.config.route.dns_reverse_mapping) return undefined;
    const name = this.#reverse.lookup(addr);
    if (name !== undefined) this.#count("dns_mapped_flows");
    return name;
  }

  #count(name: string): void {
    this.#named.set(name, (this.#named.get(name) ?? 0) + 1);
  }

  #outboundCounters(tag: string): OutboundCounters {
    let c = this.#counters.get(tag);
    if (!c) {
      c = { flowsActive: 0, flowsTotal: 0, bytesUp: 0, bytesDown: 0, errors: 0, failFast: 0 };
      this.#counters.set(tag, c);
    }
    return c;
  }

  async #handleTcp(inboundTag: string, conn: AcceptedConn): Promise<void> {
    const client = conn.stream;
    const meta: FlowMeta = {
      network: "tcp",
      inbound: inboundTag,
      source: conn.source,
      destination: conn.destination,
      // Without our nft TPROXY bit: rules see the mark the box set (0x101 -> 0x100).
      mark: markForRules(conn.mark),
    };
    const flow = this.#flows.add(meta);
    if (!flow) {
      this.#count("flows_refused_full");
      this.#log.warn("flow table full: resetting new flow", { src: formatEndpoint(conn.source) });
      client.resetAndClose();
      return;
    }
    this.#flowsTotal++;
    let upstream: FdStream | null = null;
    let counters: OutboundCounters | null = null;
    try {
      const inbound = this.#snap.inbounds.get(inboundTag);
      if (inbound?.sniff) await this.#sniff(client, meta, inbound.sniff_timeout_ms, flow);
      if (meta.domain === undefined) {
        const name = this.#nameOf(meta.destination.addr);
        if (name !== undefined) meta.domain = name;
      }
      // The decision is taken against one snapshot; a reload later does not change it.
      const snap = this.#snap;
      const decision = snap.engine.match(meta);
      flow.outbound = decision.outbound;
      flow.rule = decision.rule;
      flow.generation = snap.generation;
      counters = this.#outboundCounters(decision.outbound);
      counters.flowsActive++;
      counters.flowsTotal++;
      const slot = snap.outbounds.get(decision.outbound);
      if (!slot) throw new Error(`outbound "${decision.outbound}" is not configured`);
      // a known-down outbound fails new flows at once, no connect timeout.
      if (!this.#health.admit(decision.outbound)) {
        counters.errors++;
        counters.failFast++;
        this.#count("fail_fast");
        this.#log.debug("outbound down: resetting new flow", {
          id: flow.id,
          dst: formatEndpoint(meta.destination),
          outbound: decision.outbound,
        });
        client.resetAndClose();
        return;
      }
      // Built only when INFO is on: the fields cost two formatEndpoint() per flow.
      if (this.#log.enabled("info")) {
        this.#log.info("flow", {
          id: flow.id,
          src: formatEndpoint(meta.source),
          dst: formatEndpoint(meta.destination),
          domain: meta.domain,
          protocol: meta.protocol,
          mark: meta.mark ? `0x${meta.mark.toString(16)}` : undefined,
          outbound: decision.outbound,
          rule: decision.rule ?? "final",
        });
      }
      try {
        upstream = await slot.outbound.dialTcp(meta.destination, meta.domain, flow.abort.signal);
        this.#health.reportSuccess(decision.outbound);
      } catch (e) {
        this.#health.reportFailure(decision.outbound, e, meta.destination);
        if (e instanceof BlockedError) {
          this.#count("flows_blocked");
          if (e.mode === "reset") client.resetAndClose();
          else client.close();
          return;
        }
        counters.errors++;
        this.#count("dial_errors");
        this.#log.warn("dial failed: resetting client", {
          id: flow.id,
          outbound: decision.outbound,
          dst: formatEndpoint(meta.destination),
          error: e,
        });
        client.resetAndClose();
        return;
      }
      const idle = inbound?.tcp_idle_timeout_ms ?? 600_000;
      const r = await relay(client, upstream, {
        idleTimeoutMs: idle,
        counters: flow.counters,
        signal: flow.abort.signal,
        // DNS over TCP: responses read on their way down, through a small buffer (16 KiB,
        // not the copy mode's 256: resolvers may hold many such connections).
        ...(meta.destination.port === 53 && this.#snap.config.route.dns_reverse_mapping
          ? { onDown: this.#dnsOverTcp(), copyBufferSize: 16 << 10 }
          : {}),
      });
      if (r.reason === "error") counters.errors++;
      this.#log.debug("flow closed", {
        id: flow.id,
        reason: r.reason,
        up: r.up,
        down: r.down,
        error: r.error?.code,
      });
    } catch (e) {
      this.#log.warn("flow failed", { id: flow.id, error: e });
      if (!client.closed) client.resetAndClose();
      upstream?.close();
    } finally {
      this.#flows.delete(flow.id);
      this.#bytesUp += flow.counters.up;
      this.#bytesDown += flow.counters.down;
      if (counters) {
        counters.flowsActive--;
        counters.bytesUp += flow.counters.up;
        counters.bytesDown += flow.counters.down;
      }
    }
  }

  async #sniff(client: FdStream, meta: FlowMeta, timeoutMs: number, flow: Flow): Promise<void> {
    // One peek buffer for all flows: each peek fills it and copies out only
    // the bytes seen, synchronously, so no flow can see another's bytes
    // (and a flow costs a few hundred bytes instead of a 16 KiB buffer).
    const buf = this.#peekBuf;
    let seen = 0;
    let waiting = false;
    const source = {
      peek: async (): Promise<Uint8Array | null> => {
        for (;;) {
          const n = client.tryPeek(buf);
          if (n === 0) return null;
          if (n > seen) {
            seen = n;
            return buf.slice(0, n);
          }
          if (n === buf.length) return buf.slice(0, n); // full: let the sniffer decide
          waiting = true;
          try {
            await client.waitReadable();
          } finally {
            waiting = false;
          }
        }
      },
      peekNow: (): Uint8Array | null => {
        if (client.closed) return null;
        try {
          const n = client.tryPeek(buf);
          return n > seen ? buf.slice(0, n) : null;
        } catch {
          return null; // a reset: the relay meets it next
        }
      },
    };
    let r;
    try {
      r = await sniffStream(source, {
        maxBytes: this.#sniffMax,
        timeoutMs,
        signal: flow.abort.signal,
        clock: SNIFF_CLOCK,
      });
    } finally {
      // The sniffer gave up (timeout: a server-speaks-first protocol) while
      // our peek still waits for bytes: withdraw that wait, or the relay's
      // read wait on the same fd would collide with it.
      if (waiting && !client.closed) {
        client.reactor.cancel(client.fd, "read", new Error("sniff finished"));
      }
    }
    if (r.status === "found") {
      meta.protocol = r.protocol;
      if (r.domain) meta.domain = r.domain;
    } else if (r.waitedMs >= timeoutMs) {
      this.#count("sniff_timeouts");
    }
  }

  /**
   * Swaps in a new config and engine (already validated and compiled by the
   * caller). Outbounds whose config is unchanged are kept with their pools;
   * changed ones are rebuilt; removed ones are closed, and with
   * `closeRemoved` their flows are closed too (otherwise they finish).
   */
  reload(
    config: RouterConfig,
    engine: Engine,
    opts: { closeRemoved?: boolean } = {},
  ): ReloadSummary {
    const old = this.#snap;
    const added: string[] = [], changed: string[] = [], removed: string[] = [];
    const next = new Map<string, OutboundSlot>();
    const built: Outbound[] = [];
    try {
      for (const cfg of config.outbounds) {
        const key = outboundKey(cfg, config.route);
        const prev = old.outbounds.get(cfg.tag);
        if (prev && prev.key === key) {
          next.set(cfg.tag, prev);
          continue;
        }
        const outbound = buildOutbound(cfg, config.route, {
          logger: this.#log,
          ...(this.#reactor ? { reactor: this.#reactor } : {}),
        });
        built.push(outbound);
        next.set(cfg.tag, { outbound, key, config: cfg });
        (prev ? changed : added).push(cfg.tag);
      }
    } catch (e) {
      for (const b of built) b.close();
      throw e;
    }
    for (const tag of old.outbounds.keys()) if (!next.has(tag)) removed.push(tag);
    // Hit counts of unchanged rules move to the new engine before it goes live.
    this.#ruleStats.adopt(engine);
    for (const inbound of config.inbounds) {
      const l = this.#listeners.find((x) => x.tag === inbound.tag);
      if (inbound.network.includes("tcp") && (!l || l.key !== listenKey(inbound))) {
        this.#log.warn("inbound listen address changes take effect after a restart", {
          inbound: inbound.tag,
        });
      }
      const was = old.inbounds.get(inbound.tag);
      const fields = was && inbound.network.includes("udp") ? udpPlaneChanges(was, inbound) : [];
      if (fields.length > 0) {
        this.#log.warn("inbound UDP settings take effect after a restart", {
          inbound: inbound.tag,
          fields: fields.join(","),
        });
      }
    }
    this.#snap = {
      generation: old.generation + 1,
      config,
      engine,
      outbounds: next,
      inbounds: new Map(config.inbounds.map((i) => [i.tag, i])),
    };
    this.#syncHealth(); // unchanged outbounds keep their health state
    if (!config.route.dns_reverse_mapping) this.#reverse.clear();
    for (const tag of [...changed, ...removed]) old.outbounds.get(tag)?.outbound.close();
    let closed = 0;
    if (opts.closeRemoved && removed.length > 0) {
      const gone = new Set(removed);
      closed = this.#flows.close(
        (f) => f.outbound !== null && gone.has(f.outbound),
        "outbound removed",
      ) + this.closeUdpSessions((s) => s.outbound !== null && gone.has(s.outbound));
    }
    this.#log.info("reloaded", {
      generation: this.#snap.generation,
      rules: engine.ruleCount,
      added: added.join(",") || undefined,
      changed: changed.join(",") || undefined,
      removed: removed.join(",") || undefined,
      closed: closed || undefined,
    });
    return { rules: engine.ruleCount, outbounds: next.size, added, removed, changed, closed };
  }

  /** Which outbound and rule a flow would get from the active engine. */
  routeTest(flow: FlowMeta, opts: { dns?: boolean | undefined } = {}): RouteTestAnswer {
    // As a flow without a sniffed name: the name DNS answers gave its destination, if any (not
    // counted as a mapped flow).
    let dnsName: string | undefined;
    if (opts.dns !== false && flow.domain === undefined) {
      if (this.#snap.config.route.dns_reverse_mapping) {
        dnsName = this.#reverse.lookup(flow.destination.addr);
      }
      if (dnsName !== undefined) flow = { ...flow, domain: dnsName };
    }
    const e = this.#snap.engine.explain(flow);
    return {
      outbound: e.outbound,
      rule: e.rule,
      final: e.final,
      rule_json: e.rule_json,
      ...(dnsName !== undefined ? { dns_name: dnsName } : {}),
    };
  }

  /** Counters for `stats`. */
  counters(): {
    uptimeS: number;
    flowsActive: number;
    flowsTotal: number;
    bytesUp: number;
    bytesDown: number;
    outbounds: ReadonlyMap<string, OutboundCounters>;
    named: ReadonlyMap<string, number>;
    udp: UdpPlaneStats[];
    /** The event loop's epoll counters (the reactor every socket of the router uses). */
    reactor: ReactorStats;
    /** DNS reverse mapping: addresses held, responses recorded. */
    reverseDns: { entries: number; answers: number };
  } {
    let up = this.#bytesUp, down = this.#bytesDown;
    for (const f of this.#flows.values()) {
      up += f.counters.up;
      down += f.counters.down;
    }
    return {
      uptimeS: (Date.now() - this.#startedAt) / 1000,
      flowsActive: this.#flows.size,
      flowsTotal: this.#flowsTotal,
      bytesUp: up,
      bytesDown: down,
      outbounds: this.#counters,
      named: this.#named,
      udp: this.#udpPlanes.map((p) => p.stats()),
      reactor: (this.#reactor ?? defaultReactor()).stats(),
      reverseDns: { entries: this.#reverse.size, answers: this.#reverse.answers },
    };
  }

  /** Hits per rule of the active engine, then `final`. */
  ruleHits(): RuleHits[] {
    return this.#ruleStats.snapshot();
  }

  /** The most hit rules of the active engine (see `RuleStats.hot`). */
  hotRules(limit: number): { rows: RuleHits[]; hit: number } {
    return this.#ruleStats.hot(limit);
  }

  /** When the router started (ms since epoch). */
  get startedAt(): number {
    return this.#startedAt;
  }

  /**
   * Stops taking new flows (TCP listeners and UDP planes close: their
   * sessions end, a successor's sockets get the datagrams) and waits until
   * no TCP flow is left or `ms` passed; resolves with the flows left (then
   * call {@linkcode Router.stop}). For a takeover (`router run --replace`)
   * or `router stop --drain`.
   */
  async drain(ms: number): Promise<number> {
    if (this.#stopping) return this.#flows.size;
    await Promise.allSettled([
      ...this.#listeners.map((l) => l.listener.close()),
      ...this.#udpPlanes.map((p) => p.close()),
    ]);
    const deadline = Date.now() + ms;
    while (this.#flows.size > 0 && !this.#stopping) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      await new Promise((r) => setTimeout(r, Math.min(200, left)));
    }
    return this.#flows.size;
  }

  /** Closes listeners, flows and outbounds. Idempotent. */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    this.#health.close();
    for (const l of this.#listeners) l.listener.close();
    const udpClosed = Promise.allSettled(this.#udpPlanes.map((p) => p.close()));
    this.#flows.close(() => true, "router stopping");
    for (const slot of this.#snap.outbounds.values()) slot.outbound.close();
    await Promise.allSettled(this.#listeners.map((l) => l.loop));
    await udpClosed;
  }
}

function listenKey(i: TproxyInbound): string {
  return `${i.mode}|${i.listen}|${i.listen_port}`;
}

/**
 * The fields of a UDP plane's inbound that differ between `was` and `now`
 * (config names). The plane reads them when it opens, so a reload that
 * changes them changes nothing until a restart.
 */
export function udpPlaneChanges(was: TproxyInbound, now: TproxyInbound): string[] {
  const fields: [string, unknown, unknown][] = [
    ["udp_timeout", was.udp_timeout_ms, now.udp_timeout_ms],
    ["udp_timeout_dns", was.udp_timeout_dns_ms, now.udp_timeout_dns_ms],
    ["udp_timeout_quic", was.udp_timeout_quic_ms, now.udp_timeout_quic_ms],
    ["udp_max_sessions", was.udp_max_sessions, now.udp_max_sessions],
    ["udp_mapping", was.udp_mapping, now.udp_mapping],
    ["udp_filtering", was.udp_filtering, now.udp_filtering],
    ["sniff", was.sniff, now.sniff],
    ["sniff_timeout", was.sniff_timeout_ms, now.sniff_timeout_ms],
  ];
  return fields.filter(([, a, b]) => a !== b).map(([k]) => k);
}
