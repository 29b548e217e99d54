/**
 * SOCKS5 wire format (RFC 1928, RFC 1929): pure encoders/decoders over byte
 * buffers plus bounded exact-length reads over a minimal {@linkcode ByteStream}.
 * No sockets here, so everything is unit-testable with in-memory fakes.
 *
 * @module
 */

import type { Endpoint } from "../core/types.ts";

/** The least a SOCKS client needs of a stream; `ffi/stream.ts`'s `FdStream` fits it. */
export interface ByteStream {
  /** Reads into `buf`; resolves with the byte count, 0 at EOF. */
  read(buf: Uint8Array): Promise<number>;
  /** Writes all of `buf`. */
  writeAll(buf: Uint8Array): Promise<void>;
  /** Closes the stream; a pending read then rejects or resolves 0. */
  close(): void;
}

/** SOCKS protocol version byte. */
export const SOCKS_VERSION = 5;
/** Method: no authentication required. */
export const METHOD_NO_AUTH = 0x00;
/** Method: username/password (RFC 1929). */
export const METHOD_USER_PASS = 0x02;
/** Method reply: no acceptable methods. */
export const METHOD_NONE_ACCEPTABLE = 0xff;
/** Command: CONNECT. */
export const CMD_CONNECT = 0x01;
/** Command: UDP ASSOCIATE. */
export const CMD_UDP_ASSOCIATE = 0x03;
/** Address type: IPv4. */
export const ATYP_IPV4 = 0x01;
/** Address type: domain name. */
export const ATYP_DOMAIN = 0x03;
/** Address type: IPv6. */
export const ATYP_IPV6 = 0x04;

/** A SOCKS address: raw IP bytes (4 or 16) or a domain name. */
export type SocksAddress =
  | { readonly kind: "ip"; readonly addr: Uint8Array }
  | { readonly kind: "domain"; readonly host: string };

/** A SOCKS address and port. */
export interface SocksTarget {
  readonly address: SocksAddress;
  readonly port: number;
}

const REP_MESSAGES: Record<number, string> = {
  1: "general SOCKS server failure",
  2: "connection not allowed by ruleset",
  3: "network unreachable",
  4: "host unreachable",
  5: "connection refused by destination",
  6: "TTL expired",
  7: "command not supported",
  8: "address type not supported",
};

/** The human text of a SOCKS5 reply code (RFC 1928 §6). */
export function replyMessage(rep: number): string {
  return REP_MESSAGES[rep] ?? `unassigned reply code`;
}

/**
 * The SOCKS server answered with an error or broke the protocol. `rep` is
 * the reply code (1..255) when the server sent one, else `null` (protocol
 * violation, auth failure, EOF).
 */
export class Socks5Error extends Error {
  /** Reply code from the server, or null when not a CONNECT/ASSOCIATE reply. */
  readonly rep: number | null;
  /** `host:port` of the SOCKS server. */
  readonly server: string;

  /** Creates the error; the message is prefixed with the server. */
  constructor(server: string, message: string, rep: number | null = null, options?: ErrorOptions) {
    super(`SOCKS5 server ${server}: ${message}`, options);
    this.name = "Socks5Error";
    this.rep = rep;
    this.server = server;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Encodes the method-selection greeting: VER NMETHODS METHODS… */
export function encodeGreeting(methods: readonly number[]): Uint8Array {
  if (methods.length < 1 || methods.length > 255) {
    throw new RangeError(`SOCKS5 greeting: ${methods.length} methods, want 1..255`);
  }
  const out = new Uint8Array(2 + methods.length);
  out[0] = SOCKS_VERSION;
  out[1] = methods.length;
  out.set(methods, 2);
  return out;
}

/** Validates a username/password pair for RFC 1929 (1..255 UTF-8 bytes each). */
export function validateCredentials(username: string, password: string): void {
  const u = encoder.encode(username).length;
  const p = encoder.encode(password).length;
  if (u < 1 || u > 255) throw new RangeError(`username: ${u} bytes, want 1..255`);
  if (p < 1 || p > 255) throw new RangeError(`password: ${p} bytes, want 1..255`);
}

/** Encodes the RFC 1929 request: VER=1 ULEN UNAME PLEN PASSWD. */
export function encodeUserPass(username: string, password: string): Uint8Array {
  validateCredentials(username, password);
  const u = encoder.encode(username), p = encoder.encode(password);
  const out = new Uint8Array(3 + u.length + p.length);
  out[0] = 0x01;
  out[1] = u.length;
  out.set(u, 2);
  out[2 + u.length] = p.length;
  out.set(p, 3 + u.length);
  return out;
}

/** Encodes ATYP + address (+ nothing else). Domain names are 1..255 ASCII bytes. */
export function encodeAddress(address: SocksAddress): Uint8Array {
  if (address.kind === "ip") {
    const a = address.addr;
    if (a.length !== 4 && a.length !== 16) {
      throw new RangeError(`SOCKS5 address: ${a.length} bytes, want 4 or 16`);
    }
    const out = new Uint8Array(1 + a.length);
    out[0] = a.length === 4 ? ATYP_IPV4 : ATYP_IPV6;
    out.set(a, 1);
    return out;
  }
  const host = encoder.encode(address.host);
  if (host.length < 1 || host.length > 255) {
    throw new RangeError(`SOCKS5 domain "${address.host}": ${host.length} bytes, want 1..255`);
  }
  const out = new Uint8Array(2 + host.length);
  out[0] = ATYP_DOMAIN;
  out[1] = host.length;
  out.set(host, 2);
  return out;
}

function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`SOCKS5 port ${port}: want 0..65535`);
  }
}

