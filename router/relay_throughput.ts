/**
 * Throughput check of {@linkcode relay}: iperf3 client → TcpListener
 * (tproxy mode, 127.0.0.1) → relay → DirectOutbound → iperf3 server, all on
 * loopback. Prints Gbit/s and the relay process's CPU seconds.
 *
 * ```
 * deno run -A router/relay_throughput.ts [--bytes 2G] [--mode splice|copy] [--reverse]
 * ```
 *
 * Needs `iperf3`. Not a test: numbers depend on the machine.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { TcpListener } from "../inbound/tproxy_tcp.ts";
import { DirectOutbound } from "../outbound/direct.ts";
import { relay } from "./relay.ts";

function cpuSeconds(): number {
  const stat = Deno.readTextFileSync("/proc/self/stat");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, in clock ticks
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      bytes: { type: "string", default: "2G" },
      mode: { type: "string", default: "splice" },
      reverse: { type: "boolean", default: false },
    },
  });
  if (values.mode !== "splice" && values.mode !== "copy") {
    throw new RangeError(`--mode: "${values.mode}": expected splice or copy`);
  }
  const mode = values.mode;
  const serverPort = 15201 + Math.floor(Math.random() * 1000);
  const server = new Deno.Command("iperf3", {
    args: ["-s", "-1", "-B", "127.0.0.1", "-p", String(serverPort)],
    stdout: "null",
    stderr: "null",
  }).spawn();
  await new Promise((r) => setTimeout(r, 300));
  const listener = TcpListener.open({ mode: "tproxy", listen: "127.0.0.1", port: 0 });
  const out = new DirectOutbound({ tag: "direct", connect_timeout_ms: 5000 });
  const upstream = { addr: new Uint8Array([127, 0, 0, 1]), port: serverPort };
  let relayed = 0;
  const flows: Promise<void>[] = [];
  (async () => {
    for await (const c of listener) {
      flows.push((async () => {
        const b = await out.dialTcp(upstream);
        const r = await relay(c.stream, b, { idleTimeoutMs: 60_000, mode });
        relayed += r.up + r.down;
      })());
    }
  })();
  const cpu0 = cpuSeconds();
  const client = new Deno.Command("iperf3", {
    args: [
      "-c",
      "127.0.0.1",
      "-p",
      String(listener.addresses[0]!.port),
      "-n",
      values.bytes,
      "-J",
      ...(values.reverse ? ["-R"] : []),
    ],
    stdout: "piped",
  }).spawn();
  const res = JSON.parse(new TextDecoder().decode((await client.output()).stdout));
  await server.status;
  await Promise.all(flows);
  const cpu = cpuSeconds() - cpu0;
  const recv = res.end.sum_received;
  console.log(JSON.stringify({
    mode,
    reverse: values.reverse,
    bytes: recv.bytes,
    seconds: Number(recv.seconds.toFixed(3)),
    gbit_per_s: Number((recv.bits_per_second / 1e9).toFixed(2)),
    relay_cpu_s: Number(cpu.toFixed(2)),
    relayed,
  }));
  await listener.close();
}
