/**
 * Data-plane benchmark in the netns lab (client ns → router ns → server ns),
 * side by side for several subjects sitting in the router ns:
 *
 * - `kernel`: plain forwarding, the ceiling.
 * - `v2ray`: Debian's v2ray 4.34, dokodemo-door with `followRedirect` +
 *   `sockopt.tproxy`, freedom outbound with `sockopt.mark` = skip mark,
 *   behind our `tproxy-rules`.
 * - `router`: our process (`deno run -A main.ts run --config CFG`); skipped
 *   with the reason when it does not start or listen.
 *
 * Metrics (every run bounded in time and count): the proxy's VmRSS idle and
 * with 1,000 open flows, iperf3 TCP bulk with 1 and 4 streams, 1-byte
 * request/response latency p50/p99, new connections per second, and the
 * VmRSS with 1,000 open flows again after all that (what churn left behind).
 *
 * `deno run -A bench/netns_bench.ts [--json] [--seconds 5] [--subjects kernel,v2ray,router]`
 *
 * Needs root, iperf3, nft, and v2ray for the v2ray subject. Traffic stays in
 * the namespaces the bench creates; they are removed at the end.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { ROUTER_V8_FLAGS } from "../core/v8_flags.ts";
import type { Lab } from "../tests/netns/harness.ts";
import { boundedInt, printResults, subjectBenchFlags } from "./lib/cli.ts";
import { markdownTable, type SubjectResult, vmRssMiB } from "./lib/stats.ts";
import {
  eachSubject,
  runJson,
  SKIP_MARK,
  startIperfServer,
  startTproxyProxy,
  type Subject,
  type SubjectHandle,
  TPROXY_PORT,
  v2raySubject as v2rayTproxySubject,
  v2rayTproxyConfig,
  withLab,
} from "./lib/subjects.ts";

export type { Subject, SubjectHandle } from "./lib/subjects.ts";

const LIB = new URL("./lib/", import.meta.url);
const ROOT = new URL("../", import.meta.url);

/** The router's V8 flags (`core/v8_flags.ts`); re-exported for the other benches. */
export { ROUTER_V8_FLAGS };

/** Plain kernel forwarding: nothing to set up. */
export const kernelSubject: Subject = {
  name: "kernel",
  setup: () => Promise.resolve({ stop: () => Promise.resolve(), notes: ["plain forwarding"] }),
};

/** The v4 JSON config of v2ray as a TPROXY peer. */
export function v2rayConfig(port: number, mark: number): unknown {
  return v2rayTproxyConfig(port, mark, "tcp,udp", {
    tag: "direct",
    protocol: "freedom",
    settings: {},
  });
}

/** Debian's v2ray behind our TPROXY rules. */
export const v2raySubject: Subject = v2rayTproxySubject(
  "v2ray",
  "v2ray.json",
  v2rayConfig(TPROXY_PORT, SKIP_MARK),
  "v2ray 4.34 dokodemo-door tproxy, freedom mark 255",
);

/**
 * The config the bench gives our router. `ROUTER_UDP_MAPPING` in the
 * environment sets the inbound's `udp_mapping` (to compare the two).
 */
export function routerConfig(port: number, mark: number): unknown {
  const mapping = Deno.env.get("ROUTER_UDP_MAPPING");
  return {
    inbounds: [{
      type: "tproxy",
      tag: "tproxy-in",
      listen: "::",
      listen_port: port,
      ...(mapping ? { udp_mapping: mapping } : {}),
    }],
    outbounds: [{ type: "direct", tag: "direct" }],
    route: { final: "direct", default_mark: mark },
    log: { level: "warn" },
  };
}

/** Our router process (`main.ts run`); skipped when it fails to start. */
export const routerSubject: Subject = {
  name: "router",
  async setup(lab, dir) {
    const main = new URL("main.ts", ROOT).pathname;
    try {
      await Deno.stat(main);
    } catch {
      return "main.ts not found";
    }
    const cfg = `${dir}/router.json`;
    // ROUTER_V8_FLAGS in the environment overrides them (to compare flag sets).
    const flags = Deno.env.get("ROUTER_V8_FLAGS") ?? ROUTER_V8_FLAGS;
    // ROUTER_DENO_FLAGS adds `deno run` flags (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof").
    const extra = (Deno.env.get("ROUTER_DENO_FLAGS") ?? "").split(" ").filter((f) => f !== "");
    const argv = [
      Deno.execPath(),
      "run",
      "-A",
      ...extra,
      ...(flags ? [`--v8-flags=${flags}`] : []),
      main,
    ];
    return await startTproxyProxy(lab, {
      configPath: cfg,
      config: routerConfig(TPROXY_PORT, SKIP_MARK),
      argv: [...argv, "run", "--config", cfg],
      spawn: { cwd: new URL(".", ROOT).pathname, env: { NO_COLOR: "1" } },
      timeoutMs: 15_000,
      failure: (p) => {
        const why = (p.stderr.trim() || p.lines.join(" ")).slice(0, 300).replaceAll("\n", " ");
        return `main.ts run did not listen on ${TPROXY_PORT}: ${why}`;
      },
      notes: [`deno run -A${flags ? ` --v8-flags=${flags}` : ""} main.ts run`],
    });
  },
};

/** Every known subject, in table order (add new ones here). */
export const SUBJECTS: Subject[] = [kernelSubject, v2raySubject, routerSubject];

interface Targets {
  iperf: string;
  echo: string;
}

