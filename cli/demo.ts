/**
 * `router demo`: builds a throwaway three-namespace lab (client → router →
 * server) with our nftables TPROXY rules, starts the real router in the
 * router namespace with a sample config (direct, a marked "WireGuard"
 * direct, a SOCKS5 bridge to microsocks, block), sends sample flows from
 * the client, and prints each decision next to what the client saw. Then it
 * hot-reloads a rule change over IPC and shows the new decision. Everything
 * is torn down at the end. Needs root; runs from source (`./dev demo`).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { ROUTER_V8_FLAGS } from "../core/v8_flags.ts";
import { IpcClient } from "../ipc/client.ts";
import { Lab, type LabProcess } from "../tests/netns/harness.ts";
import { peerPath } from "../tests/netns/harness.ts";
import type { DemoFlow, DemoResult } from "./demo_client.ts";

const HELP = `Usage: router demo [--keep]

Builds a throwaway network-namespace lab (client -> router -> server) with
the nftables TPROXY rules of 'router tproxy-rules', runs the router in it and
routes sample traffic, printing each decision. Needs root, nft, microsocks
(./dev demo installs them). --keep leaves the lab up until Enter is pressed.
`;

const here = new URL(".", import.meta.url).pathname;

function bold(s: string): string {
  return Deno.stdout.isTerminal() ? `\x1b[1m${s}\x1b[0m` : s;
}

async function waitFor(p: LabProcess, pattern: RegExp, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pattern.test(p.stderr)) {
    if (p.exited) throw new Error(`router exited:\n${p.stderr}`);
    if (Date.now() > deadline) throw new Error(`router did not start:\n${p.stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface FlowLog {
  outbound: string;
  rule: string;
  domain?: string;
  protocol?: string;
}

/** Parses the router's `flow` log lines by destination, in order. */
function flowLogs(stderr: string): Map<string, FlowLog[]> {
  const out = new Map<string, FlowLog[]>();
  for (const line of stderr.split("\n")) {
    // TCP flows ("router: flow") and UDP sessions ("udp session"), any level.
    if (!/ router(\/[\w-]+)*: (flow|udp session) /.test(line)) continue;
    const kv = Object.fromEntries(
      [...line.matchAll(/(\w+)=("(?:[^"\\]|\\.)*"|\S+)/g)].map((m) => [m[1], m[2]]),
    );
    const dst = kv.dst;
    if (!dst) continue;
    const entry: FlowLog = { outbound: kv.outbound ?? "?", rule: kv.rule ?? "?" };
    if (kv.domain) entry.domain = kv.domain;
    if (kv.protocol) entry.protocol = kv.protocol;
    const list = out.get(dst) ?? [];
    list.push(entry);
    out.set(dst, list);
  }
  return out;
}

async function runFlows(lab: Lab, flows: DemoFlow[]): Promise<DemoResult[]> {
  const r = await lab.run("client", [
    Deno.execPath(),
    "run",
    "-A",
    `${here}demo_client.ts`,
    JSON.stringify(flows),
  ]);
  return r.stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as DemoResult);
}

/** "outbound (rule #i, protocol name)" from a flow's log line; a name without a protocol came from DNS. */
function formatDecision(l: FlowLog | undefined): string {
  if (!l) return "(no decision logged)";
  const rule = l.rule === "final" ? "final" : `rule #${l.rule}`;
  return `${l.outbound} (${rule}${l.domain ? `, ${l.protocol ?? "dns-mapped"} ${l.domain}` : ""})`;
}

function describe(f: DemoFlow): string {
  return f.kind === "raw" ? `${f.dst} (raw TCP)` : `${f.dst} ${f.kind}:${f.name}`;
}

