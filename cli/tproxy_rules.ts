/**
 * `router tproxy-rules`: the kernel half of the Full Node's TPROXY inbound.
 *
 * Renders an nftables ruleset in our own table (default `inet vpn_router`)
 * plus the policy-routing rule and `local default dev lo` route that deliver
 * marked packets to the local listener, and applies or removes them
 * idempotently without touching anything else on the box:
 *
 * - nft: one `nft -f -` transaction `table X {}` + `delete table X` +
 *   `table X { ... }` replaces only our table (never `flush ruleset`).
 * - ip rule / ip route: added only when no equivalent entry exists, tagged
 *   with our routing protocol number (`protocol`/`proto`, default 250), and
 *   removed only when they carry that tag, so a box whose own DIVERT setup
 *   already has a rule of the same shape keeps it after `--remove`.
 * - The TPROXY mark is a bit ORed into the box's mark (`meta mark set meta
 *   mark | 0x1`), matched as `fwmark 0x1/0x1`, so the box's DSCP/ECMP mark
 *   bits reach the router's `fwmark` rules (see {@linkcode policyRules}).
 *
 * Facts measured in a network namespace (kernel 6.18, nft 1.0.6):
 * - `tproxy ip to 127.0.0.1:P` / `tproxy ip6 to [::1]:P` steer forwarded
 *   TCP and UDP to a listener on loopback (or on `::`, dual-stack) without
 *   `net.ipv4.conf.*.route_localnet`: the packet keeps its original
 *   destination, only the socket lookup uses the loopback address.
 * - `net.ipv4.tcp_fwmark_accept=1` gives the accepted socket the SYN's mark
 *   (TPROXY bit | box bits, v4 and v6). With a bare `fwmark MARK lookup
 *   TABLE` rule its SYN-ACK is then routed into `local default dev lo` and
 *   never leaves; the `iif lo fwmark T/T lookup main` guard (locally
 *   generated packets have iif lo) sends it to the client, even when a box
 *   rule routes the box's mark bits into a table that would blackhole it.
 * - A masked `fwmark 0x1/0x1` rule alone also catches the router's own
 *   outbound sockets (default_mark 0xff has bit 0): connect() fails with
 *   ENETUNREACH. The `iif lo fwmark S/S goto P+1` rule skips them past ours.
 * - Strict `rp_filter` did not drop steered traffic on a symmetric path;
 *   loose (2) is still advised where routes are asymmetric.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { formatIp, parseIp } from "../core/ip.ts";

/** Which transport protocols are steered. */
export type TproxyNetwork = "tcp" | "udp" | "both";
/** Which address families are steered. */
export type TproxyFamily = "ipv4" | "ipv6" | "both";

/** Options of {@linkcode renderTproxyRules} (see {@linkcode defaultTproxyOptions}). */
export interface TproxyRulesOptions {
  /** Local TPROXY listener port. */
  port: number;
  /** Mark bits ORed into steered packets; the policy rule matches `fwmark mark/mark`. Non-zero. */
  mark: number;
  /** Routing table holding `local default dev lo`. */
  table: number;
  /** Packets whose mark has all these bits set are skipped (router's own sockets); 0 = off. */
  skipMark: number;
  /** Ingress interfaces to steer; empty = every interface except `lo`. */
  interfaces: string[];
  /** Extra destination CIDRs never steered (added to the built-in bypass list). */
  bypass: string[];
  /** Transport protocols to steer. */
  network: TproxyNetwork;
  /** Address families to steer. */
  family: TproxyFamily;
  /** nftables table name (family `inet`). */
  tableName: string;
  /** `ip rule` preference P of the fwmark rule (guards at P-2, P-1; goto target P+1). */
  rulePriority: number;
  /** Routing protocol number tagging the rule and route we own. */
  proto: number;
  /** IPv4 listener address for `tproxy ip to`. */
  listen4: string;
  /** IPv6 listener address for `tproxy ip6 to`. */
  listen6: string;
}

