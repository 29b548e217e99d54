/**
 * IP address bytes <-> text, without allocation-heavy libraries on the hot
 * path. Config parsing uses `ipaddr.js` for validation; these helpers serve
 * the data plane and logs.
 *
 * @module
 */

import type { Endpoint } from "./types.ts";

/** Formats 4 or 16 address bytes as text (IPv6 in RFC 5952 short form). */
export function formatIp(addr: Uint8Array): string {
  if (addr.length === 4) return `${addr[0]}.${addr[1]}.${addr[2]}.${addr[3]}`;
  if (addr.length !== 16) throw new RangeError(`Cannot format IP: ${addr.length} bytes`);
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((addr[i]! << 8) | addr[i + 1]!);
  // Longest run of zero groups (length >= 2) becomes "::".
  let bestStart = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) [bestStart, bestLen] = [i, j - i];
    i = j;
  }
  const hex = (g: number[]) => g.map((x) => x.toString(16)).join(":");
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`;
}

/** Formats an endpoint as `1.2.3.4:80` or `[::1]:80`. */
export function formatEndpoint(e: Endpoint): string {
  const ip = formatIp(e.addr);
  return e.addr.length === 16 ? `[${ip}]:${e.port}` : `${ip}:${e.port}`;
}

/** Parses an IPv4 or IPv6 address (no zone, no brackets); null when invalid. */
export function parseIp(text: string): Uint8Array | null {
  if (text.includes(":")) return parseIpv6(text);
  return parseIpv4(text);
}

function parseIpv4(text: string): Uint8Array | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^\d{1,3}$/.test(p) || (p.length > 1 && p[0] === "0")) return null;
    const n = Number(p);
    if (n > 255) return null;
    out[i] = n;
  }
  return out;
}

function parseIpv6(text: string): Uint8Array | null {
  let tail4: Uint8Array | null = null;
  let s = text;
  const lastColon = s.lastIndexOf(":");
  if (s.indexOf(".", lastColon) >= 0) {
    tail4 = parseIpv4(s.slice(lastColon + 1));
    if (!tail4) return null;
    s = s.slice(0, lastColon + 1) + "0:0";
  }
  const halves = s.split("::");
  if (halves.length > 2) return null;
  const parse = (h: string): number[] | null => {
    if (h === "") return [];
    const gs = h.split(":");
    const out: number[] = [];
    for (const g of gs) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = parse(halves[0]!);
  const tail = halves.length === 2 ? parse(halves[1]!) : [];
  if (!head || !tail) return null;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return null;
  const groups = [
    ...head,
    ...new Array<number>(halves.length === 2 ? missing : 0).fill(0),
    ...tail,
  ];
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  if (tail4) out.set(tail4, 12);
  return out;
}

/** Parses `1.2.3.4:80` or `[::1]:80`; null when invalid. */
export function parseEndpoint(text: string): Endpoint | null {
  let host: string, portText: string;
  if (text.startsWith("[")) {
    const end = text.indexOf("]:");
    if (end < 0) return null;
    host = text.slice(1, end);
    portText = text.slice(end + 2);
  } else {
    const i = text.lastIndexOf(":");
    if (i < 0 || text.indexOf(":") !== i) return null;
    host = text.slice(0, i);
    portText = text.slice(i + 1);
  }
  if (!/^\d{1,5}$/.test(portText)) return null;
  const port = Number(portText);
  const addr = parseIp(host);
  if (!addr || port > 65535) return null;
  return { addr, port };
}

/** Returns the 4 IPv4 bytes of an IPv4-mapped IPv6 address, else the input. */
export function unmapIpv4(addr: Uint8Array): Uint8Array {
  if (addr.length !== 16) return addr;
  for (let i = 0; i < 10; i++) if (addr[i] !== 0) return addr;
  if (addr[10] !== 0xff || addr[11] !== 0xff) return addr;
  return addr.slice(12);
}
