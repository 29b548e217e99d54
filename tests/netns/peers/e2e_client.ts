/**
 * A many-flow TCP client for the router's end-to-end tests: runs the flows
 * of a JSON spec with bounded concurrency and prints one JSON report line.
 *
 * `deno run -A e2e_client.ts --spec '{"flows":[...],"concurrency":C,"timeoutMs":T}'`
 *
 * Flow modes (`{"target":"ADDR:PORT","mode":..., ...}`):
 * - `echo`: send `bytes` seeded bytes, half-close, read to EOF; verified when
 *   the bytes read back equal the bytes sent (an echo server).
 * - `hash`: like echo but against a `hash` server; verified when its reply
 *   `{"bytes","sha256"}` matches what was sent.
 * - `rr`: request/response without half-close: send `bytes` in `chunk`-sized
 *   requests (64 KiB), reading each echoed back before the next, then close
 *   (for SOCKS servers that close both ways at the first EOF and relay with
 *   blocking writes, like microsocks).
 * - `payload`: send `payloadB64`, half-close unless `halfClose: false`, read
 *   to EOF; verified when the reply equals the payload (echo server).
 * - `banner`: send nothing, read the server's first line, then `rr` with
 *   `bytes`; verified when a banner came and the echo matched.
 * - `paced`: send `chunk` bytes every `intervalMs` until `stopFile` exists or
 *   `maxMs` passed, then half-close and check a `hash` server's reply. Prints
 *   `{"event":"connected","i":N,"local":".."}` once connected.
 *
 * Each result: `{i,target,ok,verified,kind?,error?,local?,sent,received,
 * sentSha256,receivedSha256,text,ms}`; `kind` classifies a failure as
 * `reset`, `refused`, `broken_pipe`, `timeout`, `eof` or `other`.
 * Bounded: at most 1024 flows, 64 MiB a flow, `timeoutMs` a flow (10 s).
 *
 * @module
 */

import { createHash } from "node:crypto";
import { parseArgs } from "node:util";
import { hostPort, seededBytes } from "./_util.ts";

/** One flow of the spec. */
export interface FlowSpec {
  target: string;
  mode: "echo" | "hash" | "rr" | "payload" | "banner" | "paced";
  bytes?: number;
  seed?: number;
  payloadB64?: string;
  halfClose?: boolean;
  chunk?: number;
  intervalMs?: number;
  stopFile?: string;
  maxMs?: number;
}

/** The whole spec. */
export interface ClientSpec {
  flows: FlowSpec[];
  concurrency?: number;
  timeoutMs?: number;
}

/** What one flow did. */
export interface FlowResult {
  i: number;
  target: string;
  ok: boolean;
  verified: boolean;
  kind?: string;
  error?: string;
  local?: string;
  sent: number;
  received: number;
  sentSha256: string;
  receivedSha256: string;
  text: string;
  ms: number;
}

const MAX_FLOWS = 1024;
const MAX_BYTES = 64 << 20;
const TEXT_KEEP = 4096;

class FlowTimeout extends Error {
  override name = "FlowTimeout";
}
class EarlyEof extends Error {
  override name = "EarlyEof";
}

function kindOf(e: unknown): string {
  if (e instanceof FlowTimeout) return "timeout";
  if (e instanceof EarlyEof) return "eof";
  if (e instanceof Deno.errors.ConnectionReset) return "reset";
  if (e instanceof Deno.errors.ConnectionRefused) return "refused";
  if (e instanceof Deno.errors.BrokenPipe) return "broken_pipe";
  if (e instanceof Deno.errors.TimedOut) return "timeout";
  return "other";
}

const fmt = (a: Deno.NetAddr) =>
  a.hostname.includes(":") ? `[${a.hostname}]:${a.port}` : `${a.hostname}:${a.port}`;

function checkSize(name: string, v: number | undefined, dflt: number): number {
  const n = v ?? dflt;
  if (!Number.isInteger(n) || n < 0 || n > MAX_BYTES) {
    throw new RangeError(`${name}: ${v}: expected 0..${MAX_BYTES}`);
  }
  return n;
}

