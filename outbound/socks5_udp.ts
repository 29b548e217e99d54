/**
 * SOCKS5 UDP ASSOCIATE (RFC 1928 §7), protocol part: the control TCP
 * connection that keeps the association alive, the relay endpoint it
 * yields, and the codec of the UDP request header that prefixes every
 * datagram (RSV RSV FRAG ATYP DST.ADDR DST.PORT DATA). The UDP socket
 * itself belongs to the caller.
 *
 * @module
 */

import type { Endpoint } from "../core/types.ts";
import {
  type ByteStream,
  CMD_UDP_ASSOCIATE,
  decodeAddressPort,
  encodeAddress,
  type Socks5Auth,
  Socks5Error,
  socks5Greet,
  socks5Request,
  type SocksTarget,
  withDeadline,
} from "./socks5_wire.ts";

/** Largest UDP payload we accept or build (IPv4 max datagram minus headers). */
export const MAX_UDP_PAYLOAD = 65507;

/** Encodes one client→relay datagram: header with FRAG=0, then `data`. */
export function encodeUdpDatagram(target: SocksTarget, data: Uint8Array): Uint8Array {
  if (!Number.isInteger(target.port) || target.port < 0 || target.port > 65535) {
    throw new RangeError(`SOCKS5 UDP port ${target.port}: want 0..65535`);
  }
  const addr = encodeAddress(target.address);
  const headerLen = 3 + addr.length + 2;
  if (headerLen + data.length > MAX_UDP_PAYLOAD) {
    throw new RangeError(`SOCKS5 UDP datagram: ${headerLen + data.length} bytes, too large`);
  }
  const out = new Uint8Array(headerLen + data.length);
  // out[0..2] = RSV RSV FRAG, all zero
  out.set(addr, 3);
  out[3 + addr.length] = target.port >> 8;
  out[4 + addr.length] = target.port & 0xff;
  out.set(data, headerLen);
  return out;
}

/** Result of {@linkcode decodeUdpDatagram}: a datagram or why it was dropped. */
export type UdpDecodeResult =
  | { readonly ok: true; readonly source: SocksTarget; readonly data: Uint8Array }
  | { readonly ok: false; readonly reason: "short" | "reserved" | "fragmented" | "atyp" };

/**
 * Decodes one relay→client datagram. Fragments (FRAG≠0) are dropped, as RFC
 * 1928 allows for clients that do not reassemble. `data` is a view into `buf`.
 */
export function decodeUdpDatagram(buf: Uint8Array): UdpDecodeResult {
  if (buf.length < 4) return { ok: false, reason: "short" };
  if (buf[0] !== 0 || buf[1] !== 0) return { ok: false, reason: "reserved" };
  if (buf[2] !== 0) return { ok: false, reason: "fragmented" };
  let decoded;
  try {
    decoded = decodeAddressPort(buf, 3);
  } catch {
    return { ok: false, reason: "atyp" };
  }
  if (!decoded) return { ok: false, reason: "short" };
  return { ok: true, source: decoded.target, data: buf.subarray(decoded.end) };
}

function isUnspecified(addr: Uint8Array): boolean {
  return addr.every((b) => b === 0);
}

/**
 * Picks where datagrams go from the ASSOCIATE reply: BND.ADDR, or the SOCKS
 * server's own address when BND.ADDR is 0.0.0.0/:: (common on servers
 * bound to a wildcard). A domain BND.ADDR is refused (we do not resolve).
 */
export function relayEndpoint(bound: SocksTarget, server: Endpoint, serverText: string): Endpoint {
  if (bound.address.kind !== "ip") {
    throw new Socks5Error(serverText, `UDP ASSOCIATE replied with a domain relay address`);
  }
  if (bound.port === 0) throw new Socks5Error(serverText, "UDP ASSOCIATE replied with port 0");
  const addr = isUnspecified(bound.address.addr) ? server.addr : bound.address.addr;
  return { addr, port: bound.port };
}

/** Options of {@linkcode socks5UdpAssociate}. */
export interface UdpAssociateOptions {
  /** The SOCKS server (for the relay fallback and messages). */
  readonly server: Endpoint;
  readonly auth?: Socks5Auth | undefined;
  /** Greeting + request must finish within this. */
  readonly timeoutMs: number;
  /**
   * Where the client will send from (DST.ADDR/PORT of the request). Default
   * 0.0.0.0:0: "not known yet", which RFC 1928 allows.
   */
  readonly clientHint?: Endpoint | undefined;
  readonly signal?: AbortSignal | undefined;
}

/** A live UDP association: datagrams go to `relay`; it lasts while `control` is open. */
export interface Socks5UdpAssociation<S extends ByteStream> {
  /** The TCP control connection; closing it ends the association. */
  readonly control: S;
  /** Where to send encoded datagrams (and whence replies come). */
  readonly relay: Endpoint;
  /** Resolves when the server closes the control connection (or it errors). */
  readonly ended: Promise<void>;
  /** Closes the control connection. */
  close(): void;
}

/**
 * Runs greeting + UDP ASSOCIATE on a connected control stream and returns
 * the association. The control stream is closed on failure.
 */
export async function socks5UdpAssociate<S extends ByteStream>(
  control: S,
  opts: UdpAssociateOptions,
  serverText: string,
): Promise<Socks5UdpAssociation<S>> {
  const hint = opts.clientHint ?? { addr: new Uint8Array(4), port: 0 };
  let bound: SocksTarget;
  try {
    bound = await withDeadline(
      control,
      opts.timeoutMs,
      `SOCKS5 ${serverText} UDP ASSOCIATE`,
      async () => {
        await socks5Greet(control, serverText, opts.auth);
        return await socks5Request(control, serverText, CMD_UDP_ASSOCIATE, {
          address: { kind: "ip", addr: hint.addr },
          port: hint.port,
        });
      },
      opts.signal,
    );
  } catch (e) {
    control.close();
    throw e;
  }
  let relay: Endpoint;
  try {
    relay = relayEndpoint(bound, opts.server, serverText);
  } catch (e) {
    control.close();
    throw e;
  }
  // The server sends nothing more on the control connection; any read result
  // (EOF, data, error) means the association is over.
  const ended = (async () => {
    const sink = new Uint8Array(64);
    try {
      while ((await control.read(sink)) > 0) { /* ignore stray bytes */ }
    } catch { /* closed or reset: ended either way */ }
  })();
  return { control, relay, ended, close: () => control.close() };
}
