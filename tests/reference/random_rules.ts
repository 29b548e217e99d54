/**
 * Deterministic random rules and flows for the conformance test. Small
 * vocabularies (labels, prefixes, ports, marks) make rules and flows collide
 * often, so every field, IPv6, `invert`, nesting and rule sets get exercised
 * on both matching and non-matching flows.
 */

import type { FlowMeta, Network, SniffedProtocol } from "../../core/types.ts";
import { prng } from "../_prng.ts";

/** Helpers over one PRNG. */
export class Rand {
  readonly next: () => number;
  /** Seeded. */
  constructor(seed: number) {
    this.next = prng(seed);
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() < p;
  }
  /** A random element. */
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  /** 1..max random elements (may repeat). */
  some<T>(xs: readonly T[], max = 3): T[] {
    return Array.from({ length: 1 + this.int(max) }, () => this.pick(xs));
  }
}

const LABELS = ["a", "b", "x", "goo", "gle", "google", "cdn", "ab", "xa"];
const TLDS = ["com", "cn", "x.com", "net", "goo.com"];
/** Domain names of flows. */
export function randomDomain(r: Rand): string {
  const parts = Array.from({ length: r.int(3) }, () => r.pick(LABELS));
  return [...parts, r.pick(TLDS)].join(".");
}

const V4_NETS = [[10, 0], [10, 1], [192, 168], [8, 8], [1, 2], [172, 16], [127, 0], [169, 254]];
const V6_NETS = [[0x20, 0x01], [0x24, 0x0e], [0xfc, 0x00], [0xfe, 0x80], [0x00, 0x00]];

/** An address near the small set of networks rules use: 4 or 16 bytes. */
export function randomAddr(r: Rand, v6: boolean): Uint8Array {
  if (!v6) {
    const [a, b] = r.pick(V4_NETS);
    return Uint8Array.of(a!, b!, r.pick([0, 1, 2, 255]), r.pick([0, 1, 7, 128]));
  }
  const out = new Uint8Array(16);
  const [a, b] = r.pick(V6_NETS);
  out[0] = a!;
  out[1] = b!;
  out[2] = r.pick([0, 0x0d, 0xb8]);
  out[15] = r.pick([0, 1, 2, 0x80]);
  return out;
}

function v4Text(a: Uint8Array): string {
  return [...a].join(".");
}
function v6Text(a: Uint8Array): string {
  const g: string[] = [];
  for (let i = 0; i < 16; i += 2) g.push(((a[i]! << 8) | a[i + 1]!).toString(16));
  return g.join(":");
}

/** A CIDR string around a random address. */
export function randomCidr(r: Rand): string {
  const v6 = r.chance(0.35);
  const a = randomAddr(r, v6);
  if (!v6) return `${v4Text(a)}/${r.pick([0, 8, 12, 16, 24, 31, 32])}`;
  if (r.chance(0.1)) return `::ffff:${v4Text(randomAddr(r, false))}/${r.pick([104, 112, 128])}`;
  return `${v6Text(a)}/${r.pick([0, 7, 10, 16, 32, 64, 127, 128])}`;
}

const PORTS = [22, 53, 80, 443, 1000, 1500, 2000, 8080, 65535, 0];
const RANGES = ["1000:2000", ":100", "8000:", "443:443", "50:60"];
const MARKS: (string | number)[] = [
  256,
  "0x100/0xff00",
  "0x1",
  "0x200/0x200",
  0,
  // The high bit: marks are unsigned 32-bit.
  "0x80000100",
  "0x80000000/0x80000000",
  "0x10100/0x1ffff",
];
const COUNTRIES = ["cn", "us", "jp", "private"];
const NETS: Network[] = ["tcp", "udp"];
const PROTOS: SniffedProtocol[] = ["tls", "http", "quic"];
const INBOUNDS = ["in-a", "in-b"];

/** Fake GeoIP used by both sides: depends only on the address bytes. */
export function fakeCountry(addr: Uint8Array): string | null {
  return [null, "cn", "us", "jp"][(addr[addr.length - 1]! + addr[0]!) % 4] ?? null;
}

type Json = Record<string, unknown>;

