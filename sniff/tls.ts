/**
 * TLS ClientHello sniffer: reads the server name (SNI) from the first bytes a
 * TLS client sends, reassembling a ClientHello fragmented over several
 * records. Pure and bounded; never throws.
 *
 * @module
 */

import type { SniffedProtocol } from "../core/types.ts";
import { latin1, MAX_DOMAIN_LENGTH, normalizeDomain } from "./domain.ts";
import { found, NEED_MORE, NOT_THIS, type SniffResult } from "./result.ts";

/** Default bound on the ClientHello handshake message body, in bytes. */
export const DEFAULT_MAX_HANDSHAKE_BYTES = 16 * 1024;

/** Options of the TLS sniffers. */
export interface TlsSniffOptions {
  /**
   * Largest ClientHello body accepted. A longer message (by its declared
   * length) yields `found` without a domain instead of being buffered.
   * Default {@linkcode DEFAULT_MAX_HANDSHAKE_BYTES}.
   */
  maxHandshakeBytes?: number;
}

const RECORD_HEADER = 5;
const HANDSHAKE_HEADER = 4;
const CONTENT_HANDSHAKE = 0x16;
const HANDSHAKE_CLIENT_HELLO = 0x01;
const MAX_RECORD = 1 << 14; // RFC 8446 5.1: TLSPlaintext.length <= 2^14
const EXT_SERVER_NAME = 0x0000;
const NAME_TYPE_HOST = 0x00;

function u16(b: Uint8Array, i: number): number {
  return (b[i]! << 8) | b[i + 1]!;
}

/** True when bytes [at, at+3) could start a TLS handshake record header. */
function badRecordStart(data: Uint8Array, at: number): boolean {
  if (at < data.length && data[at] !== CONTENT_HANDSHAKE) return true;
  if (at + 1 < data.length && data[at + 1] !== 0x03) return true;
  // legacy_record_version 3.0 .. 3.4 (TLS 1.3 clients send 3.1 or 3.3).
  if (at + 2 < data.length && data[at + 2]! > 0x04) return true;
  return false;
}

/**
 * Sniffs a TLS ClientHello from the first bytes of a TCP stream (record
 * layer included). The handshake message may span several records; it is
 * parsed once complete.
 *
 * @example
 * ```ts
 * const r = sniffTls(firstBytes);
 * if (r.status === "found") console.log(r.domain);
 * ```
 */
export function sniffTls(data: Uint8Array, opts: TlsSniffOptions = {}): SniffResult {
  const max = opts.maxHandshakeBytes ?? DEFAULT_MAX_HANDSHAKE_BYTES;
  const parts: Uint8Array[] = [];
  let collected = 0;
  let msgEnd = -1; // handshake header + body length, once known
  let pos = 0;
  for (;;) {
    if (badRecordStart(data, pos)) return NOT_THIS;
    if (pos + RECORD_HEADER > data.length) return NEED_MORE;
    const len = u16(data, pos + 3);
    if (len === 0 || len > MAX_RECORD) return NOT_THIS;
    const avail = Math.min(len, data.length - pos - RECORD_HEADER);
    parts.push(data.subarray(pos + RECORD_HEADER, pos + RECORD_HEADER + avail));
    collected += avail;
    if (msgEnd < 0 && collected >= HANDSHAKE_HEADER) {
      const head = concat(parts, HANDSHAKE_HEADER);
      if (head[0] !== HANDSHAKE_CLIENT_HELLO) return NOT_THIS;
      const bodyLen = (head[1]! << 16) | (head[2]! << 8) | head[3]!;
      if (bodyLen > max) return found("tls", undefined);
      msgEnd = HANDSHAKE_HEADER + bodyLen;
    } else if (msgEnd < 0 && collected > 0 && parts[0]![0] !== HANDSHAKE_CLIENT_HELLO) {
      return NOT_THIS;
    }
    if (msgEnd >= 0 && collected >= msgEnd) {
      return parseClientHelloBody(concat(parts, msgEnd).subarray(HANDSHAKE_HEADER), "tls");
    }
    if (avail < len) return NEED_MORE;
    pos += RECORD_HEADER + len;
  }
}

/**
 * Sniffs a ClientHello from a bare handshake byte stream (no record layer),
 * as carried in QUIC CRYPTO frames. `protocol` is what a `found` reports.
 */
