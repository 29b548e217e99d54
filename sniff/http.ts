/**
 * HTTP/1.x sniffer: reads the Host header (or the authority of an
 * absolute-form / CONNECT request target) from the first bytes of a TCP
 * stream. Pure and bounded; never throws.
 *
 * @module
 */

import { latin1, MAX_DOMAIN_LENGTH, normalizeDomain } from "./domain.ts";
import { found, NEED_MORE, NOT_THIS, type SniffResult } from "./result.ts";

/** Default bound on the request line plus headers, in bytes. */
export const DEFAULT_MAX_HEADER_BYTES = 8 * 1024;

/** Options of {@linkcode sniffHttp}. */
export interface HttpSniffOptions {
  /**
   * Bytes of request line and headers looked at. A request line longer than
   * this is `not_this`; headers running past it without a Host line give
   * `found` without a domain. Default {@linkcode DEFAULT_MAX_HEADER_BYTES}.
   */
  maxHeaderBytes?: number;
}

/** Request methods recognised on the request line. */
export const HTTP_METHODS: readonly string[] = [
  "GET",
  "POST",
  "HEAD",
  "PUT",
  "DELETE",
  "OPTIONS",
  "PATCH",
  "CONNECT",
  "TRACE",
];
const LONGEST_METHOD = Math.max(...HTTP_METHODS.map((m) => m.length));
const SP = 0x20;
const LF = 0x0a;
const CR = 0x0d;

/**
 * Sniffs an HTTP/1.0 or HTTP/1.1 request. The server name is the authority
 * of an absolute-form or CONNECT target when present, else the first Host
 * header; its port is stripped. An IP literal (`1.2.3.4`, `[::1]:8080`) is
 * `found` without a domain: it names no host.
 *
 * @example
 * ```ts
 * sniffHttp(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: a.example:8080\r\n\r\n"));
 * // { status: "found", protocol: "http", domain: "a.example" }
 * ```
 */
export function sniffHttp(data: Uint8Array, opts: HttpSniffOptions = {}): SniffResult {
  const max = opts.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
  const method = matchMethod(data);
  if (method === null) return NOT_THIS;
  if (method === "") return NEED_MORE;

  const view = data.length > max ? data.subarray(0, max) : data;
  const lineEnd = view.indexOf(LF);
  if (lineEnd < 0) return data.length >= max ? NOT_THIS : NEED_MORE;
  const line = latin1(trimCr(view.subarray(0, lineEnd)));
  const target = requestTarget(line, method.length);
  if (target === null) return NOT_THIS;
  if (method === "CONNECT") return found("http", hostFromAuthority(target));
  const absolute = /^https?:\/\/([^/?#]*)/i.exec(target);
  if (absolute) return found("http", hostFromAuthority(absolute[1]!));

  let p = lineEnd + 1;
  for (;;) {
    const end = view.indexOf(LF, p);
    if (end < 0) return data.length >= max ? found("http", undefined) : NEED_MORE;
    const raw = trimCr(view.subarray(p, end));
    if (raw.length === 0) return found("http", undefined); // end of headers, no Host
    if (raw.length > 5 && isHostName(raw)) {
      return found("http", hostFromAuthority(latin1(raw.subarray(5)).trim()));
    }
    p = end + 1;
  }
}

/**
 * Matches the method at the start of `data`: the method when followed by a
 * space, "" while `data` is still a prefix of some "METHOD ", null otherwise.
 */
function matchMethod(data: Uint8Array): string | "" | null {
  const n = Math.min(data.length, LONGEST_METHOD + 1);
  let s = "";
  for (let i = 0; i < n; i++) {
    const c = data[i]!;
    if (c === SP) return HTTP_METHODS.includes(s) ? s : null;
    if (c < 0x41 || c > 0x5a) return null; // methods are upper-case letters
    s += String.fromCharCode(c);
  }
  if (n > LONGEST_METHOD) return null;
  return HTTP_METHODS.some((m) => m.startsWith(s)) ? "" : null;
}

function trimCr(b: Uint8Array): Uint8Array {
  return b.length > 0 && b[b.length - 1] === CR ? b.subarray(0, b.length - 1) : b;
}

/** Returns the request target of `METHOD SP target SP HTTP/1.x`, or null. */
function requestTarget(line: string, methodLen: number): string | null {
  const rest = line.slice(methodLen + 1);
  const sp = rest.indexOf(" ");
  if (sp <= 0) return null;
  const target = rest.slice(0, sp);
  const version = rest.slice(sp + 1);
  if (version !== "HTTP/1.1" && version !== "HTTP/1.0") return null;
  for (let i = 0; i < target.length; i++) {
    const c = target.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) return null;
  }
  return target;
}

/** True when the header line starts with `host:` (any case). */
function isHostName(raw: Uint8Array): boolean {
  return (raw[0]! | 0x20) === 0x68 && (raw[1]! | 0x20) === 0x6f && (raw[2]! | 0x20) === 0x73 &&
    (raw[3]! | 0x20) === 0x74 && raw[4] === 0x3a;
}

/**
 * Host of an authority (`[userinfo@]host[:port]`), normalised; undefined for
 * IP literals and invalid names.
 */
export function hostFromAuthority(authority: string): string | undefined {
  let a = authority;
  const at = a.lastIndexOf("@");
  if (at >= 0) a = a.slice(at + 1);
  if (a.startsWith("[")) return undefined; // IPv6 literal (with or without port)
  const colon = a.indexOf(":");
  if (colon >= 0) {
    const port = a.slice(colon + 1);
    if (!/^[0-9]{1,5}$/.test(port)) return undefined;
    a = a.slice(0, colon);
  }
  if (a.length > MAX_DOMAIN_LENGTH + 1) return undefined;
  return normalizeDomain(a);
}
