/**
 * Request/response latency: one TCP connection to an echo peer, 1-byte
 * request, wait for the 1-byte response, repeat. Prints one JSON line
 * `{"count":N,"p50_us":..,"p99_us":..,"mean_us":..}`.
 *
 * `deno run -A pingpong.ts --connect ADDR:PORT [--count N] [--seconds S]`
 * Bounded by --count (default 5000, max 1e6) and --seconds (default 5).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { hostPort, intFlag } from "../../tests/netns/peers/_util.ts";
import { percentile } from "./stats.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { connect: { type: "string" }, count: { type: "string" }, seconds: { type: "string" } },
});
const count = intFlag("count", values.count, 5000, 1_000_000);
const seconds = intFlag("seconds", values.seconds, 5, 600);
const conn = await Deno.connect({ ...hostPort("connect", values.connect), transport: "tcp" });
conn.setNoDelay(true);
const req = new Uint8Array([0x2a]);
const buf = new Uint8Array(16);
const samples: number[] = [];
const deadline = performance.now() + seconds * 1000;
for (let i = 0; i < count && performance.now() < deadline; i++) {
  const t0 = performance.now();
  await conn.write(req);
  const n = await conn.read(buf);
  if (n === null) throw new Error("echo peer closed the connection");
  samples.push((performance.now() - t0) * 1000);
}
conn.close();
samples.sort((a, b) => a - b);
const mean = samples.reduce((a, b) => a + b, 0) / Math.max(1, samples.length);
console.log(JSON.stringify({
  count: samples.length,
  p50_us: percentile(samples, 50),
  p99_us: percentile(samples, 99),
  mean_us: mean,
}));
