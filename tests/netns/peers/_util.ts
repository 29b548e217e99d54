/**
 * Small helpers shared by the netns peer scripts (argument parsing,
 * seeded data, hashing). Internal to tests/netns and bench.
 *
 * @module
 */

import { formatIp, parseEndpoint } from "../../../core/ip.ts";

/** Splits `ADDR:PORT` / `[V6]:PORT` into Deno hostname/port; throws naming the flag. */
export function hostPort(
  flag: string,
  text: string | undefined,
): { hostname: string; port: number } {
  const ep = text === undefined ? null : parseEndpoint(text);
  if (!ep) throw new TypeError(`--${flag}: "${text}": expected ADDR:PORT or [V6]:PORT`);
  return { hostname: formatIp(ep.addr), port: ep.port };
}

/** Deterministic pseudo-random bytes (xorshift32) so both ends can agree on content. */
export function seededBytes(seed: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = (seed >>> 0) || 0x9e3779b9;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/** Incremental SHA-256 is not in WebCrypto: collect chunks (bounded by the caller) and hash once. */
export async function sha256Hex(chunks: Uint8Array[]): Promise<string> {
  let total = 0;
  for (const c of chunks) total += c.length;
  const all = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    all.set(c, off);
    off += c.length;
  }
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", all));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Serves the TCP connections of every listener with `handle`, at most
 * `maxConns` open at once across all of them (further ones are closed at
 * once). Each connection is closed after `handle`; its errors (peer reset or
 * similar) are swallowed: a test peer has nothing to report. Returns when
 * every listener is closed.
 */
export async function serveBounded(
  listeners: Deno.TcpListener[],
  maxConns: number,
  handle: (conn: Deno.TcpConn) => Promise<void>,
): Promise<void> {
  let open = 0;
  const serve = async (conn: Deno.TcpConn) => {
    try {
      await handle(conn);
    } catch {
      // Peer reset or similar: nothing to report in a test peer.
    } finally {
      try {
        conn.close();
      } catch { /* already closed */ }
      open--;
    }
  };
  await Promise.all(listeners.map(async (listener) => {
    for await (const conn of listener) {
      if (open >= maxConns) {
        conn.close();
        continue;
      }
      open++;
      serve(conn);
    }
  }));
}

/** Parses a non-negative integer flag with an upper bound. */
export function intFlag(flag: string, text: string | undefined, dflt: number, max: number): number {
  if (text === undefined) return dflt;
  if (!/^\d{1,12}$/.test(text) || Number(text) > max) {
    throw new RangeError(`--${flag}: "${text}": expected an integer in 0..${max}`);
  }
  return Number(text);
}