/** Encodes a request: VER CMD RSV ATYP DST.ADDR DST.PORT. */
export function encodeRequest(cmd: number, target: SocksTarget): Uint8Array {
  checkPort(target.port);
  const addr = encodeAddress(target.address);
  const out = new Uint8Array(3 + addr.length + 2);
  out[0] = SOCKS_VERSION;
  out[1] = cmd;
  out[2] = 0;
  out.set(addr, 3);
  out[3 + addr.length] = target.port >> 8;
  out[4 + addr.length] = target.port & 0xff;
  return out;
}

/** The target for an IP endpoint. */
export function targetFromEndpoint(e: Endpoint): SocksTarget {
  return { address: { kind: "ip", addr: e.addr }, port: e.port };
}

/**
 * Decodes ATYP + address + port at `offset` of `buf`. Returns the target and
 * the offset just past it, or null if `buf` is too short; throws
 * `RangeError` on an unknown ATYP or a non-UTF-8 domain.
 */
export function decodeAddressPort(
  buf: Uint8Array,
  offset: number,
): { target: SocksTarget; end: number } | null {
  if (buf.length < offset + 1) return null;
  const atyp = buf[offset]!;
  let addrStart = offset + 1, addrLen: number;
  if (atyp === ATYP_IPV4) addrLen = 4;
  else if (atyp === ATYP_IPV6) addrLen = 16;
  else if (atyp === ATYP_DOMAIN) {
    if (buf.length < offset + 2) return null;
    addrLen = buf[offset + 1]!;
    addrStart = offset + 2;
    if (addrLen === 0) throw new RangeError("SOCKS5 address: empty domain");
  } else throw new RangeError(`SOCKS5 address: unknown ATYP ${atyp}`);
  const end = addrStart + addrLen + 2;
  if (buf.length < end) return null;
  const raw = buf.subarray(addrStart, addrStart + addrLen);
  const port = (buf[end - 2]! << 8) | buf[end - 1]!;
  let address: SocksAddress;
  if (atyp === ATYP_DOMAIN) {
    let host: string;
    try {
      host = decoder.decode(raw);
    } catch (e) {
      throw new RangeError("SOCKS5 address: domain is not UTF-8", { cause: e });
    }
    address = { kind: "domain", host };
  } else address = { kind: "ip", addr: raw.slice() };
  return { target: { address, port }, end };
}

/** Deadline-bound exact reads: the caller's timer closes the stream, ending a pending read. */
export async function readExact(stream: ByteStream, n: number, what: string): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const r = await stream.read(out.subarray(got));
    if (r === 0) throw new Error(`unexpected EOF reading ${what} (${got}/${n} bytes)`);
    got += r;
  }
  return out;
}

/**
 * Reads one request reply exactly (VER REP RSV ATYP BND.ADDR BND.PORT) and
 * no byte more, so data the server sends after the reply stays in the
 * stream. A non-zero REP throws at once (some servers close right after it).
 */
