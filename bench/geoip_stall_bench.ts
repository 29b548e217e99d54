/**
 * How long a reload that brings the first GeoIP rules into a running
 * router stalls its event loop (the data plane's thread): that reload loads
 * `maxmind` there (`rules/item_geoip.ts`, `loadReader`).
 *
 *   deno run -A bench/geoip_stall_bench.ts [--runs N] [--v8-flags=FLAGS]
 *
 * Per run: starts `deno run -A main.ts run` (this repo, the production V8
 * flags of netns_bench.ts by default) with a config without GeoIP, sends
 * `ping` over one IPC connection back to back (1 ms apart: its round trip is
 * the event-loop lag), reloads a config with a `geoip` rule over another,
 * and prints the longest ping during the reload next to the longest while
 * idle, the reload's `took_ms`, and a route test that the GeoIP rule
 * applies. A fresh router per run: only the first GeoIP reload loads it.
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { IpcClient } from "../ipc/client.ts";
import { writeCountryMmdb } from "../tests/reference/mmdb_writer.ts";
import { ROUTER_V8_FLAGS } from "./netns_bench.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function connect(sock: string): Promise<IpcClient> {
  for (let i = 0; i < 100; i++) {
    try {
      return await IpcClient.connect(sock);
    } catch {
      await sleep(100);
    }
  }
  throw new Error(`no router on ${sock}`);
}

/** Pings back to back until stopped; the longest round trip since the last `take()`. */
function pinger(client: IpcClient) {
  let running = true, max = 0;
  const done = (async () => {
    while (running) {
      const at = performance.now();
      await client.ping();
      max = Math.max(max, performance.now() - at);
      await sleep(1);
    }
  })();
  return {
    take(): number {
      const m = max;
      max = 0;
      return m;
    },
    async stop() {
      running = false;
      await done;
    },
  };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      runs: { type: "string", default: "5" },
      "v8-flags": { type: "string", default: ROUTER_V8_FLAGS },
    },
  });
  const dir = await Deno.makeTempDir({ prefix: "geoip-stall-" });
  const sock = join(dir, "router.sock");
  const nets: Record<string, string> = {};
  for (let i = 0; i < 2000; i++) nets[`${1 + (i % 222)}.${(i * 7) % 256}.0.0/16`] = "CN";
  await Deno.writeFile(join(dir, "country.mmdb"), writeCountryMmdb(nets));
  const base = {
    log: { level: "warn" },
    inbounds: [
      {
        type: "tproxy",
        tag: "in",
        listen: "127.0.0.1",
        listen_port: freePort(),
        udp_max_sessions: 1024,
      },
    ],
    outbounds: [{ type: "direct", tag: "direct" }, { type: "block", tag: "block" }],
    ipc: { path: sock },
  };
  const rule = { domain: ["a.example"], outbound: "block" };
  const without = join(dir, "without.json"), withGeo = join(dir, "with.json");
  await Deno.writeTextFile(
    without,
    JSON.stringify({ ...base, route: { rules: [rule], final: "direct" } }),
  );
  await Deno.writeTextFile(
    withGeo,
    JSON.stringify({
      ...base,
      route: {
        geoip: { path: join(dir, "country.mmdb") },
        rules: [rule, { geoip: ["cn"], outbound: "block" }],
        final: "direct",
      },
    }),
  );
  const root = new URL("..", import.meta.url).pathname;
  const stalls: number[] = [];
  for (let run = 0; run < Number(values.runs); run++) {
    const router = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        ...(values["v8-flags"] ? [`--v8-flags=${values["v8-flags"]}`] : []),
        join(root, "main.ts"),
        "run",
        "--config",
        without,
      ],
      stdout: "null",
      stderr: "inherit",
    }).spawn();
    try {
      const ctl = await connect(sock), probe = await connect(sock);
      await sleep(1500);
      const p = pinger(probe);
      await sleep(300);
      const idle = p.take();
      const r = await ctl.reload({ path: withGeo });
      await sleep(300);
      await p.stop();
      const stall = p.take();
      stalls.push(stall);
      const rt = await ctl.routeTest({ dst: "1.0.0.1:443" });
      console.log(
        `run ${run + 1}: idle max ${idle.toFixed(1)} ms; first GeoIP reload: max ping ${
          stall.toFixed(1)
        } ms, took_ms ${r.took_ms}; route-test 1.0.0.1 (CN) -> ${rt.outbound}`,
      );
      ctl.close();
      probe.close();
    } finally {
      try {
        router.kill("SIGTERM");
      } catch { /* it exited already (its error went to stderr) */ }
      await router.status;
    }
  }
  console.log(
    `longest ping during the first GeoIP reload: ${Math.min(...stalls).toFixed(1)}–${
      Math.max(...stalls).toFixed(1)
    } ms over ${stalls.length} runs`,
  );
  await Deno.remove(dir, { recursive: true });
}
