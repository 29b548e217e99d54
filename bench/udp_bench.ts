/**
 * UDP data-plane benchmark in the netns lab (client ns → router ns → server
 * ns), for the subjects of `netns_bench.ts` (kernel forwarding = the
 * ceiling, v2ray 4.34 dokodemo-door TPROXY, our router):
 *
 * - `iperf3 -u` bulk, 1200-byte datagrams at an offered rate (`--rate`,
 *   default 2G): received Mbit/s and loss.
 * - `iperf3 -u` small datagrams (64 bytes) at `--pps-rate` offered: received
 *   packets per second and loss.
 * - request/response: one client socket, `udp_pingpong.py` style
 *   round trips to a UDP echo (p50/p99 µs).
 *
 * Every run is bounded (`--seconds`, default 5, max 60).
 *
 * `deno run -A bench/udp_bench.ts [--json] [--seconds 5] [--subjects kernel,v2ray,router]`
 *
 * Needs root, iperf3, nft, python3 and v2ray for the v2ray subject. Traffic
 * stays in the namespaces the bench creates; they are removed at the end.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type Lab, peerPath } from "../tests/netns/harness.ts";
import { SUBJECTS } from "./netns_bench.ts";
import { boundedInt, printResults, subjectBenchFlags } from "./lib/cli.ts";
import { eachSubject, startIperfServer, withLab } from "./lib/subjects.ts";

/** One subject's UDP figures (null = failed, see the log). */
export interface UdpBenchResult {
  subject: string;
  skipped?: string;
  bulk_mbps?: number | null;
  bulk_loss_pct?: number | null;
  small_kpps?: number | null;
  small_loss_pct?: number | null;
  rev_bulk_mbps?: number | null;
  rev_bulk_loss_pct?: number | null;
  rev_small_kpps?: number | null;
  rev_small_loss_pct?: number | null;
  rr_p50_us?: number | null;
  rr_p99_us?: number | null;
}

interface IperfUdpEnd {
  end?: {
    sum?: {
      bits_per_second: number;
      lost_percent: number;
      packets: number;
      lost_packets: number;
      seconds: number;
    };
  };
  error?: string;
}

export async function iperfUdp(
  lab: Lab,
  host: string,
  len: number,
  rate: string,
  seconds: number,
  reverse = false,
): Promise<{ mbps: number; lossPct: number; pps: number }> {
  const r = await lab.run("client", [
    "iperf3",
    "-u",
    // -R: the server sends, so the datagrams take the reply path (upstream
    // socket → the transparent socket answering from the original destination).
    ...(reverse ? ["-R"] : []),
    "-c",
    host,
    "-p",
    "5201",
    "-l",
    String(len),
    // Same large socket buffers for every subject: a proxy forwards in
    // bursts (it drains its queue after each scheduling gap); the receiver's
    // default 208 KiB buffer would measure burst tolerance, not forwarding.
    "-w",
    "2M",
    "-b",
    rate,
    "-t",
    String(seconds),
    "-J",
  ]);
  let doc: IperfUdpEnd;
  try {
    doc = JSON.parse(r.stdout) as IperfUdpEnd;
  } catch {
    throw new Error(`iperf3: exit ${r.code}: ${r.stderr.trim().slice(0, 200)}`);
  }
  const s = doc.end?.sum;
  if (!s) throw new Error(`iperf3: ${doc.error ?? r.stderr.trim()}`);
  // `sum` is the server's view in -u mode: received = packets - lost.
  const got = s.packets - s.lost_packets;
  return {
    mbps: (got * len * 8) / s.seconds / 1e6,
    lossPct: s.lost_percent,
    pps: got / s.seconds,
  };
}

async function pingpong(lab: Lab, target: string, seconds: number): Promise<[number, number]> {
  const r = await lab.run("client", [
    "python3",
    peerPath("udp_pingpong.py"),
    "--target",
    target,
    "--count",
    "20000",
    "--seconds",
    String(seconds),
  ]);
  const doc = JSON.parse(r.stdout) as { p50_us: number; p99_us: number };
  return [doc.p50_us, doc.p99_us];
}

