/**
 * Reload through IPC against a real router process, and how long the
 * router's event loop (its only JS thread, which also runs the data plane)
 * stalls meanwhile.
 *
 *   deno run -A bench/reload_stall_bench.ts [--repo DIR] [--reloads N] [--sets 10k,large]
 *     [--v8-flags=FLAGS]   (the router's V8 flags; default: the production ones,
 *                           ROUTER_V8_FLAGS of netns_bench.ts; "" for none)
 *     [--detail]           (list every ping over 10 ms and when it was sent)
 *   ROUTER_DENO_FLAGS="--cpu-prof --cpu-prof-dir=DIR" adds `deno run` flags to the router.
 *     [--only TEXT]        (run only the rounds whose description contains TEXT)
 *
 * Starts `deno run -A DIR/main.ts run --config F` (DIR defaults to this
 * repo; `--repo` points at another checkout to compare builds) with a TPROXY
 * inbound on 127.0.0.1 and its IPC socket in a temporary directory. One IPC
 * connection sends `ping` back to back (a 1 ms gap between a reply and the
 * next request); its round-trip time is the event-loop lag of the router:
 * whatever blocks the router's thread delays the reply. Another connection
 * asks for `reload {path}` of the 10k-rule set and the large synthetic set
 * (bench/gen_rules.ts), N times each, three ways: alternating between two
 * files whose rules are in opposite orders (every reload compiles every
 * rule); files that each differ from the first in one rule (the config
 * worker compiles that rule alone and the data-plane thread patches it in:
 * `config/rule_patch.ts`, `Engine.patch`); files that each replace one more
 * rule than the last, at another place (a patch is made against the last
 * file compiled in full, so the stretch grows until a full compile);
 * and alternating between two files
 * with the same rules and an outbound edited (the compiled rules are reused:
 * `config/rule_scan.ts`, `parseConfigSameRules`). It reports the reload's
 * `took_ms` (server side), the client-side wall time, and the ping
 * round trips during the reloads (max, p99, count above 10 ms) next to the
 * same figures while idle.
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { IpcClient } from "../ipc/client.ts";
import { writeCountryMmdb } from "../tests/reference/mmdb_writer.ts";
import { generateConfig, type GenOptions } from "./gen_rules.ts";
import { ROUTER_V8_FLAGS } from "./netns_bench.ts";

const SETS: Record<string, GenOptions> = {
  "10k": { domainRules: 9_000, cidrs: 8_000, portAndLogical: 100, seed: 9 },
  large: {},
};

/**
 * The config of set `gen`. Variant "a"; "r" has the rules of "a" in reverse
 * order (a reload between "a" and "r" compiles every rule); "e<k>" differs
 * from "a" in its first rule (a reload from "a" to it compiles that rule
 * alone: `config/rule_patch.ts`); "c" has the rules of "a" and an outbound
 * edited (a reload between "a" and "c" leaves the rules unchanged); "x<k>"
 * is "x<k-1>" ("a" for k = 0) with one more rule replaced, elsewhere.
 */
function configText(gen: GenOptions, port: number, sock: string, variant: string): string {
  const c = generateConfig(gen).config as {
    outbounds: { type: string; tag: string }[];
    route: { rules: unknown[] };
  };
  // Only local outbounds: nothing dials anywhere.
  c.outbounds = c.outbounds.map((o) =>
    o.type === "block" ? o : {
      type: "direct",
      tag: o.tag,
      inet4_bind_address: "127.0.0.1",
      ...(variant === "c" && o.tag === "direct" ? { connect_timeout: "7s" } : {}),
    }
  );
  const first = variant.startsWith("e") ? `edit-${variant}.example` : "variant-a.example";
  c.route.rules.unshift({ domain: [first], outbound: "direct" });
  if (variant === "r") c.route.rules.reverse();
  if (variant.startsWith("x")) {
    // Edits that add up: x<k> has those of x<k-1> and one more rule replaced, elsewhere.
    for (let j = 0; j <= Number(variant.slice(1)); j++) {
      const at = (j * 7919 + 104729) % c.route.rules.length;
      c.route.rules[at] = { domain: [`moved-${j}.example`], outbound: "direct" };
    }
  }
  return JSON.stringify({
    log: { level: "warn" },
    inbounds: [{ type: "tproxy", tag: "tproxy-in", listen: "127.0.0.1", listen_port: port }],
    ...c,
    ipc: { path: sock },
  });
}

