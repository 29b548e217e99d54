/**
 * Slim Node forwarding cost: traffic from namespace A to namespace B through
 * the slim namespace S, with and without our nft table, over plain veth and
 * over wireguard-go tunnels. Needs root, ip, nft, wg, wireguard-go, iperf3.
 *
 *   deno run -A bench/slim_bench.ts [--mode throughput|cpu] [--seconds 5] [--repeat 5]
 *       [--veth-rate 3G] [--wg-rate 200M] [--path veth|wg|both]
 *
 * - `throughput`: saturated iperf3 TCP, Gbit/s per run.
 * - `cpu`: iperf3 at a fixed offered rate (well below saturation); the CPU
 *   time of the whole machine (user+nice+system+irq+softirq from /proc/stat)
 *   while the rate is steady, divided by the bytes S forwarded: CPU seconds
 *   per GB forwarded. A forward-hook table costs CPU per packet, so at a
 *   fixed rate its cost shows up here even when throughput hides it.
 *
 * Variants are run interleaved (one round = every variant once, the order
 * rotated each round) `--repeat` times; medians are printed as a markdown
 * table. Each iperf3 run is bounded by --seconds (and a hard process
 * timeout); every namespace is deleted at the end.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { createLogger } from "../core/log.ts";
import { runCommand } from "../slim/command.ts";
import { LinuxKernel } from "../slim/kernel_linux.ts";
import { generateKeyPair } from "../slim/keys.ts";
import type { PeerRecord, RuleRecord } from "../slim/model.ts";
import { renderDeleteTable, renderRuleLines, renderRuleset } from "../slim/nft.ts";
import {
  addNamespaces,
  canRunPrivileged,
  deleteNamespaces,
  exec,
  nsExec,
  nsSh,
  sh,
  uid,
  vethPair,
  wgClient,
} from "../tests/netns/slim_netns.ts";

/** One table configuration under test. */
interface Variant {
  name: string;
  /** The `nft -f -` script applied in S before the run. */
  script: string;
}

/** One measured traffic kind. */
interface Load {
  path: "veth" | "wg";
  /** iperf3 protocol flags. */
  proto: "tcp" | "udp";
  /** Offered rate (iperf3 `-b`), null = saturated. */
  rate: string | null;
  /** Server address in B. */
  ip: string;
  /** S's interface towards B: its tx bytes are what S forwarded. */
  outDev: string;
}

/** Busy and total jiffies of the whole machine from /proc/stat's `cpu` line. */
function cpuJiffies(): { busy: number; total: number } {
  const line = Deno.readTextFileSync("/proc/stat").split("\n")[0]!;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal guest guest_nice
  const busy = (f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0);
  const total = busy + (f[3] ?? 0) + (f[4] ?? 0) + (f[7] ?? 0);
  return { busy, total };
}

/** Inode of a named network namespace (as in `/proc/<pid>/ns/net` → `net:[ino]`). */
function netnsInode(name: string): number {
  return Deno.statSync(`/run/netns/${name}`).ino ?? -1;
}

/**
 * CPU nanoseconds run so far by every thread of `pids`, of every
 * wireguard-go in `netns` (inodes) and of the ksoftirqd threads, from
 * `/proc/<pid>/task/<tid>/schedstat` (exact runtime, not tick samples).
 * This kernel has no IRQ time accounting, so softirq work (where the
 * forwarding and our table run) is charged to the task it interrupted: the
 * iperf3 sender/receiver, wireguard-go or ksoftirqd. Other engineers'
 * processes on the VM are left out.
 */
