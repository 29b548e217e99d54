/**
 * New-connection cost through a SOCKS5 outbound, in the netns lab:
 *
 * ```
 * client ns ──TPROXY──> router ns: subject ──SOCKS5──> microsocks 127.0.0.1:1080 ──> server ns: echo
 * ```
 *
 * Subjects in the router ns, behind the same nftables TPROXY rules:
 *
 * - `router-pool0`: our router, socks outbound without a pool (dial per flow);
 * - `router-pool16`: our router, socks outbound with a pool of 16 warm connections;
 * - `v2ray`: Debian's v2ray 4.34, dokodemo-door (`tproxy`) → socks outbound.
 *
 * Metrics, each bounded in count and time: new-connection latency p50/p99
 * (one client, sequential: connect → 1 byte → its echo → close) and
 * connections/s with 8 parallel clients.
 *
 * `deno run -A bench/socks_bench.ts [--json] [--count 2000] [--seconds 10] [--rounds 3] [--subjects a,b]`
 *
 * Each subject runs once per round in a fresh lab (figures drift when
 * subjects share one: later ones came out slower whatever the order); the
 * table shows each metric's median over the rounds.
 *
 * The same file is the client in the client ns
 * (`socks_bench.ts client --connect ADDR:PORT --count N --seconds S`).
 * Needs root, nft, microsocks, and v2ray for the v2ray subject. Traffic stays
 * in the namespaces the bench creates; they are removed at the end.
 *
 * @module
 */

import { parseArgs } from "node:util";
import type { Lab } from "../tests/netns/harness.ts";
import { hostPort, intFlag } from "../tests/netns/peers/_util.ts";
import { boundedInt } from "./lib/cli.ts";
import { percentile } from "./lib/stats.ts";
import {
  findSubject,
  runJson,
  SKIP_MARK,
  startTproxyProxy,
  type Subject,
  TPROXY_PORT,
  v2raySubject,
  v2rayTproxyConfig,
  waitListening,
  withLab,
} from "./lib/subjects.ts";

const ROOT = new URL("../", import.meta.url);
const SELF = new URL(import.meta.url).pathname;
const CONNRATE = new URL("./lib/connrate.ts", import.meta.url).pathname;
const SOCKS_PORT = 1080;
const WARMUP = 200;

/** v2ray v4 JSON: TPROXY dokodemo-door in, SOCKS5 out to microsocks. */
export function v2raySocksConfig(port: number, mark: number, socksPort: number): unknown {
  return v2rayTproxyConfig(port, mark, "tcp", {
    tag: "socks-out",
    protocol: "socks",
    settings: { servers: [{ address: "127.0.0.1", port: socksPort }] },
  });
}

/** Our router's config: TPROXY in, one socks outbound (`pool` 0 = none). */
export function routerSocksConfig(
  port: number,
  mark: number,
  socksPort: number,
  pool: number,
): unknown {
  return {
    log: { level: "warn" },
    inbounds: [{ type: "tproxy", tag: "tproxy-in", listen: "::", listen_port: port }],
    outbounds: [{
      type: "socks",
      tag: "socks",
      server: "127.0.0.1",
      server_port: socksPort,
      ...(pool > 0 ? { pool: { size: pool } } : {}),
    }],
    route: { final: "socks", default_mark: mark },
  };
}

function routerSubject(pool: number): Subject {
  return {
    name: `router-pool${pool}`,
    async setup(lab, dir) {
      const main = new URL("main.ts", ROOT).pathname;
      const cfg = `${dir}/router-pool${pool}.json`;
      return await startTproxyProxy(lab, {
        configPath: cfg,
        config: routerSocksConfig(TPROXY_PORT, SKIP_MARK, SOCKS_PORT, pool),
        argv: [Deno.execPath(), "run", "-A", main, "run", "--config", cfg, "--no-ipc"],
        spawn: { cwd: new URL(".", ROOT).pathname, env: { NO_COLOR: "1" } },
        timeoutMs: 15_000,
        failure: (p) =>
          `router did not listen: ${(p.stderr.trim() || p.lines.join(" ")).slice(0, 300)}`,
        notes: [pool > 0 ? `socks outbound, pool of ${pool}` : "socks outbound, no pool"],
      });
    },
  };
}