/** Runs the UDP bench for the named subjects. */
export async function runUdpBench(
  names: string[],
  seconds: number,
  rates: { bulk: string; small: string },
  log: (s: string) => void = (s) => console.error(s),
): Promise<UdpBenchResult[]> {
  return await withLab("vr-udpbench-", async (lab, dir) => {
    const dst = lab.addrs.extra4[0]!;
    startIperfServer(lab, dst);
    const echo = lab.spawn("server", [
      "python3",
      peerPath("udp_echo.py"),
      "--listen",
      `${dst}:7000`,
      "--seconds",
      "3600",
    ]);
    await echo.waitForLine(/^ready$/);
    await new Promise((r) => setTimeout(r, 300)); // iperf3 -s has no ready line
    return await eachSubject<UdpBenchResult>(
      lab,
      dir,
      SUBJECTS,
      names,
      log,
      async (name) => {
        const res: UdpBenchResult = { subject: name };
        const step = async (what: string, f: () => Promise<void>) => {
          try {
            await f();
          } catch (e) {
            log(`  ${what}: ${(e as Error).message}`);
          }
          // A proxy drains its socket backlog after the sender stops; late
          // datagrams of one run must not reach the next run's fresh iperf3
          // stream socket (it would take them for its "connect" datagram).
          await new Promise((r) => setTimeout(r, 1500));
        };
        await step("bulk", async () => {
          const b = await iperfUdp(lab, dst, 1200, rates.bulk, seconds);
          res.bulk_mbps = Math.round(b.mbps);
          res.bulk_loss_pct = Math.round(b.lossPct * 10) / 10;
        });
        await step("small", async () => {
          const b = await iperfUdp(lab, dst, 64, rates.small, seconds);
          res.small_kpps = Math.round(b.pps / 100) / 10;
          res.small_loss_pct = Math.round(b.lossPct * 10) / 10;
        });
        await step("reverse bulk", async () => {
          const b = await iperfUdp(lab, dst, 1200, rates.bulk, seconds, true);
          res.rev_bulk_mbps = Math.round(b.mbps);
          res.rev_bulk_loss_pct = Math.round(b.lossPct * 10) / 10;
        });
        await step("reverse small", async () => {
          const b = await iperfUdp(lab, dst, 64, rates.small, seconds, true);
          res.rev_small_kpps = Math.round(b.pps / 100) / 10;
          res.rev_small_loss_pct = Math.round(b.lossPct * 10) / 10;
        });
        await step("rr", async () => {
          [res.rr_p50_us, res.rr_p99_us] = await pingpong(lab, `${dst}:7000`, seconds);
        });
        log(`  ${JSON.stringify(res)}`);
        return res;
      },
      (name, why) => ({ subject: name, skipped: why }),
    );
  });
}

/** The results as a markdown table. */
export function udpTable(results: readonly UdpBenchResult[]): string {
  const cols: [keyof UdpBenchResult, string][] = [
    ["bulk_mbps", "1200 B Mbit/s"],
    ["bulk_loss_pct", "loss %"],
    ["small_kpps", "64 B kpps"],
    ["small_loss_pct", "loss %"],
    ["rev_bulk_mbps", "reply path 1200 B Mbit/s"],
    ["rev_bulk_loss_pct", "loss %"],
    ["rev_small_kpps", "reply path 64 B kpps"],
    ["rev_small_loss_pct", "loss %"],
    ["rr_p50_us", "RR p50 µs"],
    ["rr_p99_us", "RR p99 µs"],
  ];
  const head = `| subject | ${cols.map((c) => c[1]).join(" | ")} |`;
  const sep = `|---|${cols.map(() => "---:").join("|")}|`;
  const rows = results.map((r) =>
    `| ${r.subject} | ${
      cols.map(([k]) => (r.skipped ? "skipped" : r[k] === undefined || r[k] === null ? "–" : r[k]))
        .join(" | ")
    } |`
  );
  return [head, sep, ...rows].join("\n");
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      ...subjectBenchFlags(SUBJECTS.map((s) => s.name)),
      rate: { type: "string", default: "2G" },
      "pps-rate": { type: "string", default: "200M" },
    },
  });
  const seconds = boundedInt("seconds", values.seconds, 1, 60);
  if (seconds === null) return 2;
  for (const [k, v] of [["rate", values.rate], ["pps-rate", values["pps-rate"]]]) {
    if (!/^\d{1,6}[KMG]?$/.test(v!)) {
      console.error(`--${k}: "${v}": expected an iperf3 rate such as 500M or 2G`);
      return 2;
    }
  }
  const results = await runUdpBench(values.subjects.split(","), seconds, {
    bulk: values.rate,
    small: values["pps-rate"],
  });
  printResults(values.json, { seconds, results }, results, udpTable);
  return 0;
}

if (import.meta.main) Deno.exit(await main());