/** The defaults of `router tproxy-rules`. */
export function defaultTproxyOptions(): TproxyRulesOptions {
  return {
    port: 7893,
    mark: 1,
    table: 100,
    skipMark: 255,
    interfaces: [],
    bypass: [],
    network: "both",
    family: "both",
    tableName: "vpn_router",
    rulePriority: 100,
    proto: 250,
    listen4: "127.0.0.1",
    listen6: "::1",
  };
}

/** A sysctl the TPROXY path wants, with the reason. */
export interface SysctlHint {
  key: string;
  value: string;
  /** True when steering fails without it (false: advice). */
  required: boolean;
  why: string;
}

/** Output of {@linkcode renderTproxyRules}. */
export interface TproxyRules {
  /** The `nft -f -` transaction replacing our table. */
  nft: string;
  /** `ip rule add` / `ip route add` commands (argv arrays) for each family. */
  ipRules: string[][];
  /** Sysctls the path relies on (applied only with `setSysctls`). */
  sysctls: SysctlHint[];
}

/** Built-in IPv4 bypass: "this" network, loopback, link-local, multicast, broadcast. */
export const DEFAULT_BYPASS_V4 = [
  "0.0.0.0/8",
  "127.0.0.0/8",
  "169.254.0.0/16",
  "224.0.0.0/4",
  "255.255.255.255/32",
];
/** Built-in IPv6 bypass: unspecified, loopback, link-local, multicast. */
export const DEFAULT_BYPASS_V6 = ["::/128", "::1/128", "fe80::/10", "ff00::/8"];

const IFNAME_RE = /^[A-Za-z0-9_.:@+-]{1,15}\*?$/;
const TABLE_NAME_RE = /^[A-Za-z][A-Za-z0-9_]{0,31}$/;

function hex(n: number): string {
  return "0x" + n.toString(16).padStart(8, "0");
}

/** Parses `a.b.c.d/n` or `x::/n`; returns [family, normalized] or throws naming the input. */
export function parseCidr(text: string, field: string): ["ipv4" | "ipv6", string] {
  const slash = text.indexOf("/");
  const host = slash < 0 ? text : text.slice(0, slash);
  const addr = parseIp(host);
  if (!addr) throw new TypeError(`${field}: "${text}": not an IP address or CIDR`);
  const max = addr.length === 4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > max) {
      throw new RangeError(`${field}: "${text}": prefix out of range`);
    }
    prefix = Number(p);
  }
  // Clear host bits so nft accepts it (10.1.2.3/8 -> 10.0.0.0/8).
  for (let i = 0; i < addr.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - 8 * i));
    addr[i] = addr[i]! & ((0xff << (8 - keep)) & 0xff);
  }
  return [addr.length === 4 ? "ipv4" : "ipv6", `${formatIp(addr)}/${prefix}`];
}

/** Validates options; throws a `TypeError`/`RangeError` naming the field. */
export function validateTproxyOptions(o: TproxyRulesOptions): void {
  const int = (name: string, v: number, min: number, max: number) => {
    if (!Number.isInteger(v) || v < min || v > max) {
      throw new RangeError(`${name}: ${v}: must be an integer in ${min}..${max}`);
    }
  };
  int("port", o.port, 1, 65535);
  int("mark", o.mark, 1, 0xffffffff);
  int("table", o.table, 1, 0xfffffffe);
  int("skip_mark", o.skipMark, 0, 0xffffffff);
  int("rule_priority", o.rulePriority, 3, 32764);
  int("proto", o.proto, 5, 255);
  if ([253, 254, 255].includes(o.table)) {
    throw new RangeError(`table: ${o.table}: reserved (default/main/local)`);
  }
  if (o.skipMark !== 0 && (o.mark & o.skipMark) >>> 0 === o.skipMark) {
    throw new RangeError(`mark: ${hex(o.mark)} contains every bit of skip_mark ${hex(o.skipMark)}`);
  }
  if (!TABLE_NAME_RE.test(o.tableName)) {
    throw new TypeError(`table_name: "${o.tableName}": must match ${TABLE_NAME_RE.source}`);
  }
  o.interfaces.forEach((n, i) => {
    if (!IFNAME_RE.test(n)) throw new TypeError(`interfaces[${i}]: "${n}": not an interface name`);
  });
  o.bypass.forEach((c, i) => parseCidr(c, `bypass[${i}]`));
  if (!["tcp", "udp", "both"].includes(o.network)) {
    throw new TypeError(`network: "${o.network}": must be tcp, udp or both`);
  }
  if (!["ipv4", "ipv6", "both"].includes(o.family)) {
    throw new TypeError(`family: "${o.family}": must be ipv4, ipv6 or both`);
  }
  if (parseIp(o.listen4)?.length !== 4) {
    throw new TypeError(`listen4: "${o.listen4}": not an IPv4 address`);
  }
  if (parseIp(o.listen6)?.length !== 16) {
    throw new TypeError(`listen6: "${o.listen6}": not an IPv6 address`);
  }
}

