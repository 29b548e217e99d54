/**
 * Rule-engine numbers that `deno bench` cannot give: parse + compile time of
 * the large synthetic set and of a 10,000-rule set, JS heap of the compiled
 * large set, and the per-flow decision time distribution (p50 / p99).
 *
 *   deno run --allow-all --v8-flags=--expose-gc bench/reload_bench.ts
 *
 * (`deno bench bench/` loads this file too but it only runs when executed directly.)
 *
 * Then the same two sets through `CompileWorker.load()` (read + parse +
 * compile on the config worker, the engine wrapped on this thread) from a
 * file, with the longest event-loop lag seen meanwhile (a 1 ms timer).
 *
 * Per-flow times: each decision is timed on its own with
 * `performance.now()`; the timer's own cost (measured on an empty call) is
 * subtracted. Flows are drawn two ways: uniformly over all 100k domain rules
 * (worst case for CPU caches) and Zipf-distributed (s = 1, like real traffic
 * where a few names dominate).
 */

import process from "node:process";
import { join } from "node:path";
import { CompileWorker } from "../config/compile_client.ts";
import { parseConfig } from "../config/parse_config.ts";
import { writeCountryMmdb } from "../tests/reference/mmdb_writer.ts";
import type { FlowMeta } from "../core/types.ts";
import { Engine, ruleTableOf } from "../rules/engine.ts";
import type { GeoIpLookup } from "../rules/item_geoip.ts";
import { benchGeoIp } from "./bench_geoip.ts";
import { generateConfig, generateFlows } from "./gen_rules.ts";

const gc = (globalThis as { gc?: () => void }).gc;

/** Process CPU time in ms (all threads, so GC helper threads count too). */
function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

