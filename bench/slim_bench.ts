/**
 * Slim Node forwarding throughput: iperf3 from namespace A to namespace B
 * through the slim namespace S, with and without our nft table, over plain
 * veth and over wireguard-go tunnels. Needs root, ip, nft, wg,
 * wireguard-go, iperf3.
 *
 *   deno run -A bench/slim_bench.ts [--seconds 5] [--repeat 2]
 *
 * Prints a markdown table. Each iperf3 run is bounded by --seconds (and a
 * hard process timeout); every namespace is deleted at the end.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { createLogger } from "../core/log.ts";
import { LinuxKernel } from "../slim/kernel_linux.ts";
import { generateKeyPair } from "../slim/keys.ts";
import type { PeerRecord, RuleRecord } from "../slim/model.ts";
import { renderDeleteTable, renderRuleset } from "../slim/nft.ts";
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

interface Result {
  path: string;
  table: string;
  gbps: number[];
}

async function iperf(server: string, client: string, ip: string, seconds: number): Promise<number> {
  const srv = new Deno.Command("ip", {
    args: ["netns", "exec", server, "iperf3", "-s", "-1", "-B", ip, "-p", "5201"],
    stdout: "null",
    stderr: "null",
    signal: AbortSignal.timeout((seconds + 20) * 1000),
  }).spawn();
  try {
    await new Promise((r) => setTimeout(r, 400));
    const o = await nsExec(
      client,
      "iperf3",
      ["-c", ip, "-p", "5201", "-t", String(seconds), "-J"],
      {
        timeoutMs: (seconds + 15) * 1000,
      },
    );
    if (o.code !== 0) throw new Error(`iperf3 failed: ${o.stdout.slice(0, 400)} ${o.stderr}`);
    const j = JSON.parse(o.stdout) as { end: { sum_received: { bits_per_second: number } } };
    return j.end.sum_received.bits_per_second / 1e9;
  } finally {
    try {
      srv.kill("SIGKILL");
    } catch { /* already exited */ }
    await srv.status;
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      seconds: { type: "string", default: "5" },
      repeat: { type: "string", default: "2" },
    },
  });
  const seconds = Math.min(60, Math.max(1, Number(values.seconds)));
  const repeat = Math.min(10, Math.max(1, Number(values.repeat)));
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
    const va = `wg-peer-v${id}`.slice(0, 15), vb = `wg-peer-w${id}`.slice(0, 15);
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
    const kernelIn = (ns: string) =>
      new LinuxKernel({
        logger: log,
        mode: "userspace",
        run: (cmd, args, opts) =>
          import("../slim/command.ts").then((m) =>
            m.runCommand("ip", ["netns", "exec", ns, cmd, ...args], opts)
          ),
        writeSysctl: (path, value) => {
          const key = path.replace("/proc/sys/", "").replaceAll("/", ".");
          new Deno.Command("ip", {
            args: ["netns", "exec", ns, "sysctl", "-q", "-w", `${key}=${value}`],
          }).outputSync();
        },
      });
    const ks = kernelIn(S);
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

    const rules: RuleRecord[] = [
      [tagA, tagB],
      [`v${id}`.slice(0, 7), `w${id}`.slice(0, 7)],
    ].map(([from, to], i) => ({
      id: i + 1,
      from: from!,
      to: to!,
      bidirectional: true,
      protocol: null,
      ports: [],
      comment: null,
      createdAt: "",
    }));
    // The one-way rule A->B needs connection tracking for the replies.
    const oneWay = rules.map((r) => ({ ...r, bidirectional: false }));
    const variants = [
      { name: "no", rules: null },
      { name: "yes, two-way rule (stateless)", rules },
      { name: "yes, one-way rule (conntrack)", rules: oneWay },
    ];
    const results: (Result & { rules: RuleRecord[] | null })[] = [];
    for (const path of ["veth (kernel forwarding)", "wireguard-go tunnels"]) {
      for (const v of variants) results.push({ path, table: v.name, rules: v.rules, gbps: [] });
    }
    for (let r = 0; r < repeat; r++) {
      for (const res of results) {
        await nsSh(S, "nft", ["-f", "-"], {
          stdin: res.rules
            ? renderRuleset(res.rules, { table, peersOnly: true })
            : renderDeleteTable(table),
        });
        const veth = res.path.startsWith("veth");
        const gbps = await iperf(B, A, veth ? "172.30.2.2" : "10.78.2.2", seconds);
        res.gbps.push(gbps);
        console.error(`${res.path} table=${res.table}: ${gbps.toFixed(2)} Gbit/s`);
      }
    }
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    console.log(
      `\n${seconds}s iperf3 TCP A->B through the slim namespace, ${repeat} run(s) each\n`,
    );
    console.log("| path | our nft table | Gbit/s (runs) | median | cost vs no table |");
    console.log("|---|---|---|---|---|");
    for (let i = 0; i < results.length; i += variants.length) {
      const base = med(results[i]!.gbps);
      for (const res of results.slice(i, i + variants.length)) {
        const m = med(res.gbps);
        const cost = res.rules ? `${((1 - m / base) * 100).toFixed(1)}%` : "";
        console.log(
          `| ${res.path} | ${res.table} | ${res.gbps.map((g) => g.toFixed(2)).join(", ")} | ${
            m.toFixed(2)
          } | ${cost} |`,
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