/** The families enabled by `family`. */
export function familiesOf(f: TproxyFamily): ("ipv4" | "ipv6")[] {
  return f === "both" ? ["ipv4", "ipv6"] : [f];
}

function protocolsOf(n: TproxyNetwork): ("tcp" | "udp")[] {
  return n === "both" ? ["tcp", "udp"] : [n];
}

/** Names of the named counters the ruleset defines (read them with `nft list counter`). */
export function counterNames(o: TproxyRulesOptions): string[] {
  const names = ["skipped", "bypassed"];
  if (o.network !== "udp") names.push("divert");
  for (const p of protocolsOf(o.network)) {
    for (const f of familiesOf(o.family)) names.push(`tproxy_${p}${f === "ipv4" ? 4 : 6}`);
  }
  return names;
}

/** What one of our `ip rule`s is for (see {@linkcode policyRules}). */
export type PolicyRuleRole = "target" | "skip" | "guard" | "tproxy";

/** One `ip rule` we own, in the order {@linkcode applyTproxyRules} adds them. */
export interface PolicyRule {
  role: PolicyRuleRole;
  /** argv after `ip -4|-6 rule add` / `del`: pref, selectors, action, protocol. */
  args: string[];
  /** True when an `ip -j rule show` entry has this rule's pref, selectors and action. */
  matches(r: IpRuleJson): boolean;
}

function sameMark(r: IpRuleJson, value: number, mask: number): boolean {
  if (r.fwmark === undefined || Number(r.fwmark) !== value) return false;
  return r.fwmask === undefined ? mask === 0xffffffff : Number(r.fwmask) === mask;
}

/**
 * The policy rules of one family (P = `rulePriority`, T = `mark`, S =
 * `skipMark`), measured in network namespaces (see docs/fwmark.md):
 *
 * ```
 * P+1  nop                                  target of the goto (only when S != 0)
 * P-2  iif lo fwmark S/S goto P+1           the router's own sockets (default_mark): as if our rules were absent
 * P-1  iif lo fwmark T/T lookup main        replies of proxied flows (they carry T with tcp_fwmark_accept=1)
 * P    fwmark T/T lookup TABLE              steered packets, whatever other mark bits the box set
 * ```
 *
 * `iif lo` matches locally generated packets only. Without P-1, a SYN-ACK
 * of an accepted socket that inherited T (`tcp_fwmark_accept=1`) is routed
 * by P into `local default dev lo` and never leaves; through main it goes
 * back to the client even when the box routes its own mark bits elsewhere.
 */
export function policyRules(o: TproxyRulesOptions): PolicyRule[] {
  const P = o.rulePriority, T = o.mark, S = o.skipMark, proto = ["protocol", String(o.proto)];
  const pref = (n: number) => ["pref", String(n)];
  const out: PolicyRule[] = [];
  if (S !== 0) {
    out.push({
      role: "target",
      args: [...pref(P + 1), "nop", ...proto],
      matches: (r) => r.priority === P + 1 && "nop" in r && r.fwmark === undefined && !r.iif,
    });
    out.push({
      role: "skip",
      args: [
        ...pref(P - 2),
        "iif",
        "lo",
        "fwmark",
        `${hex(S)}/${hex(S)}`,
        "goto",
        String(P + 1),
        ...proto,
      ],
      matches: (r) =>
        r.priority === P - 2 && r.iif === "lo" && sameMark(r, S, S) && r.goto === P + 1,
    });
  }
  out.push({
    role: "guard",
    args: [
      ...pref(P - 1),
      "iif",
      "lo",
      "fwmark",
      `${hex(T)}/${hex(T)}`,
      "lookup",
      "main",
      ...proto,
    ],
    matches: (r) =>
      r.priority === P - 1 && r.iif === "lo" && sameMark(r, T, T) && r.table === "main",
  });
  out.push({
    role: "tproxy",
    args: [...pref(P), "fwmark", `${hex(T)}/${hex(T)}`, "lookup", String(o.table), ...proto],
    matches: (r) => r.priority === P && !r.iif && sameMark(r, T, T) && r.table === String(o.table),
  });
  return out;
}

