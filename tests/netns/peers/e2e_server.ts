/**
 * A multi-listener TCP peer for the router's end-to-end tests.
 *
 * `deno run -A e2e_server.ts --listen ADDR:PORT [--listen ADDR:PORT ...]
 *  --mode echo|hash|banner [--banner TEXT] [--max-conns N]`
 *
 * - echo: writes back everything it reads; half-closes after the client does.
 * - hash: reads until EOF, then writes `{"bytes":N,"sha256":"..."}\n` and closes
 *   (SHA-256 computed incrementally, so any size fits in constant memory).
 * - banner: speaks first (`--banner`, default `SSH-2.0-e2e\r\n`), then echoes
 *   like `echo` (a server-speaks-first protocol such as SSH).
 *
 * Prints `ready` on stdout once every listener is bound. Bounded: at most
 * --max-conns concurrent connections (default 4096); further ones are closed.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { parseArgs } from "node:util";
import { hostPort, intFlag, serveBounded } from "./_util.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    listen: { type: "string", multiple: true },
    mode: { type: "string", default: "echo" },
    banner: { type: "string", default: "SSH-2.0-e2e\r\n" },
    "max-conns": { type: "string" },
  },
});
const mode = values.mode;
if (!["echo", "hash", "banner"].includes(mode)) {
  throw new TypeError(`--mode: "${mode}": expected echo, hash or banner`);
}
const listens = values.listen ?? [];
if (listens.length === 0 || listens.length > 64) {
  throw new RangeError(`--listen: ${listens.length} given: expected 1..64`);
}
const maxConns = intFlag("max-conns", values["max-conns"], 4096, 1 << 20);
const enc = new TextEncoder();

async function writeAll(conn: Deno.TcpConn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

async function echo(conn: Deno.TcpConn): Promise<void> {
  const buf = new Uint8Array(256 * 1024);
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) break;
    await writeAll(conn, buf.subarray(0, n));
  }
  await conn.closeWrite();
}

async function hash(conn: Deno.TcpConn): Promise<void> {
  const h = createHash("sha256");
  const buf = new Uint8Array(256 * 1024);
  let bytes = 0;
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) break;
    h.update(buf.subarray(0, n));
    bytes += n;
  }
  await writeAll(conn, enc.encode(JSON.stringify({ bytes, sha256: h.digest("hex") }) + "\n"));
}

async function serve(conn: Deno.TcpConn): Promise<void> {
  conn.setNoDelay(true);
  if (mode === "hash") await hash(conn);
  else {
    if (mode === "banner") await writeAll(conn, enc.encode(values.banner));
    await echo(conn);
  }
}

const listeners = listens.map((l) => Deno.listen({ ...hostPort("listen", l), transport: "tcp" }));
console.log("ready");
await serveBounded(listeners, maxConns, serve);
