/**
 * Test helpers for rules/ and config/ tests (internal).
 *
 * @module
 */

import { parseIp } from "../core/ip.ts";
import type { FlowMeta } from "../core/types.ts";

/** Options of {@linkcode flow}: addresses as text. */
export interface FlowInit {
  dst?: string;
  dport?: number;
  src?: string;
  sport?: number;
  domain?: string;
  network?: "tcp" | "udp";
  inbound?: string;
  protocol?: "tls" | "http" | "quic";
  mark?: number;
  dscp?: number;
}

/** Builds a FlowMeta with sensible defaults (TCP 192.168.1.10:40000 → 93.184.216.34:443). */
export function flow(init: FlowInit = {}): FlowMeta {
  const addr = (s: string) => {
    const a = parseIp(s);
    if (!a) throw new TypeError(`bad test address ${s}`);
    return a;
  };
  const f: FlowMeta = {
    network: init.network ?? "tcp",
    inbound: init.inbound ?? "tproxy-in",
    source: { addr: addr(init.src ?? "192.168.1.10"), port: init.sport ?? 40000 },
    destination: { addr: addr(init.dst ?? "93.184.216.34"), port: init.dport ?? 443 },
  };
  if (init.domain !== undefined) f.domain = init.domain;
  if (init.protocol !== undefined) f.protocol = init.protocol;
  if (init.mark !== undefined) f.mark = init.mark;
  if (init.dscp !== undefined) f.dscp = init.dscp;
  return f;
}