function ourCpuNs(pids: number[], netns: Set<number>): number {
  const all = new Set(pids);
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const comm = Deno.readTextFileSync(`/proc/${e.name}/comm`).trim();
      if (comm.startsWith("ksoftirqd/")) all.add(Number(e.name));
      else if (comm === "wireguard-go") {
        const m = /\[(\d+)\]/.exec(Deno.readLinkSync(`/proc/${e.name}/ns/net`));
        if (m && netns.has(Number(m[1]))) all.add(Number(e.name));
      }
    } catch { /* exited */ }
  }
  let ns = 0;
  for (const pid of all) {
    try {
      for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
        const f = Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/schedstat`);
        ns += Number(f.split(" ")[0]);
      }
    } catch { /* exited */ }
  }
  return ns;
}

async function txBytes(ns: string, dev: string): Promise<number> {
  const o = await nsSh(ns, "cat", [`/sys/class/net/${dev}/statistics/tx_bytes`]);
  return Number(o.trim());
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Result of one run. */
interface Sample {
  /** iperf3 receiver Gbit/s over the whole run. */
  gbps: number;
  /** CPU seconds of our processes (see {@linkcode ourCpuNs}) per GB forwarded by S. */
  cpuPerGB: number;
  /** CPU seconds of the whole machine (/proc/stat) per GB forwarded by S. */
  machinePerGB: number;
  /** Machine busy fraction in the steady window (0..1 of all CPUs). */
  busy: number;
}

async function run(
  S: string,
  A: string,
  B: string,
  load: Load,
  seconds: number,
  netns: Set<number>,
): Promise<Sample> {
  const srv = new Deno.Command("ip", {
    args: ["netns", "exec", B, "iperf3", "-s", "-1", "-B", load.ip, "-p", "5201"],
    stdout: "null",
    stderr: "null",
    signal: AbortSignal.timeout((seconds + 20) * 1000),
  }).spawn();
  try {
    await sleep(400);
    const args = ["-c", load.ip, "-p", "5201", "-t", String(seconds), "-J"];
    if (load.proto === "udp") args.push("-u", "-l", "1200");
    if (load.rate !== null) args.push("-b", load.rate);
    const child = new Deno.Command("ip", {
      args: ["netns", "exec", A, "iperf3", ...args],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout((seconds + 15) * 1000),
    }).spawn();
    const client = child.output();
    // `ip netns exec` execs, so these pids are the iperf3 processes.
    const pids = [child.pid, srv.pid];
    // Steady window: skip the first second (slow start, handshakes) and the last.
    await sleep(1000);
    const c0 = cpuJiffies(), n0 = ourCpuNs(pids, netns), b0 = await txBytes(S, load.outDev);
    await sleep(Math.max(1, seconds - 2) * 1000);
    const c1 = cpuJiffies(), n1 = ourCpuNs(pids, netns), b1 = await txBytes(S, load.outDev);
    const out = await client;
    const o = {
      code: out.code,
      stdout: new TextDecoder().decode(out.stdout),
      stderr: new TextDecoder().decode(out.stderr),
    };
    if (o.code !== 0) throw new Error(`iperf3 failed: ${o.stdout.slice(0, 400)} ${o.stderr}`);
    const j = JSON.parse(o.stdout) as {
      end: { sum_received?: { bits_per_second: number }; sum?: { bits_per_second: number } };
    };
    const bps = j.end.sum_received?.bits_per_second ?? j.end.sum?.bits_per_second ?? 0;
    const gb = (b1 - b0) / 1e9;
    return {
      gbps: bps / 1e9,
      cpuPerGB: gb > 0 ? (n1 - n0) / 1e9 / gb : NaN,
      machinePerGB: gb > 0 ? (c1.busy - c0.busy) / 100 / gb : NaN, // USER_HZ
      busy: (c1.busy - c0.busy) / Math.max(1, c1.total - c0.total),
    };
  } finally {
    try {
      srv.kill("SIGKILL");
    } catch { /* already exited */ }
    await srv.status;
  }
}

function rule(id: number, from: string, to: string, bidirectional = true): RuleRecord {
  return { id, from, to, bidirectional, protocol: null, ports: [], comment: null, createdAt: "" };
}

/**
 * 50 peers and 200 two-way rules, the measured pair's rule last: with a
 * linear chain this is the worst case (every packet walks every rule).
 */
function largeRules(from: string, to: string): RuleRecord[] {
  const tags = Array.from({ length: 48 }, (_, i) => `f${String(i).padStart(2, "0")}`);
  const out: RuleRecord[] = [];
  for (let i = 0; out.length < 199; i++) {
    const a = tags[i % 48]!, b = tags[(i * 7 + 3 + Math.floor(i / 48)) % 48]!;
    if (a !== b) out.push(rule(out.length + 1, a, b));
  }
  out.push(rule(200, from, to));
  return out;
}

/**
 * The table as rendered before the verdict map (a linear chain of one rule
 * line per rule direction), kept to measure what the verdict map saves.
 */
function renderLinearRuleset(rules: readonly RuleRecord[], table: string): string {
  const lines = [
    `add table inet ${table}`,
    `delete table inet ${table}`,
    `table inet ${table} {`,
    `  chain forward {`,
    `    type filter hook forward priority filter; policy accept;`,
    `    iifname "wg-peer-*" oifname "wg-peer-*" jump between_peers`,
    `    iifname "wg-peer-*" counter drop comment "peer to non-peer"`,
    `  }`,
    `  chain between_peers {`,
    ...rules.flatMap(renderRuleLines).map((l) => `    ${l}`),
    `    counter drop comment "no forwarding rule"`,
    `  }`,
    `}`,
    ``,
  ];
  return lines.join("\n");
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      mode: { type: "string", default: "throughput" },
      seconds: { type: "string", default: "5" },
      repeat: { type: "string", default: "5" },
      path: { type: "string", default: "both" },
      "veth-rate": { type: "string", default: "3G" },
      "veth-udp-rate": { type: "string", default: "1G" },
      "wg-rate": { type: "string", default: "200M" },
    },
  });
  const mode = values.mode;
  if (mode !== "throughput" && mode !== "cpu") {
    console.error(`--mode: ${JSON.stringify(mode)}: expected throughput or cpu`);
    return 2;
  }
  const rateRe = /^\d{1,5}[KMG]?$/;
  for (const k of ["veth-rate", "veth-udp-rate", "wg-rate"] as const) {
    if (!rateRe.test(values[k])) {
      console.error(`--${k}: ${JSON.stringify(values[k])}: expected e.g. 3G or 200M`);
      return 2;
    }
  }
  const seconds = Math.min(60, Math.max(4, Number(values.seconds) || 5));
  const repeat = Math.min(20, Math.max(1, Number(values.repeat) || 5));
  const paths = values.path === "both" ? ["veth", "wg"] : [values.path];
  if (!canRunPrivileged(["ip", "nft", "wg", "wireguard-go", "iperf3"])) {
    console.error("slim_bench: needs root and ip, nft, wg, wireguard-go, iperf3");
    return 1;
  }
  const id = uid(4);
  const S = `sbS-${id}`, A = `sbA-${id}`, B = `sbB-${id}`;
  const table = `vpn_slim_b${id}`;
  const log = createLogger({ level: "warn" });
  try {
    await addNamespaces([S, A, B]);
    // Veth underlays; S's ends are named like peers so our table applies to them.
    const tagVa = `v${id}`, tagVb = `w${id}`;
    const va = `wg-peer-${tagVa}`, vb = `wg-peer-${tagVb}`;
    await vethPair({ ns: S, dev: va, cidr: "172.30.1.1/24" }, {
      ns: A,
      dev: "ua",
      cidr: "172.30.1.2/24",
    });
    await vethPair({ ns: S, dev: vb, cidr: "172.30.2.1/24" }, {
      ns: B,
      dev: "ub",
      cidr: "172.30.2.2/24",
    });
    await sh("ip", ["-n", A, "route", "add", "default", "via", "172.30.1.1"]);
    await sh("ip", ["-n", B, "route", "add", "default", "via", "172.30.2.1"]);
    for (const dev of [va, vb]) {
      await nsSh(S, "sysctl", ["-q", "-w", `net.ipv4.conf.${dev}.forwarding=1`]);
    }

    // wireguard-go tunnels A<->S and B<->S, S's side configured by slim's kernel layer.
    const tagA = `x${id}`, tagB = `y${id}`;
    const keys = await Promise.all([0, 1, 2, 3].map(() => generateKeyPair()));
    const peer = (tag: string, i: number, port: number, client: number): PeerRecord => ({
      tag,
      privateKey: keys[i]!.privateKey,
      publicKey: keys[i]!.publicKey,
      peerPublicKey: keys[client]!.publicKey,
      preSharedKey: null,
      listenPort: port,
      address: [`10.78.${i + 1}.1/24`],
      allowedIps: [`10.78.${i + 1}.2/32`],
      endpoint: null,
      persistentKeepalive: null,
      mtu: 1420,
      enabled: true,
      createdAt: "",
    });
    const ks = new LinuxKernel({
      logger: log,
      mode: "userspace",
      run: (cmd, args, opts) => runCommand("ip", ["netns", "exec", S, cmd, ...args], opts),
      writeSysctl: (path, value) => {
        const key = path.replace("/proc/sys/", "").replaceAll("/", ".");
        new Deno.Command("ip", {
          args: ["netns", "exec", S, "sysctl", "-q", "-w", `${key}=${value}`],
        }).outputSync();
      },
    });
    await ks.applyPeer(peer(tagA, 0, 51911, 2));
    await ks.applyPeer(peer(tagB, 1, 51912, 3));
    const client = (ns: string, dev: string, key: number, srv: number, ep: string, ip: string) =>
      wgClient({
        ns,
        dev,
        privateKey: keys[key]!.privateKey,
        serverPublicKey: keys[srv]!.publicKey,
        endpoint: ep,
        address: ip,
        network: "10.78.0.0/16",
        mtu: 1420,
      });
    await client(A, `wgb${id}a`, 2, 0, "172.30.1.1:51911", "10.78.1.2/24");
    await client(B, `wgb${id}b`, 3, 1, "172.30.2.1:51912", "10.78.2.2/24");
    await nsExec(A, "ping", ["-c", "2", "-W", "2", "10.78.1.1"]);
    await nsExec(B, "ping", ["-c", "2", "-W", "2", "10.78.2.1"]);

    // The rules name both pairs (veth and wg) so one table serves both paths.
    const small = [rule(1, tagVa, tagVb), rule(2, tagA, tagB)];
    const oneWay = small.map((r) => ({ ...r, bidirectional: false }));
    const large = [
      ...largeRules(tagVa, tagVb).slice(0, 199),
      rule(200, tagA, tagB),
      rule(201, tagVa, tagVb),
    ];
    const opts = { table, peersOnly: true };
    const variants: Variant[] = [
      { name: "none", script: renderDeleteTable(table) },
      { name: "2 peers, 1 two-way rule", script: renderRuleset(small, opts) },
      { name: "2 peers, 1 one-way rule (conntrack on)", script: renderRuleset(oneWay, opts) },
      { name: "50 peers, 201 two-way rules (verdict map)", script: renderRuleset(large, opts) },
      {
        name: "50 peers, 201 two-way rules, linear chain (old render, ours last)",
        script: renderLinearRuleset(large, table),
      },
    ];

    const loads: Load[] = [];
    for (const p of paths) {
      if (p === "veth") {
        const base = { path: "veth", ip: "172.30.2.2", outDev: vb } as const;
        if (mode === "throughput") loads.push({ ...base, proto: "tcp", rate: null });
        else {
          loads.push({ ...base, proto: "tcp", rate: values["veth-rate"] });
          loads.push({ ...base, proto: "udp", rate: values["veth-udp-rate"] });
        }
      } else if (p === "wg") {
        const base = { path: "wg", ip: "10.78.2.2", outDev: `wg-peer-${tagB}` } as const;
        loads.push({
          ...base,
          proto: "tcp",
          rate: mode === "throughput" ? null : values["wg-rate"],
        });
      } else {
        console.error(`--path: ${JSON.stringify(p)}: expected veth, wg or both`);
        return 2;
      }
    }

    const netns = new Set([S, A, B].map(netnsInode));
    const samples = new Map<string, Sample[]>();
    const key = (l: Load, v: Variant) => `${l.path}|${l.proto}|${l.rate}|${v.name}`;
    for (const l of loads) {
      for (let r = 0; r < repeat; r++) {
        for (let k = 0; k < variants.length; k++) {
          const v = variants[(k + r) % variants.length]!;
          await nsSh(S, "nft", ["-f", "-"], { stdin: v.script });
          const s = await run(S, A, B, l, seconds, netns);
          const list = samples.get(key(l, v)) ?? [];
          list.push(s);
          samples.set(key(l, v), list);
          console.error(
            `${l.path} ${l.proto} ${l.rate ?? "max"} [${v.name}] round ${r + 1}: ` +
              `${s.gbps.toFixed(3)} Gbit/s, ${s.cpuPerGB.toFixed(3)} CPU-s/GB ` +
              `(machine ${s.machinePerGB.toFixed(3)}), ` +
              `busy ${(s.busy * 100).toFixed(0)}%`,
          );
        }
      }
    }

    const load = (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
    console.log(
      `\n${mode}: iperf3 A->B through S, ${seconds}s runs, ${repeat} interleaved rounds; ` +
        `loadavg at end ${load}\n`,
    );
    console.log(
      "| path, load | our nft table | Gbit/s median | Gbit/s vs none, paired | " +
        "our CPU-s per GB (runs) | median | CPU per GB vs none, paired | machine CPU-s/GB median |",
    );
    console.log("|---|---|---|---|---|---|---|---|");
    for (const l of loads) {
      const base = samples.get(key(l, variants[0]!))!;
      for (const v of variants) {
        const xs = samples.get(key(l, v))!;
        // Round i of every variant ran back to back: compare within rounds.
        const paired = (f: (s: Sample) => number) => {
          if (v === variants[0]) return "";
          const r = xs.map((s, i) => (f(s) / f(base[i]!) - 1) * 100).sort((a, b) => a - b);
          const pc = (x: number) => `${x >= 0 ? "+" : ""}${x.toFixed(1)}%`;
          return `${pc(median(r))} (${pc(r[0]!)} .. ${pc(r[r.length - 1]!)})`;
        };
        const label = `${l.path} ${l.proto} ${l.rate ?? "saturated"}`;
        console.log(
          `| ${label} | ${v.name} | ${median(xs.map((s) => s.gbps)).toFixed(3)} | ${
            paired((s) => s.gbps)
          } | ${xs.map((s) => s.cpuPerGB.toFixed(3)).join(", ")} | ${
            median(xs.map((s) => s.cpuPerGB)).toFixed(3)
          } | ${paired((s) => s.cpuPerGB)} | ${median(xs.map((s) => s.machinePerGB)).toFixed(3)} |`,
        );
      }
    }
    await exec("ip", ["-n", S, "link", "del", `wg-peer-${tagA}`]);
    await exec("ip", ["-n", S, "link", "del", `wg-peer-${tagB}`]);
    return 0;
  } finally {
    await deleteNamespaces([A, B, S]);
  }
}

if (import.meta.main) Deno.exit(await main());
