/**
 * The demo's client, run inside the client namespace: opens each flow given
 * as JSON on argv, sends an HTTP request, a TLS ClientHello or raw bytes,
 * waits for the echo, and prints one JSON result line per flow.
 *
 * @module
 */

/** One flow the demo sends. */
export interface DemoFlow {
  /** `IP:PORT` or `[IPv6]:PORT`. */
  dst: string;
  /** `http` (Host header), `tls` (ClientHello with SNI) or `raw` bytes. */
  kind: "http" | "tls" | "raw";
  /** Host / SNI for http and tls. */
  name?: string;
}

/** What happened to a flow, as the client saw it. */
export interface DemoResult {
  dst: string;
  ok: boolean;
  /** `echoed N bytes`, `reset by peer`, `timed out`, … */
  outcome: string;
}

const enc = new TextEncoder();

/** A minimal TLS 1.3 ClientHello record carrying `sni`. */
export function clientHello(sni: string): Uint8Array {
  const name = enc.encode(sni);
  const u16 = (n: number) => [n >> 8, n & 0xff];
  const serverName = [
    0,
    0,
    ...u16(name.length + 5),
    ...u16(name.length + 3),
    0,
    ...u16(name.length),
    ...name,
  ];
  const versions = [0x00, 0x2b, 0, 3, 2, 0x03, 0x04];
  const exts = [...serverName, ...versions];
  const random = crypto.getRandomValues(new Uint8Array(32));
  const body = [
    0x03,
    0x03,
    ...random,
    0,
    ...u16(2),
    0x13,
    0x01,
    1,
    0,
    ...u16(exts.length),
    ...exts,
  ];
  const hs = [1, 0, ...u16(body.length), ...body];
  return new Uint8Array([0x16, 0x03, 0x01, ...u16(hs.length), ...hs]);
}

function payload(f: DemoFlow): Uint8Array {
  if (f.kind === "http") {
    return enc.encode(`GET / HTTP/1.1\r\nHost: ${f.name}\r\nUser-Agent: router-demo\r\n\r\n`);
  }
  if (f.kind === "tls") return clientHello(f.name ?? "");
  return enc.encode("hello from the demo client\n");
}

async function runFlow(f: DemoFlow): Promise<DemoResult> {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(f.dst);
  if (!m) return { dst: f.dst, ok: false, outcome: "bad destination" };
  let conn: Deno.TcpConn | undefined;
  const timer = setTimeout(() => conn?.close(), 3000);
  try {
    conn = await Deno.connect({ hostname: m[1]!, port: Number(m[2]) });
    const data = payload(f);
    await conn.write(data);
    const buf = new Uint8Array(data.length);
    let got = 0;
    while (got < data.length) {
      const n = await conn.read(buf.subarray(got));
      if (n === null) break;
      got += n;
    }
    if (got === data.length) return { dst: f.dst, ok: true, outcome: `echoed ${got} bytes` };
    return {
      dst: f.dst,
      ok: false,
      outcome: got === 0 ? "closed without reply" : `short reply ${got}`,
    };
  } catch (e) {
    const err = e as Error;
    const outcome = err.name === "ConnectionReset" || /reset/i.test(err.message)
      ? "reset by the router"
      : err.name === "BadResource" || err.name === "Interrupted"
      ? "timed out"
      : err.message;
    return { dst: f.dst, ok: false, outcome };
  } finally {
    clearTimeout(timer);
    try {
      conn?.close();
    } catch { /* closed by the timer */ }
  }
}

if (import.meta.main) {
  const flows = JSON.parse(Deno.args[0] ?? "[]") as DemoFlow[];
  for (const f of flows) console.log(JSON.stringify(await runFlow(f)));
}