/**
 * A rule of an earlier version we tagged (`fwmark T lookup TABLE`, full
 * mask, our protocol): replaced by {@linkcode policyRules} on apply.
 */
export function isLegacyRule(r: IpRuleJson, o: TproxyRulesOptions): boolean {
  return r.protocol === String(o.proto) && !r.iif && sameMark(r, o.mark, 0xffffffff) &&
    r.table === String(o.table) && o.mark !== 0xffffffff;
}

/** The `ip rule` / `ip route` add argv for one family (without the ownership checks). */
export function policyRoutingCommands(o: TproxyRulesOptions, f: "ipv4" | "ipv6"): string[][] {
  const fam = f === "ipv4" ? "-4" : "-6";
  const dst = f === "ipv4" ? "0.0.0.0/0" : "::/0";
  return [
    ...policyRules(o).map((p) => ["ip", fam, "rule", "add", ...p.args]),
    [
      "ip",
      fam,
      "route",
      "add",
      "local",
      dst,
      "dev",
      "lo",
      "table",
      String(o.table),
      "proto",
      String(o.proto),
    ],
  ];
}

/** Sysctl advice for the chosen families (measured, see the module doc). */
export function sysctlHints(o: TproxyRulesOptions): SysctlHint[] {
  const out: SysctlHint[] = [];
  const fams = familiesOf(o.family);
  if (fams.includes("ipv4")) {
    out.push({
      key: "net.ipv4.ip_forward",
      value: "1",
      required: true,
      why: "the box routes the traffic it does not proxy",
    });
  }
  if (fams.includes("ipv6")) {
    out.push({
      key: "net.ipv6.conf.all.forwarding",
      value: "1",
      required: true,
      why: "the box routes IPv6 traffic it does not proxy",
    });
  }
  if (o.network !== "udp") {
    out.push({
      key: "net.ipv4.tcp_fwmark_accept",
      value: "1",
      required: false,
      why: "accepted TCP sockets carry the SYN's mark, so route rules can match the box's " +
        "mark bits (safe with the iif lo guard rule)",
    });
  }
  return out;
}

