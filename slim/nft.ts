/**
 * Renders the Slim Node's own nftables table (`inet` family, `forward` hook)
 * as one `nft -f -` script. The script replaces only our table, atomically:
 * no other table, chain or rule is touched.
 *
 * @module
 */

import type { RuleRecord } from "./model.ts";
import { formatPortSpec, PEER_IFACE_PREFIX, peerInterface, ValidationError } from "./validate.ts";

/** Validates an nftables table name (we create and replace only this table). */
export function parseTableName(field: string, v: unknown): string {
  if (typeof v !== "string" || !/^[A-Za-z][A-Za-z0-9_]{0,31}$/.test(v)) {
    throw new ValidationError(
      field,
      `${JSON.stringify(v)}: expected 1..32 of A-Z, a-z, 0-9, "_" starting with a letter`,
    );
  }
  return v;
}

/** Options of {@linkcode renderRuleset}. */
export interface RulesetOptions {
  /** Table name (already validated). */
  readonly table: string;
  /**
   * When true, traffic entering from a peer may leave only towards another
   * peer (the node is a relay, not an exit). Traffic not from a peer is never
   * matched.
   */
  readonly peersOnly: boolean;
}

const ANY_PEER = `"${PEER_IFACE_PREFIX}*"`;

/** One nft statement line per direction of a rule, with the direction's interfaces. */
function ruleDirections(r: RuleRecord): { iif: string; oif: string; line: string }[] {
  let match = "";
  if (r.protocol === "icmp") match = " meta l4proto { icmp, ipv6-icmp }";
  else if (r.protocol !== null && r.ports.length === 0) match = ` meta l4proto ${r.protocol}`;
  else if (r.protocol !== null) {
    match = ` ${r.protocol} dport { ${r.ports.map(formatPortSpec).join(", ")} }`;
  }
  const dir = (a: string, b: string) => {
    const iif = peerInterface(a), oif = peerInterface(b);
    return {
      iif,
      oif,
      line: `iifname "${iif}" oifname "${oif}"${match} counter accept comment "rule ${r.id}"`,
    };
  };
  const out = [dir(r.from, r.to)];
  if (r.bidirectional) out.push(dir(r.to, r.from));
  return out;
}

/** One nft statement line per direction of a rule. */
export function renderRuleLines(r: RuleRecord): string[] {
  return ruleDirections(r).map((d) => d.line);
}

/** True when a rule's replies need `ct state established,related accept`. */
export function needsConntrack(r: RuleRecord): boolean {
  return !r.bidirectional || r.ports.length > 0;
}

/**
 * The whole `nft -f -` script: creates our table if missing, deletes it and
 * recreates it with `rules`, all in one transaction.
 */
export function renderRuleset(rules: readonly RuleRecord[], opts: RulesetOptions): string {
  const t = opts.table;
  const lines = [
    `add table inet ${t}`,
    `delete table inet ${t}`,
    `table inet ${t} {`,
    `  chain forward {`,
    `    type filter hook forward priority filter; policy accept;`,
    `    iifname ${ANY_PEER} oifname ${ANY_PEER} jump between_peers`,
  ];
  if (opts.peersOnly) lines.push(`    iifname ${ANY_PEER} counter drop comment "peer to non-peer"`);
  lines.push(`  }`, `  chain between_peers {`);
  // Connection tracking costs every forwarded packet of the namespace, so
  // it is only switched on when a rule needs it: a one-way rule (replies)
  // or a port-restricted one (replies come from the port). A two-way rule
  // without ports accepts every packet of the pair anyway.
  if (rules.some(needsConntrack)) lines.push(`    ct state established,related accept`);
  // Dispatch on the (input, output) interface pair with one verdict-map
  // lookup instead of walking every rule: a linear chain costs every
  // forwarded packet a string compare per rule direction (measured: 200
  // rules tripled the CPU per forwarded UDP packet, see docs/slim.md). Each
  // pair jumps to its own chain holding that pair's rule lines (still
  // matching the interfaces, so a pair chain is correct on its own), which
  // keeps the per-rule counters and comments.
  const pairs = new Map<string, { iif: string; oif: string; lines: string[] }>();
  for (const r of rules) {
    for (const d of ruleDirections(r)) {
      const k = `${d.iif}\0${d.oif}`;
      const p = pairs.get(k) ?? { iif: d.iif, oif: d.oif, lines: [] };
      p.lines.push(d.line);
      pairs.set(k, p);
    }
  }
  const list = [...pairs.values()];
  if (list.length > 0) {
    const elems = list.map((p, i) => `"${p.iif}" . "${p.oif}" : jump pair_${i}`);
    lines.push(`    iifname . oifname vmap { ${elems.join(", ")} }`);
  }
  lines.push(`    counter drop comment "no forwarding rule"`, `  }`);
  list.forEach((p, i) => {
    lines.push(`  chain pair_${i} {`, ...p.lines.map((l) => `    ${l}`), `  }`);
  });
  lines.push(`}`, ``);
  return lines.join("\n");
}

/** A script deleting our table (creating it first so the delete cannot fail). */
export function renderDeleteTable(table: string): string {
  return `add table inet ${table}\ndelete table inet ${table}\n`;
}