/** `router demo` */
export async function runDemoCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { help: { type: "boolean", short: "h" }, keep: { type: "boolean" } },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (Deno.uid() !== 0) {
    console.error("router demo: needs root (it creates network namespaces and nftables rules)");
    return 1;
  }
  const lab = await Lab.create();
  const a = lab.addrs;
  const tmp = await Deno.makeTempDir({ prefix: "router-demo-" });
  const socket = `${tmp}/router.sock`;
  const printed = new Set<string>();
  try {
    console.log(bold("1. Lab"));
    console.log(`   client ${lab.ns.client} ${a.client4} ${a.client6}`);
    console.log(`   router ${lab.ns.router} (nft table inet vpn_router, TPROXY -> :7893)`);
    console.log(
      `   server ${lab.ns.server} ${a.server4} ${a.server6} +${a.extra4.length} addresses`,
    );
    await lab.applyTproxy();
    for (const addr of [a.server4, a.extra4[0]!, a.extra4[1]!, a.server6]) {
      for (const port of [80, 443, 5201]) await lab.tcpServer("server", addr, port, "echo");
    }
    const udpEcho = lab.spawn("server", [
      "python3",
      peerPath("udp_echo.py"),
      "--listen",
      [a.server4, a.extra4[1]!].map((h) => `${h}:5353`).concat(`[${a.server6}]:5353`).join(","),
      "--seconds",
      "300",
    ]);
    await udpEcho.waitForLine(/^ready$/, 10_000);
    // A resolver that answers every name with extra4[0] (for route.dns_reverse_mapping).
    await lab.dnsServer(`${a.server4}:53`, a.extra4[0]!, { seconds: 300 });
    lab.spawn("router", ["microsocks", "-i", "127.0.0.1", "-p", "1080"]);

    const config = {
      log: { level: "debug" },
      inbounds: [{ type: "tproxy", tag: "tproxy-in", listen: "::", listen_port: 7893 }],
      outbounds: [
        { type: "direct", tag: "direct" },
        { type: "direct", tag: "wg-us", kind: "wireguard", routing_mark: 200 },
        {
          type: "socks",
          tag: "xray-jp",
          kind: "xray",
          server: "127.0.0.1",
          server_port: 1080,
          pool: { size: 4 },
        },
        { type: "block", tag: "block" },
      ],
      route: {
        rules: [
          { domain_suffix: ["video.example"], outbound: "xray-jp" },
          { network: "udp", domain_suffix: ["example.org"], outbound: "wg-us" },
          { domain_keyword: ["ads"], outbound: "block" },
          { ip_cidr: [`${a.extra4[1]}/32`], outbound: "block" },
          { port: [5201], outbound: "wg-us" },
          { domain_suffix: ["ssh.example"], outbound: "xray-jp" },
        ],
        final: "direct",
        default_mark: 255,
        dns_reverse_mapping: true,
      },
      ipc: { path: socket },
    };
    const configPath = `${tmp}/router.json`;
    await Deno.writeTextFile(configPath, JSON.stringify(config, null, 2));
    console.log(bold("\n2. Router config rules"));
    config.route.rules.forEach((r, i) => console.log(`   #${i} ${JSON.stringify(r)}`));
    console.log(`   final: ${config.route.final}`);
    console.log("   dns_reverse_mapping: on (names from the DNS answers the router relays)");

    // With the production flags (`core/v8_flags.ts`), as `dist/router` runs.
    const router = lab.spawn("router", [
      Deno.execPath(),
      "run",
      "-A",
      `--v8-flags=${ROUTER_V8_FLAGS}`,
      `${here}../main.ts`,
      "run",
      "--config",
      configPath,
    ]);
    await waitFor(router, / started /, 20_000);

    const report = (flows: DemoFlow[], results: DemoResult[]) => {
      const logs = flowLogs(router.stderr);
      flows.forEach((f, i) => {
        const r = results[i];
        const key = f.dst;
        const list = logs.get(key) ?? [];
        const seen = [...printed].filter((p) => p.startsWith(`${key}#`)).length;
        const l = list[seen];
        printed.add(`${key}#${seen}`);
        const decision = formatDecision(l);
        console.log(
          `   ${describe(f).padEnd(44)} => ${decision.padEnd(48)} client: ${r?.outcome ?? "?"}`,
        );
      });
    };

    console.log(
      bold("\n3. Sample flows from the client (sniffed name => outbound, what the client saw)"),
    );
    const flows: DemoFlow[] = [
      { dst: `${a.server4}:80`, kind: "http", name: "www.example.com" },
      { dst: `${a.server4}:443`, kind: "tls", name: "cdn.video.example" },
      { dst: `${a.extra4[0]}:443`, kind: "tls", name: "ads.tracker.example" },
      { dst: `${a.extra4[0]}:5201`, kind: "raw" },
      { dst: `${a.extra4[1]}:80`, kind: "http", name: "blocked-by-ip.example" },
      { dst: `[${a.server6}]:443`, kind: "tls", name: "v6.video.example" },
      { dst: `[${a.server6}]:80`, kind: "http", name: "www.example.org" },
    ];
    report(flows, await runFlows(lab, flows));

    console.log(
      bold(
        "\n   UDP sessions (each destination decided on its own; QUIC sniffed from real Initials)",
      ),
    );
    const udpFlows = [
      { dst: `${a.server4}:5353`, what: "UDP datagram", argv: ["udp_refused.py", "--connect"] },
      { dst: `[${a.server6}]:5353`, what: "UDP datagram", argv: ["udp_refused.py", "--connect"] },
      { dst: `${a.extra4[1]}:5353`, what: "UDP datagram", argv: ["udp_refused.py", "--connect"] },
      {
        dst: `${a.server4}:443`,
        what: "QUIC (chromium Initials)",
        argv: ["udp_quic_replay.py", "--target"],
      },
    ];
    for (const u of udpFlows) {
      const argv = ["python3", peerPath(u.argv[0]!), u.argv[1]!, u.dst, "--timeout", "1"];
      if (u.argv[0] === "udp_quic_replay.py") {
        argv.push(
          "--fixture",
          new URL("../tests/fixtures/quic/chromium.hex", import.meta.url).pathname,
        );
      }
      const r = await lab.run("client", argv);
      const out = JSON.parse(r.stdout.trim().split("\n").pop() || "{}") as {
        result?: "data" | "refused" | "timeout";
        icmp?: { from: string } | null;
        sent?: number;
        error?: string;
      };
      await new Promise((res) => setTimeout(res, 200)); // let the log line land
      const l = (flowLogs(router.stderr).get(u.dst) ?? []).at(-1);
      const decision = formatDecision(l);
      const seen = out.sent !== undefined ? `sent ${out.sent} datagrams` : out.result === "data"
        // The client's socket is connected: the kernel only delivers datagrams from u.dst.
        ? `reply from ${u.dst}`
        : out.result === "refused"
        ? `refused: ICMP port unreachable from ${out.icmp?.from ?? "?"}`
        : `no reply (${out.error ?? out.result ?? "?"})`;
      console.log(
        `   ${`${u.dst} ${u.what}`.padEnd(44)} => ${decision.padEnd(48)} client: ${seen}`,
      );
    }

    console.log(
      bold("\n   A name from DNS: raw TCP carries none, until the client looks the address up"),
    );
    const raw: DemoFlow[] = [{ dst: `${a.extra4[0]}:80`, kind: "raw" }];
    report(raw, await runFlows(lab, raw));
    const answer = await lab.dnsQuery(`${a.server4}:53`, "git.ssh.example");
    await new Promise((res) => setTimeout(res, 200)); // let the log line land
    const dnsLog = (flowLogs(router.stderr).get(`${a.server4}:53`) ?? []).at(-1);
    console.log(
      `   ${`${a.server4}:53 DNS query git.ssh.example`.padEnd(44)} => ${
        formatDecision(dnsLog).padEnd(48)
      } client: answer ${answer.answers?.join(", ") ?? "none"}`,
    );
    report(raw, await runFlows(lab, raw));

    console.log(bold("\n4. Hot reload over IPC: send www.example.com to block"));
    const client = await IpcClient.connect(socket);
    try {
      const next = structuredClone(config);
      next.route.rules.unshift({ domain_suffix: ["www.example.com"], outbound: "block" });
      // The file edited in place, as a management API does: only the new rule is compiled.
      await Deno.writeTextFile(configPath, JSON.stringify(next, null, 2));
      const rr = await client.reload({ path: configPath });
      console.log(
        `   reload: ${rr.rules} rules (${rr.rules_compiled} compiled, the others reused), ${rr.outbounds} outbounds, took ${rr.took_ms} ms`,
      );
      const bad = await client.reload({
        config: { ...next, route: { ...next.route, rules: [{ ip_cidr: ["10.0.0.0/33"] }] } },
      }).then(() => "accepted?!", (e: Error) => e.message);
      console.log(`   invalid reload refused, old rules kept: ${bad.split("\n")[0]}`);
      const again: DemoFlow[] = [flows[0]!, flows[6]!];
      report(again, await runFlows(lab, again));

      console.log(bold("\n5. Router status (IPC)"));
      const st = await client.status();
      const stats = await client.stats({ rules: true, limit: 3 });
      const rss = st.memory ? `, RSS ${(st.memory.rss / 2 ** 20).toFixed(1)} MiB` : "";
      console.log(`   rules ${st.rules}, final ${st.final}, flows total ${st.flows.total}${rss}`);
      for (const o of st.outbounds) {
        const s = stats.outbounds[o.tag];
        console.log(
          `   ${o.tag.padEnd(8)} ${(o.kind ?? o.type).padEnd(10)} ${o.state.padEnd(7)} flows ${
            s?.flows_total ?? 0
          } up ${s?.bytes_up ?? 0} B down ${s?.bytes_down ?? 0} B errors ${s?.errors ?? 0}`,
        );
      }
      // Hit counters (they survived the reload for the rules it left unchanged).
      const hits = (stats.rules ?? []).map((r) =>
        `${r.rule === null ? "final" : `#${r.rule}`} ${r.hits}`
      );
      console.log(`   most hit rules: ${hits.join(", ")} (router status --rules N)`);
    } finally {
      await client.close();
    }
    if (values.keep) {
      console.log(`\nLab is up (router log level debug, IPC ${socket}). Press Enter to tear down.`);
      await Deno.stdin.read(new Uint8Array(1));
    }
    await router.kill();
    console.log(bold("\n6. Teardown: namespaces and nft rules removed."));
    return 0;
  } finally {
    await lab.destroy();
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}