/** A flow's byte accounting: hashes both ways and keeps the first bytes read. */
class Tally {
  readonly up = createHash("sha256");
  readonly down = createHash("sha256");
  sent = 0;
  received = 0;
  head: Uint8Array[] = [];
  headLen = 0;

  onSent(b: Uint8Array): void {
    this.up.update(b);
    this.sent += b.length;
  }

  onReceived(b: Uint8Array): void {
    this.down.update(b);
    this.received += b.length;
    if (this.headLen < TEXT_KEEP) {
      const take = b.subarray(0, TEXT_KEEP - this.headLen);
      this.head.push(take.slice());
      this.headLen += take.length;
    }
  }

  text(): string {
    const all = new Uint8Array(this.headLen);
    let off = 0;
    for (const h of this.head) {
      all.set(h, off);
      off += h.length;
    }
    return new TextDecoder().decode(all);
  }
}

async function writeAll(conn: Deno.TcpConn, data: Uint8Array, t: Tally): Promise<void> {
  let off = 0;
  while (off < data.length) {
    const n = await conn.write(data.subarray(off));
    t.onSent(data.subarray(off, off + n));
    off += n;
  }
}

async function readToEof(conn: Deno.TcpConn, t: Tally): Promise<void> {
  const buf = new Uint8Array(256 * 1024);
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) return;
    t.onReceived(buf.subarray(0, n));
  }
}

