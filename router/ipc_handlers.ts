/**
 * Wires the IPC methods to a running {@linkcode Router}: reload goes through
 * the same `loadConfig()` as start-up and `router check`, and on any error
 * the running snapshot stays untouched and the error goes back to the caller.
 *
 * @module
 */

import { formatEndpoint } from "../core/ip.ts";
import { ConfigError, type ConfigSource, loadConfig } from "../config/mod.ts";
import type { RouterConfig } from "../config/schema.ts";
import type { Engine } from "../rules/engine.ts";
import type { RuleHits } from "../rules/rule_stats.ts";
import type { Logger } from "../core/log.ts";
import type { ReactorStats } from "../ffi/reactor.ts";
import { DEFAULT_RULES_LIMIT, IpcError } from "../ipc/protocol.ts";
import {
  type ConnectionInfo,
  flowFromRouteTest,
  type LastReload,
  type MemoryInfo,
  type OutboundInfo,
  routeTestResult,
  type StatsParams,
  type StatsResult,
  type StatusResult,
} from "../ipc/protocol.ts";
import type { IpcHandlers } from "../ipc/server.ts";
import type { Router } from "./router.ts";
import type { UdpPlaneStats, UdpSessionInfo } from "./udp_plane.ts";

/**
 * One outbound in `status` / `outbounds.list`: {@linkcode OutboundInfo} plus
 * its health (how it is checked, last error, since when, last check; times
 * ISO 8601) and its counters (bytes include open flows).
 */
export interface OutboundHealthInfo extends OutboundInfo {
  /** `active` (probed), `passive` (from flow dials), `static` (block), null if not watched. */
  health: "active" | "passive" | "static" | null;
  last_error: string | null;
  since: string | null;
  last_check: string | null;
  flows_total: number;
  bytes_up: number;
  bytes_down: number;
  errors: number;
  /** Flows reset at once because the outbound was down (also counted in `errors`). */
  fail_fast: number;
}

/** What a reload's loader gives back (`reused`: the compiled rules were unchanged and reused). */
interface LoadedForReload {
  readonly config: RouterConfig;
  readonly engine: Engine;
  readonly reused?: boolean;
  readonly patched?: { readonly compiled: number };
  readonly compiledOn?: "worker" | "main";
}

/** Options of {@linkcode createIpcHandlers}. */
export interface RouterIpcOptions {
  readonly router: Router;
  readonly version: string;
  /** File the running config came from (null for inline). Updated by reloads from a path. */
  configPath: string | null;
  readonly logger: Logger;
  /** Hook run after a successful reload (e.g. to change the log level). */
  readonly onReload?: () => void;
  /**
   * Loads a config for `reload` (default `loadConfig`); the router passes a
   * `CompileWorker`'s `load`, which compiles off the data-plane thread.
   */
  readonly load?: (source: ConfigSource) => Promise<LoadedForReload>;
  /** Told of an engine `load` gave that a failed reload never put in use (`CompileWorker.retire`). */
  readonly discard?: (engine: Engine) => void;
  /**
   * Begins stopping the router for `shutdown`, letting TCP flows go on for
   * `drainMs`; resolves once the IPC server stopped listening (the reply is
   * then sent). Without it `shutdown` is refused.
   */
  readonly onShutdown?: (drainMs: number) => Promise<void>;
}

/** The process's memory for `status`. */
function memoryInfo(): MemoryInfo {
  const m = Deno.memoryUsage();
  return { rss: m.rss, heap_used: m.heapUsed, heap_total: m.heapTotal, external: m.external };
}

