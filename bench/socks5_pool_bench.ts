/**
 * What the pre-warmed SOCKS5 pool saves: latency of `dialTcp` (TCP connect
 * + greeting + CONNECT + reply) against `microsocks` on loopback, without
 * and with a pool of 16, plus the time until one byte written through the
 * stream comes back from an echo server (client speaks first, as in TLS).
 *
 *   deno run --allow-all bench/socks5_pool_bench.ts [--iterations N] [--gap-ms MS]
 *
 * Bounded: N dials per mode (default 2000, max 100000) and at most 60 s per mode.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { parseIp } from "../core/ip.ts";
import { createSocks5Outbound, type Socks5OutboundConfig } from "../outbound/socks5.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    iterations: { type: "string", default: "2000" },
    "gap-ms": { type: "string", default: "0" },
  },
});
const iterations = Math.min(100_000, Math.max(10, Number(values.iterations) || 2000));
const gapMs = Math.min(1000, Math.max(0, Number(values["gap-ms"]) || 0));
const MAX_MS_PER_MODE = 60_000;

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

function summary(name: string, xs: number[]): string {
  const s = [...xs].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / s.length;
  const f = (v: number) => `${(v * 1000).toFixed(0)}µs`;
  return `${name.padEnd(28)} n=${s.length} mean=${f(mean)} p50=${f(pct(s, 0.5))} p90=${
    f(pct(s, 0.9))
  } p99=${f(pct(s, 0.99))}`;
}

const echo = Deno.listen({ hostname: "127.0.0.1", port: 0 });
const echoPort = (echo.addr as Deno.NetAddr).port;
(async () => {
  for await (const c of echo) {
    (async () => {
      const b = new Uint8Array(64);
      try {
        for (let n = await c.read(b); n !== null; n = await c.read(b)) {
          await c.write(b.subarray(0, n));
        }
      } catch { /* reset */ }
      c.close();
    })();
  }
})().catch(() => {});

const socksPort = freePort();
const ms = new Deno.Command("microsocks", {
  args: ["-i", "127.0.0.1", "-p", String(socksPort)],
  stdout: "null",
  stderr: "null",
}).spawn();

try {
  for (let i = 0; i < 250; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port: socksPort })).close();
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  const dst = { addr: parseIp("127.0.0.1")!, port: echoPort };
  const base: Socks5OutboundConfig = {
    tag: "bench",
    kind: "socks",
    server: "127.0.0.1",
    serverPort: socksPort,
    domainStrategy: "ip",
    connectTimeoutMs: 2000,
  };
  const one = new Uint8Array(1);
  for (const pooled of [false, true]) {
    const ob = createSocks5Outbound(pooled ? { ...base, pool: { size: 16 } } : base);
    if (pooled) {
      for (let i = 0; i < 250 && ob.stats().pool!.idle < 16; i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    const dial: number[] = [], firstByte: number[] = [];
    const start = performance.now();
    for (let i = 0; i < iterations && performance.now() - start < MAX_MS_PER_MODE; i++) {
      const t0 = performance.now();
      const s = await ob.dialTcp(dst, undefined);
      const t1 = performance.now();
      await s.writeAll(one);
      await s.read(one);
      const t2 = performance.now();
      s.close();
      dial.push(t1 - t0);
      firstByte.push(t2 - t0);
      if (gapMs > 0) await new Promise((r) => setTimeout(r, gapMs));
    }
    const mode = pooled ? "pool(16)" : "no pool";
    console.log(summary(`${mode} dialTcp`, dial));
    console.log(summary(`${mode} first echo`, firstByte));
    if (pooled) {
      const st = ob.stats().pool!;
      console.log(`  pool hits=${st.hits} misses=${st.misses} discarded=${st.discarded}`);
    }
    ob.close();
  }
} finally {
  ms.kill("SIGKILL");
  await ms.status;
  echo.close();
}
Deno.exit(0);