export async function readReply(stream: ByteStream, server: string): Promise<SocksTarget> {
  const head = await readExact(stream, 2, "SOCKS5 reply");
  if (head[0] !== SOCKS_VERSION) {
    throw new Socks5Error(server, `bad reply version ${head[0]}`);
  }
  const rep = head[1]!;
  if (rep !== 0) throw new Socks5Error(server, `${replyMessage(rep)} (rep=${rep})`, rep);
  const rest = await readExact(stream, 2, "SOCKS5 reply");
  const atyp = rest[1]!;
  let tail: Uint8Array;
  if (atyp === ATYP_IPV4) tail = await readExact(stream, 4 + 2, "SOCKS5 reply address");
  else if (atyp === ATYP_IPV6) tail = await readExact(stream, 16 + 2, "SOCKS5 reply address");
  else if (atyp === ATYP_DOMAIN) {
    const len = (await readExact(stream, 1, "SOCKS5 reply address"))[0]!;
    const body = await readExact(stream, len + 2, "SOCKS5 reply address");
    tail = new Uint8Array(1 + body.length);
    tail[0] = len;
    tail.set(body, 1);
  } else throw new Socks5Error(server, `reply has unknown ATYP ${atyp}`);
  const whole = new Uint8Array(1 + tail.length);
  whole[0] = atyp;
  whole.set(tail, 1);
  let decoded;
  try {
    decoded = decodeAddressPort(whole, 0);
  } catch (e) {
    throw new Socks5Error(server, `bad reply address: ${(e as Error).message}`, null, { cause: e });
  }
  if (!decoded) throw new Socks5Error(server, "truncated reply address");
  return decoded.target;
}

/** Credentials for RFC 1929. */
export interface Socks5Auth {
  readonly username: string;
  readonly password: string;
}

/**
 * Runs the greeting (and RFC 1929 auth when `auth` is given) on `stream`.
 * Offers no-auth, plus username/password when credentials are configured.
 */
export async function socks5Greet(
  stream: ByteStream,
  server: string,
  auth: Socks5Auth | undefined,
): Promise<void> {
  const methods = auth ? [METHOD_NO_AUTH, METHOD_USER_PASS] : [METHOD_NO_AUTH];
  await stream.writeAll(encodeGreeting(methods));
  const sel = await readExact(stream, 2, "SOCKS5 method selection");
  if (sel[0] !== SOCKS_VERSION) throw new Socks5Error(server, `bad greeting version ${sel[0]}`);
  const method = sel[1]!;
  if (method === METHOD_NO_AUTH) return;
  if (method === METHOD_USER_PASS && auth) {
    await stream.writeAll(encodeUserPass(auth.username, auth.password));
    const r = await readExact(stream, 2, "SOCKS5 auth reply");
    if (r[0] !== 0x01) throw new Socks5Error(server, `bad auth reply version ${r[0]}`);
    if (r[1] !== 0) throw new Socks5Error(server, `username/password rejected (status=${r[1]})`);
    return;
  }
  if (method === METHOD_NONE_ACCEPTABLE) {
    throw new Socks5Error(
      server,
      auth ? "no acceptable authentication method" : "server requires authentication",
    );
  }
  throw new Socks5Error(server, `server chose unoffered method ${method}`);
}

/**
 * Sends a request (`cmd` CONNECT or UDP ASSOCIATE) on a greeted stream and
 * reads its reply; returns BND.ADDR/BND.PORT.
 */
export async function socks5Request(
  stream: ByteStream,
  server: string,
  cmd: number,
  target: SocksTarget,
): Promise<SocksTarget> {
  await stream.writeAll(encodeRequest(cmd, target));
  return await readReply(stream, server);
}

/**
 * Runs `fn` on `stream` with a deadline: on timeout or abort the stream is
 * closed (ending any pending read) and the promise rejects with a
 * `TimeoutError`/the abort reason.
 */
export async function withDeadline<T>(
  stream: ByteStream,
  timeoutMs: number,
  what: string,
  fn: () => Promise<T>,
  signal?: AbortSignal,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort: (() => void) | undefined;
  const stop = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      stream.close();
      const e = new Error(`${what}: timed out after ${timeoutMs} ms`);
      e.name = "TimeoutError";
      reject(e);
    }, timeoutMs);
    if (signal) {
      onAbort = () => {
        stream.close();
        reject(signal.reason ?? new DOMException("aborted", "AbortError"));
      };
      if (signal.aborted) onAbort();
      else signal.addEventListener("abort", onAbort, { once: true });
    }
  });
  const work = fn();
  work.catch(() => {}); // its rejection after a timeout is expected and irrelevant
  try {
    return await Promise.race([work, stop]);
  } finally {
    clearTimeout(timer);
    if (signal && onAbort) signal.removeEventListener("abort", onAbort);
  }
}