/** Renders the nft transaction, ip commands and sysctl hints (pure; validates first). */
export function renderTproxyRules(o: TproxyRulesOptions): TproxyRules {
  validateTproxyOptions(o);
  const fams = familiesOf(o.family);
  const protos = protocolsOf(o.network);
  const t = `inet ${o.tableName}`;
  const v4 = [...DEFAULT_BYPASS_V4], v6 = [...DEFAULT_BYPASS_V6];
  o.bypass.forEach((c, i) => {
    const [fam, norm] = parseCidr(c, `bypass[${i}]`);
    (fam === "ipv4" ? v4 : v6).push(norm);
  });
  const L: string[] = [];
  L.push(`table ${t} {}`, `delete table ${t}`, `table ${t} {`);
  for (const c of counterNames(o)) L.push(`  counter ${c} {}`);
  if (fams.includes("ipv4")) {
    L.push(
      `  set bypass4 { type ipv4_addr; flags interval; auto-merge; elements = { ${
        v4.join(", ")
      } }; }`,
    );
  }
  if (fams.includes("ipv6")) {
    L.push(
      `  set bypass6 { type ipv6_addr; flags interval; auto-merge; elements = { ${
        v6.join(", ")
      } }; }`,
    );
  }
  L.push(`  chain prerouting {`);
  L.push(`    type filter hook prerouting priority mangle; policy accept;`);
  if (o.interfaces.length > 0) {
    L.push(`    iifname != { ${o.interfaces.map((n) => `"${n}"`).join(", ")} } return`);
  } else {
    L.push(`    iifname "lo" return`);
  }
  if (o.skipMark !== 0) {
    L.push(
      `    meta mark & ${hex(o.skipMark)} == ${hex(o.skipMark)} counter name "skipped" return`,
    );
  }
  L.push(
    `    fib daddr type { local, broadcast, anycast, multicast } counter name "bypassed" return`,
  );
  if (fams.includes("ipv4")) L.push(`    ip daddr @bypass4 counter name "bypassed" return`);
  if (fams.includes("ipv6")) L.push(`    ip6 daddr @bypass6 counter name "bypassed" return`);
  // OR our bit into the mark instead of replacing it: the box's own mark
  // bits (DSCP, ECMP classes) survive for the router's fwmark rules.
  const mark = `meta mark | ${hex(o.mark)}`;
  if (protos.includes("tcp")) {
    // DIVERT: packets of an established proxied flow go to its socket
    // directly (TCP only: a UDP reply socket bound to the original
    // destination must not steal the client's next datagrams).
    const famMatch = o.family === "both" ? "" : `meta nfproto ${o.family} `;
    L.push(
      `    ${famMatch}meta l4proto tcp socket transparent 1 meta mark set ${mark} counter name "divert" accept`,
    );
  }
  for (const p of protos) {
    for (const f of fams) {
      const to = f === "ipv4" ? `ip to ${o.listen4}:${o.port}` : `ip6 to [${o.listen6}]:${o.port}`;
      const n = `tproxy_${p}${f === "ipv4" ? 4 : 6}`;
      L.push(
        `    meta nfproto ${f} meta l4proto ${p} tproxy ${to} meta mark set ${mark} counter name "${n}" accept`,
      );
    }
  }
  L.push(`  }`, `}`);
  const ipRules = fams.flatMap((f) => policyRoutingCommands(o, f));
  return { nft: L.join("\n") + "\n", ipRules, sysctls: sysctlHints(o) };
}

/** Result of running one command. */
export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Per-call options of a {@linkcode RunCommand}. */
export interface RunOptions {
  /** Written to the command's stdin. */
  stdin?: string;
  /** Run inside this network namespace (`ip netns exec NS ...`). */
  netns?: string;
}

/** Runs an argv (never through a shell); injectable so tests can fake it. */
export type RunCommand = (argv: readonly string[], opts?: RunOptions) => Promise<CommandResult>;

/** The real {@linkcode RunCommand}: `Deno.Command`, stdin piped, output captured. */
export const runCommand: RunCommand = async (argv, opts = {}) => {
  const full = opts.netns ? ["ip", "netns", "exec", opts.netns, ...argv] : [...argv];
  const [cmd, ...args] = full;
  if (!cmd) throw new TypeError("runCommand: empty argv");
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(cmd, {
      args,
      stdin: opts.stdin !== undefined ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      return { code: 127, stdout: "", stderr: `${cmd}: not found` };
    }
    throw e;
  }
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(opts.stdin));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
};

/** Context of apply/remove: where to run. */
export interface ApplyContext {
  /** Run every command inside this network namespace. */
  netns?: string;
  /** Also write the sysctl hints (`sysctl -w`). */
  setSysctls?: boolean;
}

/** A command failed; carries its argv and stderr. */
export class CommandError extends Error {
  override name = "CommandError";
  constructor(readonly argv: readonly string[], readonly result: CommandResult) {
    super(`${argv.join(" ")}: exit ${result.code}: ${result.stderr.trim()}`);
  }
}

async function must(
  run: RunCommand,
  argv: string[],
  opts: RunOptions,
): Promise<CommandResult> {
  const r = await run(argv, opts);
  if (r.code !== 0) throw new CommandError(argv, r);
  return r;
}

/** One entry of `ip -j rule show`. */
export interface IpRuleJson {
  priority?: number;
  fwmark?: string;
  fwmask?: string;
  iif?: string;
  table?: string;
  goto?: number;
  /** Present (null) on a `nop` rule. */
  nop?: null;
  protocol?: string;
}
/** One entry of `ip -j route show`. */
export interface IpRouteJson {
  type?: string;
  dst?: string;
  dev?: string;
  protocol?: string;
}

