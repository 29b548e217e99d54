/**
 * The SOCKS5 outbound (RFC 1928 client, RFC 1929 auth) used for `type:
 * "socks"` outbounds of kind `socks`, `xray` (the local Xray-lite bridge)
 * and `warp-masque`. `dialTcp` returns a stream positioned right after the
 * CONNECT reply: the reply is read to its exact length, so bytes the server
 * sends after it are left in the stream.
 *
 * @module
 */

import type { Endpoint } from "../core/types.ts";
import { formatEndpoint, parseIp } from "../core/ip.ts";
import type { Logger } from "../core/log.ts";
import { nullLogger } from "../core/log.ts";
import {
  type ByteStream,
  CMD_CONNECT,
  encodeAddress,
  type Socks5Auth,
  Socks5Error,
  socks5Greet,
  socks5Request,
  type SocksTarget,
  targetFromEndpoint,
  validateCredentials,
  withDeadline,
} from "./socks5_wire.ts";
import { type PoolStats, Socks5Pool, Socks5UnavailableError } from "./socks5_pool.ts";
import { connectTcp, type FdStream } from "../ffi/stream.ts";
import { WOULD_BLOCK } from "../ffi/socket.ts";

export { Socks5Error } from "./socks5_wire.ts";
export { Socks5UnavailableError } from "./socks5_pool.ts";

/** What the outbound stands for (all speak SOCKS5 to a local or remote server). */
export type Socks5Kind = "socks" | "xray" | "warp-masque";

/**
 * How the CONNECT names the destination: `"ip"` always sends the original
 * destination IP; `"sniffed"` sends the sniffed domain when there is one
 * (so the far end resolves it), else the IP.
 */
export type DomainStrategy = "ip" | "sniffed";

/** Validated settings of a SOCKS5 outbound. */
export interface Socks5OutboundConfig {
  readonly tag: string;
  readonly kind: Socks5Kind;
  /** SOCKS server address: an IP literal (no name resolution on the data path). */
  readonly server: string;
  readonly serverPort: number;
  readonly username?: string | undefined;
  readonly password?: string | undefined;
  readonly domainStrategy: DomainStrategy;
  /** SO_MARK of the sockets to the SOCKS server; falls back to `defaultMark`. */
  readonly routingMark?: number | undefined;
  /** The global `route.default_mark`. */
  readonly defaultMark?: number | undefined;
  /** IP_TOS / IPV6_TCLASS byte of the sockets to the server. */
  readonly tos?: number | undefined;
  /** TCP connect to the SOCKS server, and separately greeting + CONNECT, must each finish within this. */
  readonly connectTimeoutMs: number;
  /** Pre-warmed connections; absent = dial per flow. */
  readonly pool?: { readonly size: number; readonly maxIdleMs?: number | undefined } | undefined;
}

/** Options passed to the TCP connect function (matches `ffi/stream.ts` `connectTcp`). */
export interface DialOptions {
  mark?: number;
  tos?: number;
  timeoutMs: number;
  signal?: AbortSignal;
}

/** Opens a TCP connection (the real one is `connectTcp` of `ffi/stream.ts`). */
export type ConnectFn<S> = (dst: Endpoint, opts: DialOptions) => Promise<S>;

/** What a {@linkcode Socks5Outbound} needs from its surroundings. */
export interface Socks5Deps<S extends ByteStream> {
  readonly connect: ConnectFn<S>;
  /** Non-blocking liveness check of an idle pooled connection; default: always alive. */
  readonly isAlive?: (conn: S) => boolean;
  readonly logger?: Logger;
  /** Monotonic clock in ms, for the pool. */
  readonly now?: () => number;
}

/** Outbound status for the IPC `outbounds.list`. */
export interface Socks5OutboundStats {
  tag: string;
  kind: Socks5Kind;
  server: string;
  dials: number;
  failures: number;
  pool: PoolStats | null;
}

function fail(tag: string, field: string, msg: string): never {
  throw new TypeError(`outbound ${tag}: ${field}: ${msg}`);
}