/** The "a" file of set `name`. */
function v0(files: Record<string, Record<string, string>>, name: string): string {
  return files[name]!.a!;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Pings back to back until `stop()`; returns the round trips (ms) with their start times. */
function pinger(client: IpcClient) {
  const samples: { at: number; rtt: number }[] = [];
  let running = true;
  const done = (async () => {
    while (running) {
      const at = performance.now();
      await client.ping({ timeoutMs: 60_000 });
      samples.push({ at, rtt: performance.now() - at });
      await sleep(1);
    }
  })();
  return {
    samples,
    async stop() {
      running = false;
      await done;
    },
  };
}

function lagLine(label: string, rtts: number[]): string {
  return `${label}: ${rtts.length} pings, p50 ${quantile(rtts, 0.5).toFixed(2)} ms, p99 ${
    quantile(rtts, 0.99).toFixed(2)
  } ms, max ${Math.max(...rtts).toFixed(1)} ms, >10 ms: ${rtts.filter((x) => x > 10).length}`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      repo: { type: "string", default: new URL("..", import.meta.url).pathname },
      reloads: { type: "string", default: "5" },
      sets: { type: "string", default: "10k,large" },
      "v8-flags": { type: "string", default: ROUTER_V8_FLAGS },
      detail: { type: "boolean" },
      only: { type: "string" },
    },
  });
  const reloads = Number(values.reloads);
  const dir = await Deno.makeTempDir({ prefix: "reload-stall-" });
  const sock = join(dir, "router.sock");
  const port = freePort();
  const nets: Record<string, string> = {};
  for (let i = 0; i < 2000; i++) nets[`${1 + (i % 222)}.${(i * 7) % 256}.0.0/16`] = "CN";
  await Deno.writeFile(join(dir, "country.mmdb"), writeCountryMmdb(nets));
  const files: Record<string, Record<string, string>> = {};
  for (const name of values.sets.split(",")) {
    files[name] = {};
    const each = (p: string) => Array.from({ length: reloads }, (_, k) => `${p}${k}`);
    for (const v of ["a", "r", "c", ...each("e"), ...each("x")]) {
      const f = files[name]![v] = join(dir, `${name}-${v}.json`);
      await Deno.writeTextFile(f, configText(SETS[name]!, port, sock, v));
    }
  }
  // Start with a small config (the first set), then reload the sets.
  const first = Object.values(files)[0]!.a!;
  const router = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      // As in netns_bench.ts: extra `deno run` flags (a CPU profile: --cpu-prof …).
      ...(Deno.env.get("ROUTER_DENO_FLAGS") ?? "").split(" ").filter((f) => f !== ""),
      ...(values["v8-flags"] ? [`--v8-flags=${values["v8-flags"]}`] : []),
      join(values.repo!, "main.ts"),
      "run",
      "--config",
      first,
    ],
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  try {
    let ctl: IpcClient | undefined;
    for (let i = 0; i < 600 && !ctl; i++) {
      try {
        ctl = await IpcClient.connect(sock, { timeoutMs: 120_000 });
      } catch {
        await sleep(100);
      }
    }
    if (!ctl) throw new Error("router did not open its IPC socket");
    const probe = await IpcClient.connect(sock);
    console.log(
      `router ${values.repo} (pid ${router.pid}, V8 flags "${
        values["v8-flags"]
      }"); ping = event-loop lag probe`,
    );
    const idle = pinger(probe);
    await sleep(1000);
    await idle.stop();
    console.log(lagLine("idle", idle.samples.map((s) => s.rtt)));
    // Per round: the file of reload i (after a warm-up reload of "a"), and the gap between reloads.
    const rounds: [string, string, (i: number) => string, number][] = [];
    for (const [name, v] of Object.entries(files)) {
      rounds.push([
        name,
        "every rule compiled (a and its rules reversed, alternating)",
        (i) => i % 2 ? v.a! : v.r!,
        200,
      ]);
      rounds.push([
        name,
        "one rule edited (a different first rule each time)",
        (i) => v[`e${i}`]!,
        200,
      ]);
      // Edits that add up: the worker compiles the last patched file in full once idle for
      // three times its last full compile (config/compile_worker.ts): 200 ms apart that fits
      // for the 10k set, not for the large one (the stretch against the last full compile
      // grows until it is compiled in full); 1.5 s apart it fits for both.
      for (const gap of [200, 1500]) {
        rounds.push([
          name,
          `one more rule edited each time, elsewhere (edits add up), ${gap} ms apart`,
          (i) => v[`x${i}`]!,
          gap,
        ]);
      }
      rounds.push([
        name,
        "rules unchanged (an outbound edited)",
        (i) => i % 2 ? v.a! : v.c!,
        200,
      ]);
    }
    /** Per round run: whether any ping over the whole round took over 10 ms, and the longest. */
    const summary: { stalled: boolean; max: number }[] = [];
    for (const [name, what, fileOf, gap] of rounds) {
      if (values.only && !what.includes(values.only)) continue;
      // Warm-up (JIT, first allocation of the heap); then the round's files.
      await ctl.reload({ path: v0(files, name) });
      const took: number[] = [], wall: number[] = [], compiled: number[] = [];
      const p = pinger(probe);
      const windows: [number, number][] = [];
      for (let i = 0; i < reloads; i++) {
        await sleep(gap);
        const t0 = performance.now();
        const r = await ctl.reload({ path: fileOf(i) });
        compiled.push(r.rules_compiled ?? NaN);
        const t1 = performance.now();
        windows.push([t0, t1]);
        took.push(r.took_ms);
        wall.push(t1 - t0);
      }
      await sleep(100);
      await p.stop();
      const roundMax = Math.max(...p.samples.map((x) => x.rtt));
      summary.push({ stalled: roundMax > 10, max: roundMax });
      const during = p.samples.filter((s) =>
        windows.some(([a, b]) => s.at + s.rtt >= a && s.at <= b)
      ).map((s) => s.rtt);
      console.log(
        `${name}, ${what}: reload took_ms median ${quantile(took, 0.5).toFixed(1)} (min ${
          Math.min(...took).toFixed(1)
        }, max ${Math.max(...took).toFixed(1)}); client wall median ${
          quantile(wall, 0.5).toFixed(1)
        } ms; ${reloads} reloads, rules compiled per reload: ${[...new Set(compiled)].join(", ")}`,
      );
      console.log(lagLine(`${name}: event-loop lag during reloads`, during));
      const mem = (await ctl.status()).memory;
      if (mem) {
        console.log(
          `${name}: router RSS after the round ${(mem.rss / 2 ** 20).toFixed(1)} MiB (JS heap ${
            (mem.heap_used / 2 ** 20).toFixed(1)
          } MiB)`,
        );
      }
      if (gap > 200) {
        // The worker's compiles between reloads must not stall the data plane either.
        console.log(
          lagLine(`${name}: event-loop lag over the whole round`, p.samples.map((x) => x.rtt)),
        );
      }
      if (values.detail) {
        for (const s of p.samples) {
          if (s.rtt <= 10) continue;
          const k = windows.findIndex(([a, b]) => s.at + s.rtt >= a && s.at <= b);
          // Outside a reload: how long after the last one ended (its tail, a rebase).
          const after = windows.findLastIndex(([, b]) => b <= s.at);
          const where = k >= 0
            ? `reload ${k} +${(s.at - windows[k]![0]).toFixed(0)} ms`
            : after >= 0
            ? `outside reloads, ${(s.at - windows[after]![1]).toFixed(0)} ms after reload ${after}`
            : "before the first reload";
          console.log(`  ping of ${s.rtt.toFixed(1)} ms sent at ${where}`);
        }
      }
    }
    const stalled = summary.filter((x) => x.stalled).length;
    console.log(
      `rounds with a ping over 10 ms (whole round): ${stalled} of ${summary.length}; longest ping ${
        Math.max(...summary.map((x) => x.max)).toFixed(1)
      } ms`,
    );
    probe.close();
    ctl.close();
  } finally {
    try {
      router.kill("SIGTERM");
    } catch { /* already gone */ }
    await router.status;
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) await main();