const v2raySocksSubject: Subject = v2raySubject(
  "v2ray",
  "v2ray-socks.json",
  v2raySocksConfig(TPROXY_PORT, SKIP_MARK, SOCKS_PORT),
  "v2ray 4.34 dokodemo-door tproxy → socks outbound",
);

/** Subjects in table order. */
export const SOCKS_SUBJECTS: Subject[] = [routerSubject(0), routerSubject(16), v2raySocksSubject];

/** One subject's figures (null when a step failed). */
export interface SocksBenchRow {
  subject: string;
  skipped?: string;
  latency_p50_us: number | null;
  latency_p99_us: number | null;
  latency_n: number | null;
  conn_per_s: number | null;
  errors: number;
  notes: string[];
}

async function latency(lab: Lab, echo: string, count: number, seconds: number) {
  const argv = [
    Deno.execPath(),
    "run",
    "-A",
    SELF,
    "client",
    "--connect",
    echo,
    "--count",
    String(count),
    "--seconds",
    String(seconds),
  ];
  return await runJson(lab, argv, argv.slice(3).join(" "));
}

function median(xs: (number | null)[]): number | null {
  const v = xs.filter((x): x is number => x !== null).sort((a, b) => a - b);
  return v.length === 0 ? null : v[Math.floor((v.length - 1) / 2)]!;
}

/**
 * Runs the bench: `rounds` rounds, each subject once per round in a fresh
 * lab (figures drift when subjects share one lab), and reports each
 * metric's median over the rounds.
 */
export async function runSocksBench(
  names: string[],
  count: number,
  seconds: number,
  rounds = 3,
  log: (s: string) => void = (s) => console.error(s),
): Promise<SocksBenchRow[]> {
  const subjects = names.map((name) => findSubject(SOCKS_SUBJECTS, name));
  const all = new Map<string, SocksBenchRow[]>(names.map((n) => [n, []]));
  for (let round = 1; round <= rounds; round++) {
    for (const s of subjects) {
      log(`== round ${round}/${rounds}: ${s.name}`);
      all.get(s.name)!.push(await benchOne(s, count, seconds, log));
    }
  }
  return names.map((name) => {
    const rs = all.get(name)!;
    const ran = rs.filter((r) => !r.skipped);
    if (ran.length === 0) return rs[0]!;
    return {
      subject: name,
      latency_p50_us: median(ran.map((r) => r.latency_p50_us)),
      latency_p99_us: median(ran.map((r) => r.latency_p99_us)),
      latency_n: median(ran.map((r) => r.latency_n)),
      conn_per_s: median(ran.map((r) => r.conn_per_s)),
      errors: ran.reduce((a, r) => a + r.errors, 0),
      notes: [...ran[0]!.notes, `median of ${ran.length} rounds`],
    };
  });
}

/** One subject in a fresh lab: echo server, microsocks, the subject, both measurements. */
async function benchOne(
  s: Subject,
  count: number,
  seconds: number,
  log: (s: string) => void,
): Promise<SocksBenchRow> {
  const row: SocksBenchRow = {
    subject: s.name,
    latency_p50_us: null,
    latency_p99_us: null,
    latency_n: null,
    conn_per_s: null,
    errors: 0,
    notes: [],
  };
  return await withLab("vr-socks-bench-", async (lab, dir) => {
    const dst = lab.addrs.extra4[0]!;
    await lab.tcpServer("server", dst, 7000, "echo");
    const echo = `${dst}:7000`;
    const socks = lab.spawn("router", ["microsocks", "-i", "127.0.0.1", "-p", String(SOCKS_PORT)]);
    if (!await waitListening(lab, SOCKS_PORT, 10_000, socks)) {
      throw new Error(`microsocks did not listen: ${socks.stderr.trim()}`);
    }
    const h = await s.setup(lab, dir);
    if (typeof h === "string") {
      log(`  skipped: ${h}`);
      return { ...row, skipped: h };
    }
    row.notes = h.notes ?? [];
    try {
      await latency(lab, echo, WARMUP, 10); // JIT, pool warm-up, first health checks
      try {
        const l = await latency(lab, echo, count, seconds);
        row.latency_p50_us = l.p50_us ?? null;
        row.latency_p99_us = l.p99_us ?? null;
        row.latency_n = l.n ?? null;
        row.errors += l.errors ?? 0;
      } catch (e) {
        log(`  latency: ${(e as Error).message}`);
      }
      try {
        const argv = [
          Deno.execPath(),
          "run",
          "-A",
          CONNRATE,
          "--connect",
          echo,
          "--seconds",
          String(Math.min(seconds, 5)),
          "--max",
          String(count * 10),
          "--concurrency",
          "8",
        ];
        const r = await runJson(lab, argv, argv.slice(3).join(" "));
        row.conn_per_s = r.per_s ?? null;
        row.errors += r.errors ?? 0;
      } catch (e) {
        log(`  connrate: ${(e as Error).message}`);
      }
      log(`  ${JSON.stringify(row)}`);
    } finally {
      await h.stop();
    }
    return row;
  });
}