/** A default rule's match fields (JSON, as a user would write them). */
export function randomDefaultRule(r: Rand, ruleSetTags: readonly string[], headless = false): Json {
  const o: Json = {};
  const fields = headless
    ? [
      "domain",
      "domain_suffix",
      "domain_keyword",
      "domain_regex",
      "ip_cidr",
      "source_ip_cidr",
      "port",
      "port_range",
      "source_port",
      "source_port_range",
      "network",
    ]
    : [
      "domain",
      "domain_suffix",
      "domain_keyword",
      "domain_regex",
      "geoip",
      "ip_cidr",
      "ip_is_private",
      "port",
      "port_range",
      "source_geoip",
      "source_ip_cidr",
      "source_ip_is_private",
      "source_port",
      "source_port_range",
      "network",
      "inbound",
      "protocol",
      "fwmark",
      "dscp",
      "ip_version",
      "rule_set",
    ];
  const n = r.chance(0.02) ? 0 : 1 + r.int(3);
  for (let i = 0; i < n; i++) {
    const f = r.pick(fields);
    switch (f) {
      case "domain":
        o[f] = r.some(["x.com", "a.x.com", "google.com", "goo.com", "cdn.cn", "a.b.net"]);
        break;
      case "domain_suffix":
        o[f] = r.some(["x.com", ".x.com", "com", ".cn", "google.com", "goo.com", ".b.net", "a"]);
        break;
      case "domain_keyword":
        o[f] = r.some(["goo", "gle", "x", "cdn", "a.b", "oo"]);
        break;
      case "domain_regex":
        o[f] = r.some(["^a\\.", "goo+", "\\.cn$", "^[a-c]+\\.x\\.com$"]);
        break;
      case "geoip":
      case "source_geoip":
        o[f] = r.some(COUNTRIES, 2);
        break;
      case "ip_cidr":
      case "source_ip_cidr":
        o[f] = Array.from({ length: 1 + r.int(3) }, () => randomCidr(r));
        break;
      case "ip_is_private":
      case "source_ip_is_private":
        o[f] = r.chance(0.8);
        break;
      case "port":
      case "source_port":
        o[f] = r.chance(0.3) ? r.pick(PORTS) : r.some(PORTS);
        break;
      case "port_range":
      case "source_port_range":
        o[f] = r.some(RANGES, 2);
        break;
      case "network":
        o[f] = r.chance(0.5) ? r.pick(NETS) : r.some(NETS, 2);
        break;
      case "inbound":
        o[f] = r.some(INBOUNDS, 2);
        break;
      case "protocol":
        o[f] = r.some(PROTOS, 2);
        break;
      case "fwmark":
        o[f] = r.chance(0.3) ? r.pick(MARKS) : r.some(MARKS, 2);
        break;
      case "dscp":
        o[f] = r.some([0, 10, 46, 63], 2);
        break;
      case "ip_version":
        o[f] = r.pick([4, 6]);
        break;
      case "rule_set":
        if (ruleSetTags.length) o[f] = r.some(ruleSetTags, 2);
        break;
    }
  }
  if (r.chance(0.08)) o.invert = true;
  return o;
}

/** A rule (default or logical, nested up to `depth`). */
export function randomRule(
  r: Rand,
  tags: readonly string[],
  depth: number,
  headless = false,
): Json {
  if (depth > 0 && r.chance(0.2)) {
    const rules = Array.from(
      { length: 1 + r.int(3) },
      () => randomRule(r, tags, depth - 1, headless),
    );
    const o: Json = { type: "logical", mode: r.pick(["and", "or"]), rules };
    if (r.chance(0.2)) o.invert = true;
    return o;
  }
  return randomDefaultRule(r, tags, headless);
}

/** A random config with rule sets (inline) and 1..maxRules route rules. */
export function randomConfig(r: Rand, maxRules: number): Json {
  const tags = r.chance(0.4) ? ["set-a", "set-b"].slice(0, 1 + r.int(2)) : [];
  const rule_set = tags.map((tag) => ({
    type: "inline",
    tag,
    rules: Array.from({ length: 1 + r.int(3) }, () => randomRule(r, [], 2, true)),
  }));
  const rules = Array.from({ length: 1 + r.int(maxRules) }, () => {
    const rule = randomRule(r, tags, 2);
    return r.chance(0.1)
      ? { ...rule, action: "reject" }
      : { ...rule, outbound: r.pick(["direct", "proxy", "block"]) };
  });
  return {
    inbounds: INBOUNDS.map((tag, i) => ({ type: "tproxy", tag, listen_port: 7000 + i })),
    outbounds: [
      { type: "direct", tag: "direct" },
      { type: "socks", tag: "proxy", server: "127.0.0.1", server_port: 1080 },
      { type: "block", tag: "block" },
    ],
    route: { geoip: { path: "fake.mmdb" }, rule_set, rules, final: "direct" },
  };
}

/** A random flow over the same vocabularies. */
export function randomFlow(r: Rand): FlowMeta {
  const v6 = r.chance(0.35);
  const flow: FlowMeta = {
    network: r.pick(NETS),
    inbound: r.pick(INBOUNDS),
    source: { addr: randomAddr(r, v6), port: r.pick(PORTS) },
    destination: { addr: randomAddr(r, v6), port: r.chance(0.3) ? r.int(65536) : r.pick(PORTS) },
  };
  if (r.chance(0.75)) flow.domain = r.chance(0.05) ? "" : randomDomain(r);
  if (r.chance(0.7)) flow.protocol = r.pick(PROTOS);
  if (r.chance(0.8)) {
    flow.mark = r.pick([0, 0x100, 0x1ff, 0x201, 1, 256, 0x80000100, 0x80010100, 0x10100]);
  }
  if (r.chance(0.8)) flow.dscp = r.pick([0, 10, 46, 63, 5]);
  return flow;
}