/** Parses `ip -j` output (empty = `[]`); throws naming `what`. */
export function parseJsonArray<T>(text: string, what: string): T[] {
  const v: unknown = JSON.parse(text.trim() === "" ? "[]" : text);
  if (!Array.isArray(v)) throw new TypeError(`${what}: expected a JSON array`);
  return v as T[];
}

/** `ip -j route show table T`; a table that does not exist yet is empty. */
export async function listRoutes(
  run: RunCommand,
  fam: string,
  table: number,
  ro: RunOptions,
): Promise<IpRouteJson[]> {
  const argv = ["ip", "-j", fam, "route", "show", "table", String(table)];
  const r = await run(argv, ro);
  if (r.code !== 0) {
    if (/table does not exist/i.test(r.stderr)) return [];
    throw new CommandError(argv, r);
  }
  return parseJsonArray(r.stdout, "ip route show");
}

/** The rules of {@linkcode policyRules} absent from `ip -j rule show` output (any owner counts). */
export function missingPolicyRules(
  rules: readonly IpRuleJson[],
  o: TproxyRulesOptions,
): PolicyRule[] {
  return policyRules(o).filter((p) => !rules.some((r) => p.matches(r)));
}

/** `local default dev lo` entries in `ip -j route show table T` output. */
export function matchingRoutes(routes: IpRouteJson[], proto?: number): IpRouteJson[] {
  return routes.filter((r) =>
    r.type === "local" && r.dst === "default" && r.dev === "lo" &&
    (proto === undefined || r.protocol === String(proto))
  );
}

function legacyDelete(fam: string, r: IpRuleJson, o: TproxyRulesOptions): string[] {
  return [
    "ip",
    fam,
    "rule",
    "del",
    "pref",
    String(r.priority),
    "fwmark",
    hex(o.mark),
    "lookup",
    String(o.table),
    "protocol",
    String(o.proto),
  ];
}

/** What apply/remove changed, for the CLI to print. */
export interface ApplyReport {
  actions: string[];
}

/**
 * Applies the ruleset and policy routing idempotently: replaces only our nft
 * table, adds the ip rule/route only when absent. Running it twice gives the
 * same state.
 */
export async function applyTproxyRules(
  o: TproxyRulesOptions,
  run: RunCommand = runCommand,
  ctx: ApplyContext = {},
): Promise<ApplyReport> {
  const rules = renderTproxyRules(o);
  const ro: RunOptions = ctx.netns ? { netns: ctx.netns } : {};
  const actions: string[] = [];
  await must(run, ["nft", "-f", "-"], { ...ro, stdin: rules.nft });
  actions.push(`nft: replaced table inet ${o.tableName}`);
  for (const f of familiesOf(o.family)) {
    const fam = f === "ipv4" ? "-4" : "-6";
    const routeAdd = policyRoutingCommands(o, f).at(-1)!;
    const shown = await must(run, ["ip", "-j", fam, "rule", "show"], ro);
    const current = parseJsonArray<IpRuleJson>(shown.stdout, "ip rule show");
    // Target and guards before the tproxy rule: no moment where the
    // router's own or reply traffic could match it unguarded.
    for (const p of missingPolicyRules(current, o)) {
      const argv = ["ip", fam, "rule", "add", ...p.args];
      await must(run, argv, ro);
      actions.push(argv.join(" "));
    }
    await deleteLegacyRules(run, ro, fam, current, o, actions);
    if (matchingRoutes(await listRoutes(run, fam, o.table, ro)).length === 0) {
      await must(run, routeAdd, ro);
      actions.push(routeAdd.join(" "));
    }
  }
  if (ctx.setSysctls) {
    for (const s of rules.sysctls) {
      await must(run, ["sysctl", "-qw", `${s.key}=${s.value}`], ro);
      actions.push(`sysctl -w ${s.key}=${s.value}`);
    }
  }
  return { actions };
}

