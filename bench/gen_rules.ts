/**
 * Deterministic generator of a large, realistic-looking rule set for the
 * rule-engine benches: domain rules (suffix / exact / keyword mix), CIDR
 * rules (IPv4 + IPv6), GeoIP rules, port rules and logical rules, and a
 * matching mix of flows.
 *
 * @module
 */

import type { FlowMeta } from "../core/types.ts";
import { prng } from "../tests/_prng.ts";

/** Sizes of the generated set. */
export interface GenOptions {
  /** Rules with domain items (default 100,000). */
  domainRules?: number;
  /** CIDR prefixes in total, 10 per rule (default 20,000). */
  cidrs?: number;
  /** Port rules + logical rules (default 200). */
  portAndLogical?: number;
  /** GeoIP rules (default 4). */
  geoipRules?: number;
  seed?: number;
}

const TLDS = ["com", "net", "org", "cn", "io", "co.uk", "de", "jp", "ru", "info"];
const SYL = ["ka", "lo", "mi", "ne", "zu", "ta", "ri", "po", "sa", "vo", "xe", "qu", "bo", "de"];
const OUTBOUNDS = ["direct", "proxy", "wg-us", "block"];

/** The generated config plus flows to match against it. */
export interface Generated {
  config: Record<string, unknown>;
  /** Domains that rules match exactly or by suffix (for hit flows). */
  knownDomains: string[];
  rand: () => number;
}

/** Builds the config JSON (as an object) for `opts`. */
export function generateConfig(opts: GenOptions = {}): Generated {
  const rand = prng(opts.seed ?? 42);
  const int = (n: number) => Math.floor(rand() * n);
  const word = () => Array.from({ length: 2 + int(3) }, () => SYL[int(SYL.length)]).join("");
  const domain = () => `${word()}${int(1000)}.${TLDS[int(TLDS.length)]}`;
  const nDomain = opts.domainRules ?? 100_000;
  const nCidr = opts.cidrs ?? 20_000;
  const nPort = opts.portAndLogical ?? 200;
  const nGeo = opts.geoipRules ?? 4;
  const knownDomains: string[] = [];
  const domainRules: Record<string, unknown>[] = [];
  for (let i = 0; i < nDomain; i++) {
    const r = rand();
    const outbound = OUTBOUNDS[int(OUTBOUNDS.length)];
    if (r < 0.75) {
      const d = domain();
      knownDomains.push(d);
      domainRules.push({ domain_suffix: [d], outbound });
    } else if (r < 0.99) {
      const d = `www.${domain()}`;
      knownDomains.push(d);
      domainRules.push({ domain: [d], outbound });
    } else {
      domainRules.push({ domain_keyword: [word() + word()], outbound });
    }
  }
  const cidrRules: Record<string, unknown>[] = [];
  for (let i = 0; i < nCidr / 10; i++) {
    const ip_cidr: string[] = [];
    for (let j = 0; j < 10; j++) {
      if (rand() < 0.6) {
        ip_cidr.push(`${1 + int(222)}.${int(256)}.${int(256)}.0/${16 + int(9)}`);
      } else {
        const h = () => int(0x10000).toString(16);
        ip_cidr.push(
          `2${int(16).toString(16)}${int(256).toString(16)}:${h()}:${h()}::/${32 + int(17)}`,
        );
      }
    }
    cidrRules.push({ ip_cidr, outbound: OUTBOUNDS[int(OUTBOUNDS.length)] });
  }
  const other: Record<string, unknown>[] = [];
  for (let i = 0; i < nPort; i++) {
    if (i % 2 === 0) {
      other.push({
        port: [1000 + int(60000), 1000 + int(60000)],
        port_range: [`${20000 + i}:${20100 + i}`],
        network: i % 4 === 0 ? "udp" : "tcp",
        outbound: OUTBOUNDS[int(OUTBOUNDS.length)],
      });
    } else {
      other.push({
        type: "logical",
        mode: i % 3 === 0 ? "or" : "and",
        rules: [
          { port: [2000 + int(60000)] },
          { source_ip_cidr: [`192.168.${int(256)}.0/24`], network: "udp" },
        ],
        outbound: OUTBOUNDS[int(OUTBOUNDS.length)],
      });
    }
  }
  const geo = ["cn", "ru", "ir", "kp", "jp", "de"].slice(0, nGeo).map((c) => ({
    geoip: [c],
    outbound: "direct",
  }));
  // Order: a few specific rules first, then the bulk, as real configs do.
  const rules = [
    ...other.slice(0, nPort / 2),
    ...domainRules.slice(0, nDomain / 2),
    ...cidrRules,
    ...domainRules.slice(nDomain / 2),
    ...geo,
    ...other.slice(nPort / 2),
    { ip_is_private: true, outbound: "direct" },
  ];
  const config = {
    outbounds: OUTBOUNDS.map((tag) =>
      tag === "block"
        ? { type: "block", tag }
        : tag === "proxy"
        ? { type: "socks", tag, server: "127.0.0.1", server_port: 1080 }
        : { type: "direct", tag }
    ),
    route: { geoip: { path: "country.mmdb" }, rules, final: "proxy" },
  };
  return { config, knownDomains, rand };
}

/** Flow mix: 40% known domains (some as subdomains), 30% unknown domains, 30% IP only. */
export function generateFlows(g: Generated, n: number): FlowMeta[] {
  const { rand, knownDomains } = g;
  const int = (k: number) => Math.floor(rand() * k);
  const flows: FlowMeta[] = [];
  for (let i = 0; i < n; i++) {
    const v6 = rand() < 0.3;
    const dst = v6
      ? Uint8Array.from({ length: 16 }, (_, j) => j === 0 ? 0x20 + int(16) : int(256))
      : Uint8Array.of(1 + int(222), int(256), int(256), int(256));
    const src = v6
      ? Uint8Array.of(0xfd, 0, ...Array.from({ length: 14 }, () => int(256)))
      : Uint8Array.of(192, 168, int(256), 2 + int(250));
    const f: FlowMeta = {
      network: rand() < 0.85 ? "tcp" : "udp",
      inbound: "tproxy-in",
      source: { addr: src, port: 30000 + int(30000) },
      destination: { addr: dst, port: rand() < 0.8 ? 443 : 1 + int(65535) },
      mark: 0,
    };
    const r = rand();
    if (r < 0.4) {
      const d = knownDomains[int(knownDomains.length)]!;
      f.domain = rand() < 0.5 ? `cdn${int(10)}.${d}` : d;
      f.protocol = "tls";
    } else if (r < 0.7) {
      f.domain = `${int(1e6).toString(36)}.example${int(100)}.com`;
      f.protocol = "tls";
    }
    flows.push(f);
  }
  return flows;
}