async function iperf(lab: Lab, host: string, streams: number, seconds: number): Promise<number> {
  const r = await lab.run("client", [
    "iperf3",
    "-c",
    host,
    "-p",
    "5201",
    "-t",
    String(seconds),
    "-P",
    String(streams),
    "-J",
  ]);
  const doc = JSON.parse(r.stdout) as {
    error?: string;
    end?: { sum_received?: { bits_per_second: number } };
  };
  const bps = doc.end?.sum_received?.bits_per_second;
  if (bps === undefined) throw new Error(`iperf3: ${doc.error ?? r.stderr.trim()}`);
  return bps / 1e9;
}

async function rssMiB(pid: number | undefined): Promise<number | null> {
  if (pid === undefined) return null;
  try {
    return vmRssMiB(await Deno.readTextFile(`/proc/${pid}/status`));
  } catch {
    return null;
  }
}

async function measure(
  lab: Lab,
  h: SubjectHandle,
  t: Targets,
  seconds: number,
  log: (s: string) => void,
): Promise<Record<string, number | null>> {
  const m: Record<string, number | null> = {};
  const deno = Deno.execPath();
  const lib = (f: string) => new URL(f, LIB).pathname;
  m.rss_idle_mib = await rssMiB(h.pid);
  const step = async (key: string[], f: () => Promise<number[]>) => {
    try {
      const vals = await f();
      key.forEach((k, i) => m[k] = vals[i] ?? null);
    } catch (e) {
      log(`  ${key.join(",")}: ${(e as Error).message}`);
      key.forEach((k) => m[k] = null);
    }
  };
  const rss1000 = async (): Promise<number[]> => {
    if (h.pid === undefined) return [NaN];
    const holder = lab.spawn("client", [
      deno,
      "run",
      "-A",
      lib("hold_flows.ts"),
      "--connect",
      t.echo,
      "--flows",
      "1000",
      "--seconds",
      "60",
    ]);
    try {
      const line = await holder.waitForLine(/^\{/, 60_000);
      const held = JSON.parse(line) as { held: number; errors: number };
      if (held.held < 1000) log(`  hold_flows: only ${held.held} held (${held.errors} errors)`);
      return [(await rssMiB(h.pid)) ?? NaN];
    } finally {
      await holder.kill();
    }
  };
  // Fresh: what 1,000 established flows cost on top of the idle process.
  await step(["rss_1000_mib"], rss1000);
  await step(["tcp_1_gbps"], async () => [await iperf(lab, t.iperf, 1, seconds)]);
  await step(["tcp_4_gbps"], async () => [await iperf(lab, t.iperf, 4, seconds)]);
  await step(["rr_p50_us", "rr_p99_us"], async () => {
    const r = await runJson(lab, [
      deno,
      "run",
      "-A",
      lib("pingpong.ts"),
      "--connect",
      t.echo,
      "--count",
      "20000",
      "--seconds",
      String(seconds),
    ]);
    return [r.p50_us!, r.p99_us!];
  });
  await step(["conn_per_s"], async () => {
    const r = await runJson(lab, [
      deno,
      "run",
      "-A",
      lib("connrate.ts"),
      "--connect",
      t.echo,
      "--seconds",
      String(Math.min(seconds, 5)),
      "--max",
      "100000",
    ]);
    if (r.errors! > 0) log(`  connrate: ${r.errors} errors`);
    return [r.per_s!];
  });
  // Again after the bulk, latency and rate tests: what churn left behind.
  await step(["rss_1000_after_mib"], rss1000);
  return m;
}

/** Runs the bench for the named subjects; returns one result per subject. */
export async function runNetnsBench(
  names: string[],
  seconds: number,
  log: (s: string) => void = (s) => console.error(s),
): Promise<SubjectResult[]> {
  return await withLab("vr-bench-", async (lab, dir) => {
    // Every connection of the rate test goes to the same echo address, so
    // the active closer's TIME_WAIT sockets (the client's, and a proxy's
    // upstream ones) pile up: with the default tcp_tw_reuse (loopback only)
    // connect() then scans ~28k used ports per call and the rate collapses
    // to a few hundred per second, for later subjects more (TIME_WAIT
    // outlives a subject by 60 s). Reusing TIME_WAIT ports for outgoing
    // connections (safe with TCP timestamps) removes that artefact.
    for (const ns of ["client", "router"] as const) {
      await lab.runOk(ns, ["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"]);
    }
    const dst = lab.addrs.extra4[0]!;
    startIperfServer(lab, dst);
    await lab.tcpServer("server", dst, 7000, "echo");
    const t: Targets = { iperf: dst, echo: `${dst}:7000` };
    await new Promise((r) => setTimeout(r, 300)); // iperf3 -s has no ready line
    return await eachSubject<SubjectResult>(
      lab,
      dir,
      SUBJECTS,
      names,
      log,
      async (name, h) => {
        const metrics = await measure(lab, h, t, seconds, log);
        log(`  ${JSON.stringify(metrics)}`);
        return { subject: name, metrics, notes: h.notes ?? [] };
      },
      (name, why) => ({ subject: name, skipped: why, metrics: {}, notes: [] }),
    );
  });
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: subjectBenchFlags(SUBJECTS.map((s) => s.name)),
  });
  const seconds = boundedInt("seconds", values.seconds, 1, 60);
  if (seconds === null) return 2;
  const results = await runNetnsBench(values.subjects.split(","), seconds);
  printResults(values.json, { seconds, results }, results, markdownTable);
  return 0;
}

if (import.meta.main) Deno.exit(await main());