/** Deletes the full-mask rules an older version added (see {@linkcode isLegacyRule}). */
async function deleteLegacyRules(
  run: RunCommand,
  ro: RunOptions,
  fam: string,
  current: readonly IpRuleJson[],
  o: TproxyRulesOptions,
  actions: string[],
): Promise<void> {
  for (const r of current.filter((r) => isLegacyRule(r, o))) {
    const argv = legacyDelete(fam, r, o);
    await must(run, argv, ro);
    actions.push(argv.join(" "));
  }
}

/**
 * Removes our nft table and the ip rules/routes tagged with our protocol
 * number; succeeds when nothing is there.
 */
export async function removeTproxyRules(
  o: TproxyRulesOptions,
  run: RunCommand = runCommand,
  ctx: ApplyContext = {},
): Promise<ApplyReport> {
  validateTproxyOptions(o);
  const ro: RunOptions = ctx.netns ? { netns: ctx.netns } : {};
  const actions: string[] = [];
  const t = `inet ${o.tableName}`;
  await must(run, ["nft", "-f", "-"], { ...ro, stdin: `table ${t} {}\ndelete table ${t}\n` });
  actions.push(`nft: deleted table ${t}`);
  for (const f of familiesOf(o.family)) {
    const fam = f === "ipv4" ? "-4" : "-6";
    const shown = await must(run, ["ip", "-j", fam, "rule", "show"], ro);
    const current = parseJsonArray<IpRuleJson>(shown.stdout, "ip rule show");
    // Reverse order: the tproxy rule goes first, its guards and target last.
    for (const p of policyRules(o).reverse()) {
      const ours = current.filter((r) => p.matches(r) && r.protocol === String(o.proto));
      for (let i = 0; i < ours.length; i++) {
        const argv = ["ip", fam, "rule", "del", ...p.args];
        await must(run, argv, ro);
        actions.push(argv.join(" "));
      }
    }
    await deleteLegacyRules(run, ro, fam, current, o, actions);
    if (matchingRoutes(await listRoutes(run, fam, o.table, ro), o.proto).length > 0) {
      const dst = f === "ipv4" ? "0.0.0.0/0" : "::/0";
      const argv = ["ip", fam, "route", "del", "local", dst, "dev", "lo", "table", String(o.table)];
      await must(run, argv, ro);
      actions.push(argv.join(" "));
    }
  }
  return { actions };
}

/** Parses a decimal or `0x` hex integer flag; throws naming the flag. */
export function parseIntFlag(name: string, text: string): number {
  if (!/^(0x[0-9a-fA-F]{1,8}|\d{1,10})$/.test(text)) {
    throw new TypeError(`--${name}: "${text}": not an integer`);
  }
  return Number(text);
}

function list(text: string | undefined): string[] {
  return text === undefined ? [] : text.split(",").map((s) => s.trim()).filter((s) => s !== "");
}

