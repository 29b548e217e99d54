/**
 * A tiny TCP peer for netns tests and benches.
 *
 * `deno run -A echo_server.ts --listen ADDR:PORT --mode echo|sink|hash|refuse
 *  [--max-conns N] [--max-bytes N]`
 *
 * - echo: writes back everything it reads; half-closes after the client does.
 * - sink: reads until EOF, then writes `{"bytes":N}` and closes.
 * - hash: reads until EOF, then writes `{"bytes":N,"sha256":"..."}` and closes.
 * - refuse: accepts and closes at once.
 *
 * Prints `ready` on stdout once listening. Bounded: per connection at most
 * --max-bytes are hashed (default 64 MiB); at most --max-conns concurrent
 * connections (default 4096), further ones are closed at once.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { hostPort, intFlag, serveBounded, sha256Hex } from "./_util.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    listen: { type: "string" },
    mode: { type: "string", default: "echo" },
    "max-conns": { type: "string" },
    "max-bytes": { type: "string" },
  },
});
const mode = values.mode;
if (!["echo", "sink", "hash", "refuse"].includes(mode)) {
  throw new TypeError(`--mode: "${mode}": expected echo, sink, hash or refuse`);
}
const maxConns = intFlag("max-conns", values["max-conns"], 4096, 1 << 20);
const maxBytes = intFlag("max-bytes", values["max-bytes"], 64 << 20, 1 << 30);
const listener = Deno.listen({ ...hostPort("listen", values.listen), transport: "tcp" });
console.log("ready");

async function serve(conn: Deno.TcpConn): Promise<void> {
  const enc = new TextEncoder();
  if (mode === "refuse") return;
  conn.setNoDelay(true);
  if (mode === "echo") {
    const buf = new Uint8Array(64 * 1024);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      let off = 0;
      while (off < n) off += await conn.write(buf.subarray(off, n));
    }
    await conn.closeWrite();
    return;
  }
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  const buf = new Uint8Array(64 * 1024);
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) break;
    if (mode === "hash" && bytes + n <= maxBytes) chunks.push(buf.slice(0, n));
    bytes += n;
  }
  const reply = mode === "hash"
    ? { bytes, sha256: bytes <= maxBytes ? await sha256Hex(chunks) : null }
    : { bytes };
  const out = enc.encode(JSON.stringify(reply) + "\n");
  let off = 0;
  while (off < out.length) off += await conn.write(out.subarray(off));
}

await serveBounded([listener], maxConns, serve);
