/**
 * Field validators shared by the config loader and the HTTP API. Every
 * failure is a {@linkcode ValidationError} whose message starts with the
 * field path, e.g. `allowed_ips[0]: "10.0.0.0/33": prefix out of range`.
 *
 * @module
 */

import { parseIp } from "../core/ip.ts";

/** An input value that does not fit; `field` names where it is. */
export class ValidationError extends Error {
  override name = "ValidationError";
  /** Path of the offending field, e.g. `allowed_ips[0]`. */
  readonly field: string;

  constructor(field: string, message: string) {
    super(`${field}: ${message}`);
    this.field = field;
  }
}

/** Longest peer tag: `wg-peer-` (8) + 7 = 15, the kernel's IFNAMSIZ - 1. */
export const MAX_TAG_LENGTH = 7;
/** Prefix of every peer interface name. */
export const PEER_IFACE_PREFIX = "wg-peer-";

/** Returns the interface name of a peer tag. */
export function peerInterface(tag: string): string {
  return PEER_IFACE_PREFIX + tag;
}

/** A plain JSON object (not null, not an array). */
export type JsonObject = Record<string, unknown>;

/** Asserts `v` is a JSON object. */
export function expectObject(field: string, v: unknown): JsonObject {
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new ValidationError(field, "expected an object");
  }
  return v as JsonObject;
}

/** Throws on the first key of `obj` not in `known`. */
export function rejectUnknown(prefix: string, obj: JsonObject, known: readonly string[]): void {
  for (const k of Object.keys(obj)) {
    if (!known.includes(k)) {
      throw new ValidationError(prefix ? `${prefix}.${k}` : k, "unknown field");
    }
  }
}

/** Asserts a string of at most `max` characters. */
export function expectString(field: string, v: unknown, max = 256): string {
  if (typeof v !== "string") throw new ValidationError(field, "expected a string");
  if (v.length > max) throw new ValidationError(field, `longer than ${max} characters`);
  return v;
}

/** Asserts a boolean. */
export function expectBoolean(field: string, v: unknown): boolean {
  if (typeof v !== "boolean") throw new ValidationError(field, "expected true or false");
  return v;
}

/** Asserts an integer in `[min, max]`. */
export function expectInt(field: string, v: unknown, min: number, max: number): number {
  if (typeof v !== "number" || !Number.isInteger(v)) {
    throw new ValidationError(field, "expected an integer");
  }
  if (v < min || v > max) throw new ValidationError(field, `${v} is out of range ${min}..${max}`);
  return v;
}

/** Asserts an array of at most `max` items, each checked by `item`. */
export function expectArray<T>(
  field: string,
  v: unknown,
  max: number,
  item: (field: string, v: unknown) => T,
): T[] {
  if (!Array.isArray(v)) throw new ValidationError(field, "expected an array");
  if (v.length > max) throw new ValidationError(field, `more than ${max} items`);
  return v.map((x, i) => item(`${field}[${i}]`, x));
}

const TAG_RE = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;

/** Validates a peer tag: 1..7 of `[a-z0-9-]`, no leading/trailing dash. */
export function parseTag(field: string, v: unknown): string {
  const s = expectString(field, v, 64);
  if (s.length === 0 || s.length > MAX_TAG_LENGTH) {
    throw new ValidationError(
      field,
      `${
        JSON.stringify(s)
      }: must be 1..${MAX_TAG_LENGTH} characters so "${PEER_IFACE_PREFIX}<tag>" fits the kernel's 15-character interface name limit`,
    );
  }
  if (!TAG_RE.test(s)) {
    throw new ValidationError(
      field,
      `${JSON.stringify(s)}: only a-z, 0-9 and inner "-" are allowed`,
    );
  }
  return s;
}

/** Validates a WireGuard key: base64 of exactly 32 bytes. */
export function parseKey(field: string, v: unknown): string {
  const s = expectString(field, v, 64);
  if (!/^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/.test(s)) {
    throw new ValidationError(field, "expected a base64 WireGuard key (32 bytes, 44 characters)");
  }
  return s;
}

/** A parsed CIDR prefix. */
export interface Cidr {
  readonly addr: Uint8Array;
  readonly prefix: number;
}

/** Parses `ip/prefix` (or a bare IP, taken as a host prefix) into bytes. */
export function parseCidrValue(field: string, v: unknown): Cidr {
  const s = expectString(field, v, 64);
  const slash = s.indexOf("/");
  const ipText = slash < 0 ? s : s.slice(0, slash);
  const addr = parseIp(ipText);
  if (!addr) throw new ValidationError(field, `${JSON.stringify(s)}: not an IP address`);
  const max = addr.length * 8;
  let prefix = max;
  if (slash >= 0) {
    const p = s.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > max) {
      throw new ValidationError(field, `${JSON.stringify(s)}: prefix out of range`);
    }
    prefix = Number(p);
  }
  return { addr, prefix };
}

/** Validates a CIDR and returns its text with an explicit prefix. */
export function parseCidr(field: string, v: unknown): string {
  const { prefix } = parseCidrValue(field, v);
  const s = v as string;
  return s.includes("/") ? s : `${s}/${prefix}`;
}

/** Validates `host:port` / `[v6]:port` where host is an IP or a DNS name. */
export function parseHostPort(field: string, v: unknown): string {
  const s = expectString(field, v, 260);
  let host: string, port: string;
  if (s.startsWith("[")) {
    const end = s.indexOf("]:");
    if (end < 0) throw new ValidationError(field, `${JSON.stringify(s)}: expected "[ipv6]:port"`);
    host = s.slice(1, end);
    port = s.slice(end + 2);
    if (!host.includes(":") || !parseIp(host)) {
      throw new ValidationError(field, `${JSON.stringify(s)}: not an IPv6 address`);
    }
  } else {
    const i = s.lastIndexOf(":");
    if (i <= 0 || s.indexOf(":") !== i) {
      throw new ValidationError(field, `${JSON.stringify(s)}: expected "host:port"`);
    }
    host = s.slice(0, i);
    port = s.slice(i + 1);
    const hostOk = parseIp(host) !== null ||
      (host.length <= 253 &&
        /^(?=.*[a-zA-Z])[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/
          .test(host));
    if (!hostOk) {
      throw new ValidationError(field, `${JSON.stringify(s)}: not an IP address or host name`);
    }
  }
  if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
    throw new ValidationError(field, `${JSON.stringify(s)}: port out of range 1..65535`);
  }
  return s;
}

/** A port or an inclusive port range. */
export type PortSpec = number | { readonly from: number; readonly to: number };

/** Validates a port (`443`) or a range (`"8000-8100"`, or a port as text). */
export function parsePortSpec(field: string, v: unknown): PortSpec {
  if (typeof v === "number") return expectInt(field, v, 1, 65535);
  const s = expectString(field, v, 16);
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(s);
  if (!m) throw new ValidationError(field, `${JSON.stringify(s)}: expected a port or "from-to"`);
  const from = Number(m[1]);
  const to = m[2] === undefined ? from : Number(m[2]);
  if (from < 1 || to > 65535 || from > to) {
    throw new ValidationError(field, `${JSON.stringify(s)}: range out of order or out of 1..65535`);
  }
  return from === to ? from : { from, to };
}

/** Formats a port spec the way the API returns it (`443` or `"8000-8100"`). */
export function formatPortSpec(p: PortSpec): number | string {
  return typeof p === "number" ? p : `${p.from}-${p.to}`;
}