/** Validates a config; errors name the outbound and field. Returns the server endpoint. */
export function validateSocks5Config(c: Socks5OutboundConfig): Endpoint {
  const t = c.tag;
  if (!["socks", "xray", "warp-masque"].includes(c.kind)) {
    fail(t, "kind", `"${c.kind}": want "socks", "xray" or "warp-masque"`);
  }
  const addr = parseIp(c.server);
  if (!addr) fail(t, "server", `"${c.server}": not an IP address`);
  if (!Number.isInteger(c.serverPort) || c.serverPort < 1 || c.serverPort > 65535) {
    fail(t, "server_port", `${c.serverPort}: want 1..65535`);
  }
  if ((c.username === undefined) !== (c.password === undefined)) {
    fail(
      t,
      c.username === undefined ? "username" : "password",
      "username and password go together",
    );
  }
  if (c.username !== undefined && c.password !== undefined) {
    try {
      validateCredentials(c.username, c.password);
    } catch (e) {
      fail(t, (e as Error).message.split(":")[0]!, (e as Error).message.split(": ")[1]!);
    }
  }
  if (c.domainStrategy !== "ip" && c.domainStrategy !== "sniffed") {
    fail(t, "domain_strategy", `"${c.domainStrategy}": want "ip" or "sniffed"`);
  }
  for (const [field, v] of [["routing_mark", c.routingMark], ["default_mark", c.defaultMark]]) {
    if (
      v !== undefined && (!Number.isInteger(v) || (v as number) < 0 || (v as number) > 0xffffffff)
    ) {
      fail(t, field as string, `${v}: want 0..4294967295`);
    }
  }
  if (c.tos !== undefined && (!Number.isInteger(c.tos) || c.tos < 0 || c.tos > 255)) {
    fail(t, "tos", `${c.tos}: want 0..255`);
  }
  if (!(c.connectTimeoutMs > 0) || c.connectTimeoutMs > 300_000) {
    fail(t, "connect_timeout", `${c.connectTimeoutMs} ms: want 1..300000`);
  }
  if (c.pool) {
    if (!Number.isInteger(c.pool.size) || c.pool.size < 1 || c.pool.size > 256) {
      fail(t, "pool.size", `${c.pool.size}: want 1..256`);
    }
    if (c.pool.maxIdleMs !== undefined && !(c.pool.maxIdleMs >= 100)) {
      fail(t, "pool.max_idle", `${c.pool.maxIdleMs} ms: want >= 100`);
    }
  }
  return { addr, port: c.serverPort };
}

/** Chooses what the CONNECT names: the sniffed domain (strategy "sniffed") or the IP. */
export function connectTarget(
  strategy: DomainStrategy,
  dst: Endpoint,
  domain: string | undefined,
): SocksTarget {
  if (strategy === "sniffed" && domain) {
    const t: SocksTarget = { address: { kind: "domain", host: domain }, port: dst.port };
    try {
      encodeAddress(t.address);
      return t;
    } catch { /* unencodable name: fall back to the IP */ }
  }
  return targetFromEndpoint(dst);
}

function isAbort(e: unknown): boolean {
  return e instanceof DOMException && e.name === "AbortError";
}