async function readExactly(conn: Deno.TcpConn, want: number, t: Tally): Promise<void> {
  const buf = new Uint8Array(256 * 1024);
  while (t.received < want) {
    const n = await conn.read(buf.subarray(0, Math.min(buf.length, want - t.received)));
    if (n === null) throw new EarlyEof(`EOF after ${t.received} of ${want} bytes`);
    t.onReceived(buf.subarray(0, n));
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** The bytes a flow sends, made before connecting so the first bytes go out at once. */
function flowData(i: number, f: FlowSpec): Uint8Array {
  if (f.mode === "payload") {
    return Uint8Array.from(atob(f.payloadB64 ?? ""), (c) => c.charCodeAt(0));
  }
  if (f.mode === "paced") return new Uint8Array();
  return seededBytes(f.seed ?? i + 1, checkSize("bytes", f.bytes, f.mode === "banner" ? 1024 : 0));
}

async function runFlow(
  i: number,
  f: FlowSpec,
  data: Uint8Array,
  conn: Deno.TcpConn,
  t: Tally,
): Promise<boolean> {
  const seed = f.seed ?? i + 1;
  const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
  switch (f.mode) {
    case "echo": {
      await Promise.all([
        writeAll(conn, data, t).then(() => conn.closeWrite()),
        readToEof(conn, t),
      ]);
      return t.received === data.length && t.down.copy().digest("hex") === sha(data);
    }
    case "hash": {
      await writeAll(conn, data, t);
      await conn.closeWrite();
      await readToEof(conn, t);
      const reply = JSON.parse(t.text()) as { bytes: number; sha256: string };
      return reply.bytes === data.length && reply.sha256 === sha(data);
    }
    case "rr": {
      // Lock-step chunks: a relay that writes blocking (microsocks) cannot
      // deadlock on full buffers the way a bulk echo in both directions can.
      const chunk = Math.max(1, checkSize("chunk", f.chunk, 64 * 1024));
      for (let off = 0; off < data.length; off += chunk) {
        const end = Math.min(off + chunk, data.length);
        await writeAll(conn, data.subarray(off, end), t);
        await readExactly(conn, end, t);
      }
      return t.down.copy().digest("hex") === sha(data);
    }
    case "payload": {
      await writeAll(conn, data, t);
      if (f.halfClose !== false) await conn.closeWrite();
      await readToEof(conn, t);
      return t.received === data.length && t.down.copy().digest("hex") === sha(data);
    }
    case "banner": {
      const buf = new Uint8Array(TEXT_KEEP);
      let line = "";
      while (!line.includes("\n")) {
        const n = await conn.read(buf);
        if (n === null) {
          throw new EarlyEof(`EOF before a banner line (got ${JSON.stringify(line)})`);
        }
        line += new TextDecoder().decode(buf.subarray(0, n));
        if (line.length >= TEXT_KEEP) break;
      }
      t.onReceived(new TextEncoder().encode(line));
      const bannerLen = t.received;
      const echoed = new Tally();
      await Promise.all([writeAll(conn, data, t), readExactly(conn, data.length, echoed)]);
      t.received = bannerLen + echoed.received;
      return bannerLen > 0 && echoed.down.digest("hex") === sha(data);
    }
    case "paced": {
      const chunk = checkSize("chunk", f.chunk, 16 * 1024);
      const interval = f.intervalMs ?? 20;
      const until = Date.now() + (f.maxMs ?? 20_000);
      console.log(JSON.stringify({ event: "connected", i, local: fmt(conn.localAddr) }));
      for (let k = 0; Date.now() < until && t.sent + chunk <= MAX_BYTES; k++) {
        if (f.stopFile !== undefined && await exists(f.stopFile)) break;
        await writeAll(conn, seededBytes(seed + k, chunk), t);
        await new Promise((r) => setTimeout(r, interval));
      }
      await conn.closeWrite();
      await readToEof(conn, t);
      const reply = JSON.parse(t.text()) as { bytes: number; sha256: string };
      return reply.bytes === t.sent && reply.sha256 === t.up.copy().digest("hex");
    }
  }
}

async function oneFlow(i: number, f: FlowSpec, timeoutMs: number): Promise<FlowResult> {
  const t0 = performance.now();
  const t = new Tally();
  let conn: Deno.TcpConn | null = null;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      conn?.close();
    } catch { /* already closed */ }
  }, f.mode === "paced" ? (f.maxMs ?? 20_000) + timeoutMs : timeoutMs);
  const res: FlowResult = {
    i,
    target: f.target,
    ok: false,
    verified: false,
    sent: 0,
    received: 0,
    sentSha256: "",
    receivedSha256: "",
    text: "",
    ms: 0,
  };
  try {
    const data = flowData(i, f);
    conn = await Deno.connect({ ...hostPort("target", f.target), transport: "tcp" });
    conn.setNoDelay(true);
    res.local = fmt(conn.localAddr);
    res.verified = await runFlow(i, f, data, conn, t);
    res.ok = true;
  } catch (e) {
    const err = timedOut ? new FlowTimeout(`timeout after ${timeoutMs} ms`) : e;
    res.kind = kindOf(err);
    res.error = String(err);
  } finally {
    clearTimeout(timer);
    try {
      conn?.close();
    } catch { /* already closed */ }
  }
  res.sent = t.sent;
  res.received = t.received;
  res.sentSha256 = t.up.digest("hex");
  res.receivedSha256 = t.down.digest("hex");
  res.text = t.text();
  res.ms = Math.round(performance.now() - t0);
  return res;
}

const { values } = parseArgs({ args: Deno.args, options: { spec: { type: "string" } } });
const spec = JSON.parse(values.spec ?? "null") as ClientSpec | null;
if (!spec || !Array.isArray(spec.flows) || spec.flows.length > MAX_FLOWS) {
  throw new TypeError(`--spec: expected {"flows":[...]} with at most ${MAX_FLOWS} flows`);
}
const concurrency = Math.max(1, Math.min(spec.concurrency ?? 1, MAX_FLOWS));
const timeoutMs = Math.max(100, Math.min(spec.timeoutMs ?? 10_000, 120_000));
const results: FlowResult[] = new Array(spec.flows.length);
let next = 0;
await Promise.all(
  Array.from({ length: concurrency }, async () => {
    while (next < spec.flows.length) {
      const i = next++;
      results[i] = await oneFlow(i, spec.flows[i]!, timeoutMs);
    }
  }),
);
console.log(JSON.stringify({ done: true, results }));