/** Builds the IPC handlers for a router. */
export function createIpcHandlers(opts: RouterIpcOptions): IpcHandlers {
  const { router } = opts;
  let lastReload: LastReload | null = null;
  let reloads = 0, reloadFailures = 0;
  // Reloads are serialised: a second one waits for the first to swap.
  let reloadChain: Promise<unknown> = Promise.resolve();

  // state and last error from the health checker, per-outbound counters.
  const outboundInfos = (): OutboundHealthInfo[] => {
    const snap = router.snapshot;
    const counters = router.counters().outbounds;
    const live = new Map<string, { up: number; down: number }>();
    for (const f of router.flows.values()) {
      if (f.outbound === null) continue;
      const l = live.get(f.outbound) ?? { up: 0, down: 0 };
      l.up += f.counters.up;
      l.down += f.counters.down;
      live.set(f.outbound, l);
    }
    const iso = (t: number | null) => t === null ? null : new Date(t).toISOString();
    return [...snap.outbounds.values()].map(({ outbound, config }) => {
      const h = router.outboundHealth(outbound.tag);
      const own = outbound.health?.();
      const d = outbound.describe?.();
      const c = counters.get(outbound.tag);
      const l = live.get(outbound.tag);
      const lastError = h ? h.lastError : own?.lastError ?? null;
      const info: OutboundHealthInfo = {
        tag: outbound.tag,
        type: config.type,
        kind: outbound.kind,
        state: h?.state ?? own?.state ?? "unknown",
        flows: c?.flowsActive ?? 0,
        health: h?.mode ?? null,
        last_error: lastError,
        since: iso(h?.since ?? null),
        last_check: iso(h?.lastCheck ?? null),
        flows_total: c?.flowsTotal ?? 0,
        bytes_up: (c?.bytesUp ?? 0) + (l?.up ?? 0),
        bytes_down: (c?.bytesDown ?? 0) + (l?.down ?? 0),
        errors: c?.errors ?? 0,
        fail_fast: c?.failFast ?? 0,
      };
      const detail = [
        h?.state === "down" ? lastError : undefined,
        d ? JSON.stringify(d) : undefined,
      ].filter(Boolean).join("; ");
      if (detail) info.detail = detail;
      return info;
    });
  };

  const doReload = async (source: ConfigSource, closeRemoved: boolean) => {
    const t0 = performance.now();
    let loaded: LoadedForReload | undefined;
    try {
      loaded = await (opts.load ?? loadConfig)(source);
      const { config, engine } = loaded;
      const summary = router.reload(config, engine, { closeRemoved });
      if (typeof source === "string") opts.configPath = source;
      else opts.configPath = null;
      reloads++;
      const took_ms = Math.round((performance.now() - t0) * 1000) / 1000;
      const rules_compiled = loaded.reused ? 0 : loaded.patched?.compiled ?? summary.rules;
      lastReload = { at: new Date().toISOString(), ok: true, took_ms, rules_compiled };
      opts.onReload?.();
      return {
        rules: summary.rules,
        outbounds: summary.outbounds,
        took_ms,
        closed: summary.closed,
        rules_reused: loaded.reused === true,
        rules_compiled,
        compiled_on: loaded.compiledOn ?? "main",
      };
    } catch (e) {
      if (loaded && router.snapshot.engine !== loaded.engine) opts.discard?.(loaded.engine);
      reloadFailures++;
      const message = e instanceof Error ? e.message : String(e);
      lastReload = { at: new Date().toISOString(), ok: false, error: message };
      opts.logger.warn("reload rejected; the running config stays", { error: message });
      // Config errors name the field path; anything else (an outbound that
      // cannot be built) is still a reason the config was refused.
      throw new IpcError(e instanceof ConfigError ? "config_invalid" : "internal", message);
    }
  };

  return {
    ping: () => ({ pong: true }),
    status(): StatusResult & { udp: UdpPlaneStats[] } {
      const snap = router.snapshot;
      const c = router.counters();
      return {
        version: opts.version,
        pid: Deno.pid,
        started_at: new Date(router.startedAt).toISOString(),
        uptime_s: Math.round(c.uptimeS),
        config_path: opts.configPath,
        rules: snap.engine.ruleCount,
        final: snap.engine.final,
        flows: flowCounts(c),
        outbounds: outboundInfos(),
        last_reload: lastReload,
        udp: c.udp, // session table size and counters per inbound
        memory: memoryInfo(),
      };
    },
    reload(params) {
      const source: ConfigSource = params.path !== undefined ? params.path : {
        inline: params.config,
        ...(opts.configPath ? { baseDir: dirOf(opts.configPath) } : {}),
      };
      const run = reloadChain.then(() => doReload(source, params.close_removed ?? false));
      reloadChain = run.catch(() => {});
      return run;
    },
    routeTest(params) {
      return routeTestResult(router.routeTest(flowFromRouteTest(params), { dns: params.dns }));
    },
    connectionsList(params) {
      // TCP flows, then UDP sessions once routed (one per client and destination).
      const rows: UdpSessionInfo[] = [];
      for (const f of router.flows.values()) {
        const { id, meta, outbound, rule, startedAt } = f;
        rows.push({
          id,
          meta,
          outbound,
          rule,
          startedAt,
          up: f.counters.up,
          down: f.counters.down,
          openedByRemote: false,
        });
      }
      rows.push(...router.udpSessions().filter((u) => u.outbound !== null));
      const all: ConnectionInfo[] = [];
      for (const r of rows) {
        if (params.outbound !== undefined && r.outbound !== params.outbound) continue;
        const c: ConnectionInfo = {
          id: r.id,
          network: r.meta.network,
          inbound: r.meta.inbound,
          src: formatEndpoint(r.meta.source),
          dst: formatEndpoint(r.meta.destination),
          outbound: r.outbound ?? "",
          rule: r.rule,
          started_at: new Date(r.startedAt).toISOString(),
          bytes_up: r.up,
          bytes_down: r.down,
        };
        if (r.meta.domain) c.domain = r.meta.domain;
        if (r.meta.protocol) c.protocol = r.meta.protocol;
        if (r.openedByRemote) c.opened_by_remote = true;
        all.push(c);
      }
      const limit = params.limit ?? 1000;
      return { connections: all.slice(0, limit), total: all.length };
    },
    connectionsClose(params) {
      // TCP flows and UDP sessions share one id space.
      const pick = (c: { id: number; outbound: string | null }) =>
        "id" in params ? c.id === params.id : c.outbound === params.outbound;
      const closed = router.flows.close(pick, "closed by IPC") + router.closeUdpSessions(pick);
      return { closed };
    },
    outboundsList: () => ({ outbounds: outboundInfos() }),
    stats(params: StatsParams = {}): StatsResult & { udp: UdpPlaneStats[] } {
      const c = router.counters();
      const outbounds: StatsResult["outbounds"] = {};
      for (const [tag, o] of c.outbounds) {
        const row: StatsResult["outbounds"][string] & { fail_fast: number } = {
          flows_active: o.flowsActive,
          flows_total: o.flowsTotal,
          bytes_up: o.bytesUp,
          bytes_down: o.bytesDown,
          errors: o.errors,
          fail_fast: o.failFast,
        };
        outbounds[tag] = row;
      }
      return {
        uptime_s: Math.round(c.uptimeS),
        flows: flowCounts(c),
        bytes_up: c.bytesUp,
        bytes_down: c.bytesDown,
        reloads,
        reload_failures: reloadFailures,
        outbounds,
        counters: {
          ...Object.fromEntries(c.named),
          ...udpCounters(c.udp),
          ...reactorCounters(c.reactor),
          dns_reverse_entries: c.reverseDns.entries,
          dns_reverse_answers: c.reverseDns.answers,
        },
        udp: c.udp,
        ...(params.rules ? rulesOf(router.hotRules(params.limit ?? DEFAULT_RULES_LIMIT)) : {}),
      };
    },

    async shutdown(params) {
      if (!opts.onShutdown) throw new IpcError("internal", "shutdown is not offered here");
      const drain_ms = params.drain_ms ?? 0;
      const flows = router.flows.size;
      opts.logger.info("shutdown requested over IPC", { drain_ms, flows });
      await opts.onShutdown(drain_ms);
      return { pid: Deno.pid, flows, drain_ms };
    },
  };
}