/** A SOCKS5 outbound with an optional pre-warmed pool. */
export class Socks5Outbound<S extends ByteStream> {
  /** Outbound tag. */
  readonly tag: string;
  /** Outbound type, as in config. */
  readonly type = "socks" as const;
  /** What the SOCKS server stands for. */
  readonly kind: Socks5Kind;
  /** The SOCKS server. */
  readonly server: Endpoint;
  readonly #serverText: string;
  readonly #cfg: Socks5OutboundConfig;
  readonly #deps: Socks5Deps<S>;
  readonly #auth: Socks5Auth | undefined;
  readonly #pool: Socks5Pool<S> | null;
  readonly #log: Logger;
  #dials = 0;
  #failures = 0;
  #health: { state: "up" | "down" | "unknown"; lastError?: string; since?: number } = {
    state: "unknown",
  };

  /** Validates the config (errors name the field) and starts the pool, if any. */
  constructor(config: Socks5OutboundConfig, deps: Socks5Deps<S>) {
    this.server = validateSocks5Config(config);
    this.tag = config.tag;
    this.kind = config.kind;
    this.#cfg = config;
    this.#deps = deps;
    this.#serverText = formatEndpoint(this.server);
    this.#log = (deps.logger ?? nullLogger).child(`socks5/${config.tag}`);
    this.#auth = config.username !== undefined && config.password !== undefined
      ? { username: config.username, password: config.password }
      : undefined;
    this.#pool = config.pool
      ? new Socks5Pool<S>({
        size: config.pool.size,
        ...(config.pool.maxIdleMs !== undefined ? { maxIdleMs: config.pool.maxIdleMs } : {}),
        open: () => this.#openGreeted(undefined, false),
        isAlive: deps.isAlive ?? (() => true),
        ...(deps.now ? { now: deps.now } : {}),
        logger: this.#log,
      })
      : null;
    this.#pool?.start();
  }

  /**
   * Opens a stream to `dst` through the SOCKS server. With domain strategy
   * "sniffed" and a `domain`, the CONNECT names the domain. Rejects with
   * {@linkcode Socks5Error} (server refused; `rep` set for reply codes),
   * {@linkcode Socks5UnavailableError} (pool knows the server is down),
   * a `TimeoutError`, or the connect error.
   */
  async dialTcp(dst: Endpoint, domain?: string, signal?: AbortSignal): Promise<S> {
    this.#dials++;
    const target = connectTarget(this.#cfg.domainStrategy, dst, domain);
    try {
      let conn = this.#pool?.acquire() ?? null;
      if (conn) {
        try {
          return await this.#connectOn(conn, target, signal);
        } catch (e) {
          // A pooled connection can die between the liveness check and use;
          // retry once on a fresh one unless the server itself answered.
          if ((e instanceof Socks5Error && e.rep !== null) || isAbort(e) || signal?.aborted) {
            throw e;
          }
          this.#log.debug("pooled connection failed; dialling fresh", { error: e });
        }
      }
      conn = await this.#openGreeted(signal, true);
      return await this.#connectOn(conn, target, signal);
    } catch (e) {
      this.#failures++;
      if (isServerUnavailable(e)) this.#setHealth("down", (e as Error).message);
      throw e;
    }
  }

  /** Health as the router shows it: from the pool when there is one, else from the last dials. */
  health(): { state: "up" | "down" | "unknown"; lastError?: string; since?: number } {
    const h = { ...this.#health };
    const pool = this.#pool?.stats();
    if (pool && (pool.opened > 0 || pool.openFailures > 0)) {
      h.state = pool.state;
      if (pool.lastError !== null) h.lastError = pool.lastError;
    }
    return h;
  }

  /**
   * Something outside the flows (the health checker's greeting probe)
   * reached the server: a pool that turned down refills at once instead of
   * waiting out its back-off.
   */
  noteServerUp(): void {
    this.#pool?.reportSuccess();
  }

  /** Extra state for `outbounds.list`. */
  describe(): Record<string, unknown> {
    return { ...this.stats() };
  }

  #setHealth(state: "up" | "down", lastError?: string): void {
    if (state === this.#health.state && lastError === undefined) return;
    const since = state === this.#health.state ? this.#health.since : Date.now();
    this.#health = { state };
    if (since !== undefined) this.#health.since = since;
    if (lastError !== undefined) this.#health.lastError = lastError;
  }

  /** Status for IPC. */
  stats(): Socks5OutboundStats {
    return {
      tag: this.tag,
      kind: this.kind,
      server: this.#serverText,
      dials: this.#dials,
      failures: this.#failures,
      pool: this.#pool?.stats() ?? null,
    };
  }

  /** Closes the pool's idle connections; streams already handed out are the caller's. */
  close(): void {
    this.#pool?.close();
  }

  async #connectOn(conn: S, target: SocksTarget, signal: AbortSignal | undefined): Promise<S> {
    try {
      await withDeadline(
        conn,
        this.#cfg.connectTimeoutMs,
        `SOCKS5 ${this.#serverText} CONNECT`,
        () => socks5Request(conn, this.#serverText, CMD_CONNECT, target),
        signal,
      );
      return conn;
    } catch (e) {
      conn.close();
      throw e;
    }
  }

  /** TCP connect + greeting/auth. `report` tells the pool about the server's health. */
  async #openGreeted(signal: AbortSignal | undefined, report: boolean): Promise<S> {
    const mark = this.#cfg.routingMark ?? this.#cfg.defaultMark;
    const opts: DialOptions = { timeoutMs: this.#cfg.connectTimeoutMs };
    if (mark !== undefined) opts.mark = mark;
    if (this.#cfg.tos !== undefined) opts.tos = this.#cfg.tos;
    if (signal) opts.signal = signal;
    let conn: S;
    try {
      conn = await this.#deps.connect(this.server, opts);
    } catch (e) {
      if (report && !isAbort(e)) this.#pool?.reportFailure(e as Error);
      throw e instanceof Error && !(e instanceof Socks5Error) && !isAbort(e)
        ? new Socks5Error(this.#serverText, `cannot connect: ${e.message}`, null, { cause: e })
        : e;
    }
    try {
      await withDeadline(
        conn,
        this.#cfg.connectTimeoutMs,
        `SOCKS5 ${this.#serverText} greeting`,
        () => socks5Greet(conn, this.#serverText, this.#auth),
        signal,
      );
    } catch (e) {
      conn.close();
      if (report && !isAbort(e)) this.#pool?.reportFailure(e as Error);
      throw e;
    }
    if (report) this.#pool?.reportSuccess();
    this.#setHealth("up");
    return conn;
  }
}

/** True when `e` means the SOCKS server could not be used at all (vs. a refused destination). */
export function isServerUnavailable(e: unknown): boolean {
  return e instanceof Socks5UnavailableError || (e instanceof Socks5Error && e.rep === null);
}

/** Scratch byte for the liveness peek (its content is never read). */
const PROBE = new Uint8Array(1);

/**
 * Liveness of an idle {@linkcode FdStream}: a non-blocking MSG_PEEK that
 * would block means alive; EOF, RST or unexpected bytes mean dead.
 */
export function fdStreamIsIdleAlive(stream: FdStream): boolean {
  if (stream.closed) return false;
  try {
    return stream.tryPeek(PROBE) === WOULD_BLOCK;
  } catch {
    return false;
  }
}

/** A {@linkcode Socks5Outbound} over real FFI sockets (`connectTcp` of `ffi/stream.ts`). */
export function createSocks5Outbound(
  config: Socks5OutboundConfig,
  opts: { logger?: Logger } = {},
): Socks5Outbound<FdStream> {
  return new Socks5Outbound<FdStream>(config, {
    connect: (dst, o) => connectTcp(dst, o),
    isAlive: fdStreamIsIdleAlive,
    ...(opts.logger ? { logger: opts.logger } : {}),
  });
}
