/**
 * The cheap checks behind {@linkcode HealthSpec}s: a SOCKS5 greeting (TCP
 * connect + method selection, and RFC 1929 auth when configured; never a
 * CONNECT), a TCP connect through an outbound's own socket options, and the
 * verdicts that turn a flow's dial error into "path up / down / says
 * nothing".
 *
 * @module
 */

import type { Endpoint } from "../core/types.ts";
import { formatEndpoint } from "../core/ip.ts";
import type { DialVerdict, ProbeContext } from "./health.ts";
import { type ByteStream, Socks5Error, socks5Greet, withDeadline } from "./socks5_wire.ts";
import { Socks5UnavailableError } from "./socks5_pool.ts";

/** errno codes of a connect that mean the path (route, interface, tunnel) is down. */
export const PATH_DOWN_CODES: ReadonlySet<string> = new Set([
  "ENETUNREACH",
  "EHOSTUNREACH",
  "ETIMEDOUT",
  "ENODEV",
  "ENETDOWN",
  "EADDRNOTAVAIL",
]);

function isAbort(e: unknown): boolean {
  return (e instanceof DOMException || e instanceof Error) && e.name === "AbortError";
}

function isTimeout(e: unknown): boolean {
  return e instanceof Error && e.name === "TimeoutError";
}

function errnoCode(e: unknown): string | undefined {
  const c = (e as { code?: unknown } | null)?.code;
  return typeof c === "string" ? c : undefined;
}

/**
 * Verdict of a direct dial error: a path error (see
 * {@linkcode PATH_DOWN_CODES}) or a connect timeout → down; any other errno
 * (ECONNREFUSED, ECONNRESET, …) means a host answered → up; aborts → neutral.
 */
export function directVerdict(e: unknown): DialVerdict {
  if (isAbort(e)) return "neutral";
  if (isTimeout(e)) return "down";
  const code = errnoCode(e);
  if (code === undefined) return "neutral";
  return PATH_DOWN_CODES.has(code) ? "down" : "up";
}

/**
 * Verdict of a SOCKS dial error: the server could not be used (no connect,
 * protocol or auth failure, or the pool already knows it is down) → down;
 * the server answered with a reply code (the destination failed) → up;
 * timeouts of the CONNECT phase and aborts → neutral.
 */
export function socksVerdict(e: unknown): DialVerdict {
  if (isAbort(e)) return "neutral";
  if (e instanceof Socks5UnavailableError) return "down";
  if (e instanceof Socks5Error) return e.rep === null ? "down" : "up";
  return "neutral";
}

/** Options of {@linkcode socksGreetingProbe}. */
export interface SocksProbeOptions<S extends ByteStream> {
  readonly server: Endpoint;
  readonly auth?: { readonly username: string; readonly password: string } | undefined;
  /** Opens the TCP connection (with the outbound's mark and TOS); honours `timeoutMs` and `signal`. */
  readonly connect: (dst: Endpoint, opts: { timeoutMs: number; signal: AbortSignal }) => Promise<S>;
  readonly timeoutMs: number;
}

/**
 * A probe that connects to the SOCKS5 server and runs the greeting (and
 * auth), then closes: proves the server accepts and speaks SOCKS5 without
 * asking it to reach anything.
 */
export function socksGreetingProbe<S extends ByteStream>(
  o: SocksProbeOptions<S>,
): (ctx: ProbeContext) => Promise<void> {
  const text = formatEndpoint(o.server);
  return async ({ signal }) => {
    let conn: S;
    try {
      conn = await o.connect(o.server, { timeoutMs: o.timeoutMs, signal });
    } catch (e) {
      throw new Socks5Error(text, `cannot connect: ${(e as Error).message}`, null, { cause: e });
    }
    try {
      await withDeadline(
        conn,
        o.timeoutMs,
        `SOCKS5 ${text} greeting`,
        () => socks5Greet(conn, text, o.auth),
        signal,
      );
    } finally {
      conn.close();
    }
  };
}

/**
 * A probe that opens a TCP connection to `target` with `dial` (the
 * outbound's own interface / source address / mark) and closes it.
 */
export function tcpConnectProbe(
  target: Endpoint,
  dial: (dst: Endpoint, signal: AbortSignal) => Promise<{ close(): void }>,
): (ctx: ProbeContext) => Promise<void> {
  return async ({ signal }) => {
    const s = await dial(target, signal);
    s.close();
  };
}

/**
 * The probe of a passive outbound while it is down: re-dial the last
 * destination that failed (through the outbound itself) and close.
 */
export function redialProbe(
  dial: (dst: Endpoint, signal: AbortSignal) => Promise<{ close(): void }>,
): (ctx: ProbeContext) => Promise<void> {
  return async ({ signal, lastFailed }) => {
    if (!lastFailed) throw new Error("nothing to re-dial");
    const s = await dial(lastFailed, signal);
    s.close();
  };
}
