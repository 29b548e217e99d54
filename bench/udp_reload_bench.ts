/**
 * Does a reload cost UDP datagrams? The netns lab of `udp_bench.ts` (client
 * ns → router ns with our TPROXY table → server ns), our router running a
 * rule set from `gen_rules.ts` (every outbound made `direct`, so nothing
 * dials anywhere), and `iperf3 -u` both ways (forward, and `-R`: the reply
 * path), each run once quiet and once while another connection reloads the
 * router over IPC every `--every` ms, alternating two files whose rules are
 * in opposite orders (each reload compiles every rule: the worst case).
 *
 *   deno run -A bench/udp_reload_bench.ts [--set large|10k] [--seconds 8] [--rate 1G]
 *     [--every 700] [--json]
 *
 * Needs root and iperf3. Traffic stays in the namespaces the bench creates.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { IpcClient } from "../ipc/client.ts";
import { writeCountryMmdb } from "../tests/reference/mmdb_writer.ts";
import { boundedInt } from "./lib/cli.ts";
import {
  SKIP_MARK,
  startIperfServer,
  startTproxyProxy,
  TPROXY_PORT,
  withLab,
} from "./lib/subjects.ts";
import { generateConfig, type GenOptions } from "./gen_rules.ts";
import { ROUTER_V8_FLAGS } from "./netns_bench.ts";
import { iperfUdp } from "./udp_bench.ts";

const SETS: Record<string, GenOptions> = {
  "10k": { domainRules: 9_000, cidrs: 8_000, portAndLogical: 100, seed: 9 },
  large: {},
};

/** One iperf3 run's result. */
export interface ReloadRun {
  direction: "forward" | "reply path";
  reloading: boolean;
  reloads: number;
  reload_ms_median: number | null;
  mbps: number;
  loss_pct: number;
}

function configFor(gen: GenOptions, sock: string, reversed: boolean): string {
  const c = generateConfig(gen).config as {
    outbounds: { type: string; tag: string }[];
    route: { rules: unknown[]; final: string };
  };
  c.outbounds = c.outbounds.map((o) => ({ type: "direct", tag: o.tag }));
  if (reversed) c.route.rules.reverse();
  return JSON.stringify({
    log: { level: "warn" },
    inbounds: [{ type: "tproxy", tag: "tproxy-in", listen: "::", listen_port: TPROXY_PORT }],
    ...c,
    route: { ...c.route, final: "direct", default_mark: SKIP_MARK },
    ipc: { path: sock },
  });
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      set: { type: "string", default: "large" },
      seconds: { type: "string", default: "8" },
      rate: { type: "string", default: "1G" },
      every: { type: "string", default: "700" },
      json: { type: "boolean" },
    },
  });
  const gen = SETS[values.set!];
  if (!gen) {
    console.error(`--set: "${values.set}": expected ${Object.keys(SETS).join(" or ")}`);
    return 2;
  }
  const seconds = boundedInt("seconds", values.seconds, 1, 60);
  const every = boundedInt("every", values.every, 100, 60_000);
  if (seconds === null || every === null) return 2;
  if (!/^\d{1,6}[KMG]?$/.test(values.rate!)) {
    console.error(`--rate: "${values.rate}": expected an iperf3 rate such as 500M or 1G`);
    return 2;
  }
  const runs = await withLab("vr-udpreload-", async (lab, dir) => {
    const sock = join(dir, "router.sock");
    const nets: Record<string, string> = {};
    for (let i = 0; i < 2000; i++) nets[`${1 + (i % 222)}.${(i * 7) % 256}.0.0/16`] = "CN";
    await Deno.writeFile(join(dir, "country.mmdb"), writeCountryMmdb(nets));
    const files = [join(dir, "a.json"), join(dir, "r.json")];
    await Deno.writeTextFile(files[0]!, configFor(gen, sock, false));
    await Deno.writeTextFile(files[1]!, configFor(gen, sock, true));
    const dst = lab.addrs.extra4[0]!;
    startIperfServer(lab, dst);
    const flags = Deno.env.get("ROUTER_V8_FLAGS") ?? ROUTER_V8_FLAGS;
    const main = new URL("../main.ts", import.meta.url).pathname;
    const started = await startTproxyProxy(lab, {
      configPath: files[0]!,
      config: JSON.parse(await Deno.readTextFile(files[0]!)),
      argv: [
        Deno.execPath(),
        "run",
        "-A",
        ...(flags ? [`--v8-flags=${flags}`] : []),
        main,
        "run",
        "--config",
        files[0]!,
      ],
      spawn: { env: { NO_COLOR: "1" } },
      timeoutMs: 120_000,
      failure: (p) => `router did not start: ${p.stderr.trim().slice(0, 300)}`,
      notes: [],
    });
    if (typeof started === "string") throw new Error(started);
    const ctl = await IpcClient.connect(sock, { timeoutMs: 120_000 });
    const out: ReloadRun[] = [];
    try {
      // Warm-up: the config worker's first compile.
      await ctl.reload({ path: files[1]! });
      await ctl.reload({ path: files[0]! });
      for (const reverse of [false, true]) {
        for (const reloading of [false, true]) {
          let stop = false;
          const took: number[] = [];
          const loop = (async () => {
            if (!reloading) return;
            for (let i = 1; !stop; i++) {
              await new Promise((r) => setTimeout(r, every));
              if (stop) break;
              took.push((await ctl.reload({ path: files[i % 2]! })).took_ms);
            }
          })();
          let r;
          try {
            r = await iperfUdp(lab, dst, 1200, values.rate!, seconds, reverse);
          } finally {
            stop = true;
            await loop;
          }
          took.sort((x, y) => x - y);
          const run: ReloadRun = {
            direction: reverse ? "reply path" : "forward",
            reloading,
            reloads: took.length,
            reload_ms_median: took.length ? took[Math.floor(took.length / 2)]! : null,
            mbps: Math.round(r.mbps),
            loss_pct: Math.round(r.lossPct * 100) / 100,
          };
          console.error(`  ${JSON.stringify(run)}`);
          out.push(run);
          await new Promise((res) => setTimeout(res, 1500)); // late datagrams drain
        }
      }
    } finally {
      ctl.close();
      await started.stop();
    }
    return out;
  });
  if (values.json) {
    console.log(JSON.stringify({ set: values.set, rate: values.rate, every, seconds, runs }));
  } else {
    console.log(
      `| direction | reloads (every ${every} ms, ${values.set} set) | reload median ms | delivered Mbit/s | loss % |`,
    );
    console.log("|---|---:|---:|---:|---:|");
    for (const r of runs) {
      console.log(
        `| ${r.direction} | ${r.reloading ? r.reloads : "none"} | ${
          r.reload_ms_median ?? "–"
        } | ${r.mbps} | ${r.loss_pct} |`,
      );
    }
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main());