export function sniffClientHelloMessage(
  hs: Uint8Array,
  protocol: SniffedProtocol,
  opts: TlsSniffOptions = {},
): SniffResult {
  const max = opts.maxHandshakeBytes ?? DEFAULT_MAX_HANDSHAKE_BYTES;
  if (hs.length === 0) return NEED_MORE;
  if (hs[0] !== HANDSHAKE_CLIENT_HELLO) return NOT_THIS;
  if (hs.length < HANDSHAKE_HEADER) return NEED_MORE;
  const bodyLen = (hs[1]! << 16) | (hs[2]! << 8) | hs[3]!;
  if (bodyLen > max) return found(protocol, undefined);
  if (hs.length < HANDSHAKE_HEADER + bodyLen) return NEED_MORE;
  return parseClientHelloBody(hs.subarray(HANDSHAKE_HEADER, HANDSHAKE_HEADER + bodyLen), protocol);
}

/** Joins the first `n` bytes of `parts` (no copy when the first part holds them). */
function concat(parts: Uint8Array[], n: number): Uint8Array {
  const first = parts[0]!;
  if (first.length >= n) return first.subarray(0, n);
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    const take = Math.min(p.length, n - off);
    out.set(p.subarray(0, take), off);
    off += take;
    if (off === n) break;
  }
  return out;
}

/**
 * Parses a complete ClientHello body (RFC 8446 4.1.2). Any length that
 * overruns its container is `not_this`; a well-formed hello without a valid
 * host name is `found` without a domain.
 */
function parseClientHelloBody(b: Uint8Array, protocol: SniffedProtocol): SniffResult {
  let p = 0;
  // legacy_version (2) + random (32)
  if (b.length < 34 || b[0] !== 0x03) return NOT_THIS;
  p = 34;
  // legacy_session_id <0..32>
  if (p + 1 > b.length) return NOT_THIS;
  const sid = b[p]!;
  if (sid > 32) return NOT_THIS;
  p += 1 + sid;
  // cipher_suites <2..2^16-2>
  if (p + 2 > b.length) return NOT_THIS;
  const cs = u16(b, p);
  if (cs < 2 || cs % 2 !== 0) return NOT_THIS;
  p += 2 + cs;
  // legacy_compression_methods <1..2^8-1>
  if (p + 1 > b.length) return NOT_THIS;
  const comp = b[p]!;
  if (comp < 1) return NOT_THIS;
  p += 1 + comp;
  if (p > b.length) return NOT_THIS;
  if (p === b.length) return found(protocol, undefined); // no extensions (TLS <= 1.2)
  // extensions <8..2^16-1>
  if (p + 2 > b.length) return NOT_THIS;
  const extEnd = p + 2 + u16(b, p);
  if (extEnd !== b.length) return NOT_THIS;
  p += 2;
  let domain: string | undefined;
  let seenSni = false;
  while (p < extEnd) {
    if (p + 4 > extEnd) return NOT_THIS;
    const type = u16(b, p);
    const len = u16(b, p + 2);
    p += 4;
    if (p + len > extEnd) return NOT_THIS;
    if (type === EXT_SERVER_NAME && !seenSni) {
      seenSni = true;
      const r = parseServerName(b.subarray(p, p + len));
      if (r === null) return NOT_THIS;
      domain = r;
    }
    p += len;
  }
  return found(protocol, domain);
}

/**
 * Parses the server_name extension body (RFC 6066 3). Returns the first
 * host_name normalised (or `undefined` when invalid), or null when the
 * extension is structurally malformed.
 */
function parseServerName(e: Uint8Array): string | undefined | null {
  if (e.length === 0) return undefined; // server's empty echo; not sent by clients
  if (e.length < 2 || u16(e, 0) !== e.length - 2) return null;
  let p = 2;
  let name: string | undefined;
  let haveName = false;
  while (p < e.length) {
    if (p + 3 > e.length) return null;
    const type = e[p]!;
    const len = u16(e, p + 1);
    p += 3;
    if (p + len > e.length) return null;
    if (type === NAME_TYPE_HOST && !haveName) {
      haveName = true;
      // A name longer than 254 (253 + trailing dot) cannot be valid: skip decoding it.
      name = len > MAX_DOMAIN_LENGTH + 1
        ? undefined
        : normalizeDomain(latin1(e.subarray(p, p + len)));
    }
    p += len;
  }
  return name;
}