function rulesOf(hot: { rows: RuleHits[]; hit: number }): Pick<StatsResult, "rules" | "rules_hit"> {
  return { rules: hot.rows, rules_hit: hot.hit };
}

/**
 * The reactor's counters as `stats.counters` entries: how the event loop
 * waits (synchronous polls that found events, short blocking waits and how
 * many of them found events, parked waits on the helper thread, wake-ups),
 * the fds registered and the waits pending.
 */
function reactorCounters(r: ReactorStats): Record<string, number> {
  return {
    reactor_fds: r.registered,
    reactor_waiters: r.waiters,
    reactor_sync_polls: r.syncPolls,
    reactor_blocks: r.blocks,
    reactor_block_polls: r.blockPolls,
    reactor_parked_polls: r.parkedPolls,
    reactor_wakeups: r.wakeups,
  };
}

/** TCP flows plus UDP sessions. */
function flowCounts(c: ReturnType<Router["counters"]>) {
  let udp = 0, udpTotal = 0;
  for (const p of c.udp) {
    udp += p.sessions;
    udpTotal += p.created;
  }
  return {
    active: c.flowsActive + udp,
    tcp: c.flowsActive,
    udp,
    total: c.flowsTotal + udpTotal,
  };
}

/** UDP session table counters summed over inbounds, as `udp_*` named counters. */
function udpCounters(planes: readonly UdpPlaneStats[]): Record<string, number> {
  const out: Record<string, number> = {};
  const keys = ["sessions", "created", "expired", "evicted", "closed", "dropped"] as const;
  for (const k of keys) out[`udp_sessions_${k === "sessions" ? "active" : k}`] = 0;
  for (const p of planes) {
    for (const k of keys) out[`udp_sessions_${k === "sessions" ? "active" : k}`]! += p[k];
  }
  return out;
}

function dirOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}