function compile(
  text: string,
  geoip: GeoIpLookup,
): { engine: Engine; parseMs: number; compileMs: number; cpu: number } {
  const c0 = cpuMs();
  const t0 = performance.now();
  const config = parseConfig(JSON.parse(text), { baseDir: Deno.cwd() });
  const t1 = performance.now();
  const engine = new Engine({ rules: config.route.rules, final: config.route.final, geoip });
  const t2 = performance.now();
  return { engine, parseMs: t1 - t0, compileMs: t2 - t1, cpu: cpuMs() - c0 };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

function timeCompile(label: string, text: string, geoip: GeoIpLookup, runs: number): Engine {
  const parse: number[] = [], comp: number[] = [], total: number[] = [], cpu: number[] = [];
  let engine: Engine | undefined;
  for (let i = 0; i < runs; i++) {
    const r = compile(text, geoip);
    engine = r.engine;
    parse.push(r.parseMs);
    comp.push(r.compileMs);
    total.push(r.parseMs + r.compileMs);
    cpu.push(r.cpu);
  }
  console.log(
    `${label}: JSON.parse+parseConfig ${median(parse).toFixed(1)} ms, compile ${
      median(comp).toFixed(1)
    } ms, total ${median(total).toFixed(1)} ms wall / ${
      median(cpu).toFixed(1)
    } ms CPU (median of ${runs}; best ${Math.min(...total).toFixed(1)} ms; first ${
      total[0]!.toFixed(1)
    } ms)`,
  );
  return engine!;
}

function percentiles(engine: Engine, flows: FlowMeta[], label: string): void {
  for (let w = 0; w < 3; w++) for (const f of flows) engine.match(f); // warm up
  const overhead: number[] = [];
  for (let i = 0; i < 20_000; i++) {
    const t = performance.now();
    overhead.push(performance.now() - t);
  }
  const timerNs = median(overhead) * 1e6;
  const ns = new Float64Array(flows.length);
  for (let i = 0; i < flows.length; i++) {
    const t = performance.now();
    engine.match(flows[i]!);
    ns[i] = (performance.now() - t) * 1e6 - timerNs;
  }
  ns.sort();
  const q = (p: number) => Math.max(0, ns[Math.floor(p * (ns.length - 1))]!).toFixed(0);
  const t = performance.now();
  for (const f of flows) engine.match(f);
  const mean = (performance.now() - t) * 1e6 / flows.length;
  console.log(
    `${label}: p50 ${q(0.5)} ns, p90 ${q(0.9)} ns, p99 ${q(0.99)} ns, mean (bulk loop) ${
      mean.toFixed(0)
    } ns  [timer cost ${timerNs.toFixed(0)} ns subtracted]`,
  );
}

function zipf(flows: FlowMeta[], n: number, seed = 7): FlowMeta[] {
  // Zipf(s=1) over `flows`: rank r drawn with probability ~ 1/r.
  let a = seed;
  const rnd = () => ((a = (a * 1103515245 + 12345) & 0x7fffffff) / 0x80000000);
  const h = Math.log(flows.length) + 0.5772;
  const out: FlowMeta[] = [];
  for (let i = 0; i < n; i++) {
    const r = Math.min(flows.length - 1, Math.floor(Math.exp(rnd() * h)) - 1);
    out.push(flows[Math.max(0, r)]!);
  }
  return out;
}

/** Loads `file` through a config worker `runs` times; prints wall times and event-loop lag. */
async function timeWorker(label: string, file: string, runs: number): Promise<void> {
  const worker = new CompileWorker();
  try {
    await worker.load(file); // warm-up: worker start, JIT
    const wall: number[] = [];
    let maxLag = 0, last = performance.now();
    const probe = setInterval(() => {
      const now = performance.now();
      maxLag = Math.max(maxLag, now - last);
      last = now;
    }, 1);
    for (let i = 0; i < runs; i++) {
      await new Promise((r) => setTimeout(r, 50));
      const t0 = performance.now();
      await worker.load(file);
      wall.push(performance.now() - t0);
    }
    clearInterval(probe);
    console.log(
      `${label} via CompileWorker: median ${median(wall).toFixed(1)} ms wall (best ${
        Math.min(...wall).toFixed(1)
      }); max event-loop lag ${maxLag.toFixed(1)} ms (1 ms timer)`,
    );
  } finally {
    worker.close();
  }
}

/** Runs every measurement and prints the numbers. */
async function main(): Promise<void> {
  const { geoip, source } = await benchGeoIp();
  console.log(`GeoIP database: ${source}`);

  const big = generateConfig();
  const bigText = JSON.stringify(big.config);
  console.log(
    `large set: ${(big.config.route as { rules: unknown[] }).rules.length} rules, ${
      (bigText.length / 1e6).toFixed(1)
    } MB of JSON`,
  );
  let engine = timeCompile("large set", bigText, geoip, 5);
  // Memory: one fresh build, measured after full GCs (so earlier runs' garbage is gone).
  engine = undefined as unknown as Engine;
  gc?.();
  gc?.();
  const heapBefore = Deno.memoryUsage();
  engine = compile(bigText, geoip).engine;
  gc?.();
  gc?.();
  const heapAfter = Deno.memoryUsage();
  console.log(
    `large set memory: +${
      ((heapAfter.heapUsed - heapBefore.heapUsed) / 2 ** 20).toFixed(1)
    } MiB JS heap, +${
      ((heapAfter.external - heapBefore.external) / 2 ** 20).toFixed(1)
    } MiB external (typed arrays), RSS ${(heapAfter.rss / 2 ** 20).toFixed(0)} MiB; layout ${
      JSON.stringify(engine.layout)
    }${gc ? "" : "  [run with --v8-flags=--expose-gc for exact numbers]"}`,
  );

  const small = generateConfig({ domainRules: 9_000, cidrs: 8_000, portAndLogical: 100, seed: 9 });
  const smallText = JSON.stringify(small.config);
  console.log(`10k set: ${(small.config.route as { rules: unknown[] }).rules.length} rules`);
  timeCompile("10k set", smallText, geoip, 10);

  const dir = await Deno.makeTempDir({ prefix: "reload-bench-" });
  try {
    await Deno.writeFile(join(dir, "country.mmdb"), writeCountryMmdb({ "1.2.0.0/16": "CN" }));
    await Deno.writeTextFile(join(dir, "large.json"), bigText);
    await Deno.writeTextFile(join(dir, "10k.json"), smallText);
    await timeWorker("large set", join(dir, "large.json"), 5);
    await timeWorker("10k set", join(dir, "10k.json"), 10);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }

  const flows = generateFlows(big, 200_000);
  percentiles(engine, flows, "per flow, uniform mix (40% known domain, 30% unknown, 30% IP only)");
  percentiles(engine, zipf(flows, 200_000), "per flow, Zipf mix (same flows, popular ones repeat)");
  percentiles(
    engine,
    flows.filter((f) => f.domain === undefined),
    "per flow, IP only (CIDR / GeoIP / final)",
  );
  // A reload that edited one rule gets a patched engine (config/rule_patch.ts): the new
  // rule in a small index looked up after the others. Worst case: the first rule edited,
  // so every flow that no earlier rule decides looks there too.
  const config = parseConfig(JSON.parse(bigText), { baseDir: Deno.cwd() });
  const rules = config.route.rules, final = config.route.final;
  const edited = parseConfig({
    ...big.config,
    route: {
      ...(big.config.route as Record<string, unknown>),
      rules: [
        { domain: ["edited.example"], outbound: rules[0]!.outbound },
        ...(big.config.route as { rules: unknown[] }).rules.slice(1),
      ],
    },
  }, { baseDir: Deno.cwd() }).route.rules;
  const patched = Engine.patch(
    Engine.compileWire({ rules, final }),
    [{ prefix: 0, removed: 1, added: 1 }],
    Engine.compileWire({ rules: edited.slice(0, 1), final }),
    ruleTableOf(edited),
    final,
    geoip,
  );
  percentiles(patched, flows, "patched engine (first rule edited), uniform mix");
}

// `deno bench bench/` also loads this file; only run when executed directly.
if (import.meta.main) await main();
