/**
 * A TCP client for netns tests: connects, sends N bytes of seeded random
 * data, half-closes, reads until EOF, prints one JSON line:
 * `{"ok":true,"local":"..","remote":"..","sent":N,"sentSha256":"..",
 *   "received":M,"receivedSha256":"..","text":"first 4 KiB as UTF-8"}`
 * or `{"ok":false,"error":"..."}`.
 *
 * `deno run -A tcp_client.ts --connect ADDR:PORT [--bytes N] [--seed S] [--timeout-ms T]`
 *
 * Bounded: at most 64 MiB sent, 64 MiB kept, --timeout-ms overall (10 s).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { hostPort, intFlag, seededBytes, sha256Hex } from "./_util.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    connect: { type: "string" },
    bytes: { type: "string" },
    seed: { type: "string" },
    "timeout-ms": { type: "string" },
  },
});
const target = hostPort("connect", values.connect);
const size = intFlag("bytes", values.bytes, 0, 64 << 20);
const seed = intFlag("seed", values.seed, 1, 0xffffffff);
const timeoutMs = intFlag("timeout-ms", values["timeout-ms"], 10_000, 600_000);
const fmt = (a: Deno.NetAddr) =>
  a.hostname.includes(":") ? `[${a.hostname}]:${a.port}` : `${a.hostname}:${a.port}`;

async function main(): Promise<Record<string, unknown>> {
  const conn = await Deno.connect({ ...target, transport: "tcp" });
  try {
    const data = seededBytes(seed, size);
    const writing = (async () => {
      let off = 0;
      while (off < data.length) off += await conn.write(data.subarray(off));
      await conn.closeWrite();
    })();
    const chunks: Uint8Array[] = [];
    let received = 0;
    const buf = new Uint8Array(64 * 1024);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      if (received + n <= 64 << 20) chunks.push(buf.slice(0, n));
      received += n;
    }
    await writing;
    const head = chunks.length > 0 ? chunks[0]!.subarray(0, 4096) : new Uint8Array();
    return {
      ok: true,
      local: fmt(conn.localAddr),
      remote: fmt(conn.remoteAddr),
      sent: size,
      sentSha256: await sha256Hex([data]),
      received,
      receivedSha256: await sha256Hex(chunks),
      text: new TextDecoder().decode(head),
    };
  } finally {
    conn.close();
  }
}

const timer = setTimeout(() => {
  console.log(JSON.stringify({ ok: false, error: `timeout after ${timeoutMs} ms` }));
  Deno.exit(1);
}, timeoutMs);
try {
  console.log(JSON.stringify(await main()));
  clearTimeout(timer);
} catch (e) {
  clearTimeout(timer);
  console.log(JSON.stringify({ ok: false, error: String(e) }));
  Deno.exit(1);
}