/** The rows as a markdown table. */
export function socksBenchTable(rows: readonly SocksBenchRow[]): string {
  const f = (v: number | null) => v === null ? "–" : v.toFixed(0);
  return [
    "| subject | new conn p50 (µs) | p99 (µs) | conns/s (8 clients) | errors |",
    "|---|---:|---:|---:|---:|",
    ...rows.map((r) =>
      r.skipped
        ? `| ${r.subject} | skipped | | | |`
        : `| ${r.subject} | ${f(r.latency_p50_us)} | ${f(r.latency_p99_us)} | ${
          f(r.conn_per_s)
        } | ${r.errors} |`
    ),
  ].join("\n");
}

/** Client mode: sequential connect → 1 byte → echo → close; prints one JSON line. */
async function clientMain(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      connect: { type: "string" },
      count: { type: "string" },
      seconds: { type: "string" },
    },
  });
  const target = hostPort("connect", values.connect);
  const count = intFlag("count", values.count, 2000, 100_000);
  const seconds = intFlag("seconds", values.seconds, 10, 600);
  const deadline = performance.now() + seconds * 1000;
  const one = new Uint8Array([0x2a]);
  const buf = new Uint8Array(16);
  const samples: number[] = [];
  let errors = 0;
  for (let i = 0; i < count && performance.now() < deadline && errors < 100; i++) {
    const t0 = performance.now();
    try {
      const c = await Deno.connect({ ...target, transport: "tcp" });
      try {
        c.setNoDelay(true);
        await c.write(one);
        if ((await c.read(buf)) === null) throw new Error("closed before the echo");
        samples.push((performance.now() - t0) * 1000);
      } finally {
        c.close();
      }
    } catch {
      errors++;
    }
  }
  samples.sort((a, b) => a - b);
  const mean = samples.reduce((a, b) => a + b, 0) / Math.max(1, samples.length);
  console.log(JSON.stringify({
    n: samples.length,
    p50_us: percentile(samples, 50),
    p99_us: percentile(samples, 99),
    mean_us: mean,
    errors,
  }));
  return 0;
}

async function main(): Promise<number> {
  if (Deno.args[0] === "client") return await clientMain(Deno.args.slice(1));
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      json: { type: "boolean" },
      count: { type: "string", default: "2000" },
      seconds: { type: "string", default: "10" },
      subjects: { type: "string", default: SOCKS_SUBJECTS.map((s) => s.name).join(",") },
      rounds: { type: "string", default: "3" },
    },
  });
  const rounds = boundedInt("rounds", values.rounds, 1, 9);
  if (rounds === null) return 2;
  const count = boundedInt("count", values.count, 10, 100_000);
  if (count === null) return 2;
  const seconds = boundedInt("seconds", values.seconds, 1, 60);
  if (seconds === null) return 2;
  const rows = await runSocksBench(values.subjects.split(","), count, seconds, rounds);
  if (values.json) console.log(JSON.stringify({ count, seconds, rounds, rows }, null, 2));
  else console.log(socksBenchTable(rows));
  return 0;
}

if (import.meta.main) Deno.exit(await main());