/** Parses `router tproxy-rules` flags into options (throws naming the flag). */
export function parseTproxyArgs(args: string[]): {
  opts: TproxyRulesOptions;
  mode: "print" | "apply" | "remove" | "help";
  netns?: string;
  sysctl: boolean;
} {
  const { values } = parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: {
      port: { type: "string" },
      mark: { type: "string" },
      table: { type: "string" },
      "skip-mark": { type: "string" },
      interfaces: { type: "string" },
      bypass: { type: "string" },
      network: { type: "string" },
      family: { type: "string" },
      "table-name": { type: "string" },
      "rule-priority": { type: "string" },
      proto: { type: "string" },
      listen4: { type: "string" },
      listen6: { type: "string" },
      netns: { type: "string" },
      apply: { type: "boolean" },
      remove: { type: "boolean" },
      sysctl: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  const o = defaultTproxyOptions();
  if (values.port !== undefined) o.port = parseIntFlag("port", values.port);
  if (values.mark !== undefined) o.mark = parseIntFlag("mark", values.mark);
  if (values.table !== undefined) o.table = parseIntFlag("table", values.table);
  if (values["skip-mark"] !== undefined) {
    o.skipMark = parseIntFlag("skip-mark", values["skip-mark"]);
  }
  if (values["rule-priority"] !== undefined) {
    o.rulePriority = parseIntFlag("rule-priority", values["rule-priority"]);
  }
  if (values.proto !== undefined) o.proto = parseIntFlag("proto", values.proto);
  o.interfaces = list(values.interfaces);
  o.bypass = list(values.bypass);
  if (values.network !== undefined) o.network = values.network as TproxyNetwork;
  if (values.family !== undefined) o.family = values.family as TproxyFamily;
  if (values["table-name"] !== undefined) o.tableName = values["table-name"];
  if (values.listen4 !== undefined) o.listen4 = values.listen4;
  if (values.listen6 !== undefined) o.listen6 = values.listen6;
  validateTproxyOptions(o);
  if (values.apply && values.remove) throw new TypeError("--apply and --remove exclude each other");
  const mode = values.help ? "help" : values.apply ? "apply" : values.remove ? "remove" : "print";
  return {
    opts: o,
    mode,
    sysctl: values.sysctl === true,
    ...(values.netns !== undefined ? { netns: values.netns } : {}),
  };
}

/** Help text of `router tproxy-rules`. */
export const TPROXY_RULES_HELP = `router tproxy-rules [flags]

Print (default), --apply or --remove the nftables TPROXY ruleset (in our own
table only) and the policy routing that delivers marked packets locally.
Apply and remove are idempotent and never touch other tables or rules.

  --port N            TPROXY listener port (7893)
  --mark N            mark bit(s) ORed into steered packets, matched by the
                      ip rule as fwmark N/N (1); the box's other mark bits stay
  --table N           routing table with 'local default dev lo' (100)
  --skip-mark N       skip packets carrying these mark bits, the router's
                      default_mark (255; 0 = off)
  --interfaces a,b    steer only traffic arriving on these (default: all but lo)
  --bypass CIDR,...   extra destinations never steered (loopback, link-local,
                      multicast and the box's own addresses always are)
  --network tcp|udp|both   (both)      --family ipv4|ipv6|both   (both)
  --table-name NAME   nftables table, family inet (vpn_router)
  --rule-priority N   ip rule preference P of the fwmark rule (100); P-2, P-1
                      and P+1 hold its guards and goto target
  --proto N           routing protocol tagging our rule/route (250)
  --listen4 ADDR / --listen6 ADDR   tproxy targets (127.0.0.1 / ::1)
  --apply | --remove  change the kernel state instead of printing
  --sysctl            with --apply: also write the sysctls listed
  --netns NS          run the commands inside network namespace NS
`;

/** Formats rules for printing: nft text, ip commands, sysctl hints. */
export function formatTproxyRules(r: TproxyRules): string {
  const lines = ["# nft -f - <<'EOF'", r.nft.trimEnd(), "# EOF", "", "# policy routing"];
  for (const argv of r.ipRules) lines.push(argv.join(" "));
  lines.push("", "# sysctls");
  for (const s of r.sysctls) lines.push(`sysctl -w ${s.key}=${s.value}  # ${s.why}`);
  return lines.join("\n") + "\n";
}

/** Entry of `router tproxy-rules`; returns the exit code. */
export async function runTproxyRulesCommand(
  args: string[],
  run: RunCommand = runCommand,
): Promise<number> {
  let parsed;
  try {
    parsed = parseTproxyArgs(args);
  } catch (e) {
    console.error(`tproxy-rules: ${(e as Error).message}`);
    return 2;
  }
  const ctx: ApplyContext = {
    setSysctls: parsed.sysctl,
    ...(parsed.netns !== undefined ? { netns: parsed.netns } : {}),
  };
  try {
    switch (parsed.mode) {
      case "help":
        console.log(TPROXY_RULES_HELP);
        return 0;
      case "print":
        console.log(formatTproxyRules(renderTproxyRules(parsed.opts)));
        return 0;
      case "apply":
      case "remove": {
        const fn = parsed.mode === "apply" ? applyTproxyRules : removeTproxyRules;
        const rep = await fn(parsed.opts, run, ctx);
        for (const a of rep.actions) console.log(a);
        return 0;
      }
    }
  } catch (e) {
    console.error(`tproxy-rules: ${(e as Error).message}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await runTproxyRulesCommand(Deno.args));
