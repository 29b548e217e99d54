/**
 * New-connection rate: `--concurrency` workers each loop connect → send
 * 1 byte → read the echo → close. Prints `{"conns":N,"seconds":S,"per_s":R,"errors":E}`.
 *
 * `deno run -A connrate.ts --connect ADDR:PORT [--seconds S] [--max N] [--concurrency C]`
 * Bounded by --seconds (default 3), --max connections (default 50000).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { hostPort, intFlag } from "../../tests/netns/peers/_util.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    connect: { type: "string" },
    seconds: { type: "string" },
    max: { type: "string" },
    concurrency: { type: "string" },
  },
});
const target = hostPort("connect", values.connect);
const seconds = intFlag("seconds", values.seconds, 3, 600);
const max = intFlag("max", values.max, 50_000, 10_000_000);
const concurrency = intFlag("concurrency", values.concurrency, 8, 1024);
let conns = 0, errors = 0, started = 0;
const t0 = performance.now();
const deadline = t0 + seconds * 1000;
const one = new Uint8Array([1]);

async function worker(): Promise<void> {
  const buf = new Uint8Array(4);
  while (performance.now() < deadline && started < max && errors < 1000) {
    started++;
    try {
      const c = await Deno.connect({ ...target, transport: "tcp" });
      try {
        await c.write(one);
        if ((await c.read(buf)) === null) throw new Error("closed");
        conns++;
      } finally {
        c.close();
      }
    } catch {
      errors++;
    }
  }
}

await Promise.all(Array.from({ length: concurrency }, worker));
const took = (performance.now() - t0) / 1000;
console.log(JSON.stringify({ conns, seconds: took, per_s: conns / took, errors }));
