/**
 * `router doctor [--json]`: checks that the kernel is ready for the TPROXY
 * data plane and prints, for each check, OK / MISSING / WARN and the exact
 * command that fixes it. Exit 0 when every required check passes, else 1.
 *
 * The evaluation ({@linkcode runDoctor}) reads files and runs commands only
 * through an injected {@linkcode DoctorEnv}, so it is unit-tested with
 * fakes and run for real inside a network namespace.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  defaultTproxyOptions,
  familiesOf,
  type IpRuleJson,
  listRoutes,
  matchingRoutes,
  missingPolicyRules,
  parseIntFlag,
  parseJsonArray,
  policyRoutingCommands,
  policyRules,
  type RunCommand,
  runCommand,
  type TproxyFamily,
  type TproxyRulesOptions,
  validateTproxyOptions,
} from "./tproxy_rules.ts";

/** Outcome of one check. */
export type CheckStatus = "OK" | "MISSING" | "WARN";

/** One doctor check. */
export interface DoctorCheck {
  id: string;
  status: CheckStatus;
  /** When true, a non-OK status makes the exit code 1. */
  required: boolean;
  detail: string;
  /** The command that fixes it (absent when OK). */
  fix?: string;
}

/** What the doctor reads the system through (injectable). */
export interface DoctorEnv {
  /** File contents, or null when unreadable. */
  readFile(path: string): Promise<string | null>;
  run: RunCommand;
}

/** Options of {@linkcode runDoctor}. */
export interface DoctorOptions {
  mark: number;
  table: number;
  tableName: string;
  family: TproxyFamily;
  /** Ingress interfaces whose rp_filter is checked (all/default always are). */
  interfaces: string[];
  /** Skip mark of `router tproxy-rules` (default 255). */
  skipMark?: number;
  /** `ip rule` preference of the fwmark rule (default 100). */
  rulePriority?: number;
}

/** The real environment: `Deno.readTextFile` and {@linkcode runCommand}. */
export const realDoctorEnv: DoctorEnv = {
  readFile: async (path) => {
    try {
      return await Deno.readTextFile(path);
    } catch {
      return null;
    }
  },
  run: runCommand,
};

const CAP_NET_ADMIN = 12n;

/** True when a `CapEff:` hex mask in /proc/self/status has CAP_NET_ADMIN. */
export function hasNetAdmin(status: string): boolean {
  const m = /^CapEff:\s*([0-9a-fA-F]+)$/m.exec(status);
  if (!m) return false;
  return ((BigInt("0x" + m[1]) >> CAP_NET_ADMIN) & 1n) === 1n;
}

/** The throwaway check-only transaction probing nft tproxy + socket support. */
export function probeRuleset(name = "vpn_router_doctor"): string {
  return [
    `table inet ${name} {`,
    `  chain p {`,
    `    type filter hook prerouting priority mangle; policy accept;`,
    `    meta l4proto tcp socket transparent 1 meta mark set meta mark | 0x1 accept`,
    `    meta nfproto ipv4 meta l4proto tcp tproxy ip to 127.0.0.1:1 meta mark set meta mark | 0x1 accept`,
    `    meta nfproto ipv6 meta l4proto udp tproxy ip6 to [::1]:1 meta mark set meta mark | 0x1 accept`,
    `  }`,
    `}`,
    "",
  ].join("\n");
}

function tproxyOpts(o: DoctorOptions): TproxyRulesOptions {
  return {
    ...defaultTproxyOptions(),
    mark: o.mark,
    table: o.table,
    tableName: o.tableName,
    family: o.family,
    interfaces: o.interfaces,
    ...(o.skipMark !== undefined ? { skipMark: o.skipMark } : {}),
    ...(o.rulePriority !== undefined ? { rulePriority: o.rulePriority } : {}),
  };
}

/** Runs every check; never throws for a failing check (a broken env yields MISSING). */
export async function runDoctor(o: DoctorOptions, env: DoctorEnv): Promise<DoctorCheck[]> {
  const out: DoctorCheck[] = [];
  const add = (c: DoctorCheck) => out.push(c);
  const t = tproxyOpts(o);
  validateTproxyOptions(t);
  const fams = familiesOf(o.family);

  const status = await env.readFile("/proc/self/status");
  add(
    status !== null && hasNetAdmin(status)
      ? { id: "privileges", status: "OK", required: true, detail: "CAP_NET_ADMIN effective" }
      : {
        id: "privileges",
        status: "MISSING",
        required: true,
        detail: "not root / no CAP_NET_ADMIN (needed for IP_TRANSPARENT, SO_MARK, nft)",
        fix: "run as root, or systemd: AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW",
      },
  );

  const ver = await env.run(["nft", "--version"]);
  const nftOk = ver.code === 0;
  add(
    nftOk ? { id: "nft", status: "OK", required: true, detail: ver.stdout.trim() } : {
      id: "nft",
      status: "MISSING",
      required: true,
      detail: "nft not found",
      fix: "apt-get install nftables",
    },
  );

  if (nftOk) {
    const probe = await env.run(["nft", "-c", "-f", "-"], { stdin: probeRuleset() });
    add(
      probe.code === 0
        ? {
          id: "nft_tproxy",
          status: "OK",
          required: true,
          detail: "tproxy ip/ip6 and socket transparent accepted (check-only transaction)",
        }
        : {
          id: "nft_tproxy",
          status: "MISSING",
          required: true,
          detail: `kernel rejected tproxy/socket: ${probe.stderr.trim().split("\n")[0] ?? ""}`,
          fix: "modprobe nft_tproxy nft_socket nf_tproxy_ipv4 nf_tproxy_ipv6",
        },
    );
    const table = await env.run(["nft", "list", "table", "inet", o.tableName]);
    add(
      table.code === 0
        ? { id: "nft_table", status: "OK", required: true, detail: `table inet ${o.tableName}` }
        : {
          id: "nft_table",
          status: "MISSING",
          required: true,
          detail: `table inet ${o.tableName} not loaded`,
          fix: `router tproxy-rules --apply --table-name ${o.tableName}`,
        },
    );
  }

  const fwmarkAccept = (await env.readFile("/proc/sys/net/ipv4/tcp_fwmark_accept"))?.trim();
  const ours = policyRules(t);
  const guardPref = Math.min(...ours.map((p) => Number(p.args[1])));
  for (const f of fams) {
    const fam = f === "ipv4" ? "-4" : "-6";
    const routeAdd = policyRoutingCommands(t, f).at(-1)!;
    const rules = await env.run(["ip", "-j", fam, "rule", "show"]);
    let current: IpRuleJson[] | null = null;
    try {
      if (rules.code === 0) current = parseJsonArray<IpRuleJson>(rules.stdout, "ip rule");
    } catch { /* unparsable: treated as absent */ }
    const missing = current === null ? ours : missingPolicyRules(current, t);
    const tproxy = ours.find((p) => p.role === "tproxy")!;
    add(
      missing.length === 0
        ? {
          id: `ip_rule_${f}`,
          status: "OK",
          required: true,
          detail: `${tproxy.args.slice(0, -2).join(" ")} with its iif lo guards`,
        }
        : {
          id: `ip_rule_${f}`,
          status: "MISSING",
          required: true,
          detail: `${fam} rules missing: ${missing.map((p) => p.role).join(", ")}`,
          fix: missing.map((p) => ["ip", fam, "rule", "add", ...p.args].join(" ")).join(" && "),
        },
    );
    // A rule of someone else sending marked packets to our table before our
    // guards would loop the replies of proxied flows (tcp_fwmark_accept=1)
    // and the router's own sockets into lo.
    const early = (current ?? []).filter((r) =>
      r.table === String(o.table) && (r.iif === undefined || r.iif === "lo") &&
      (r.priority ?? 0) < guardPref && !ours.some((p) => p.matches(r))
    );
    if (early.length > 0) {
      add({
        id: `ip_rule_order_${f}`,
        status: "WARN",
        required: fwmarkAccept === "1",
        detail: `pref ${early.map((r) => r.priority).join(",")} look up table ${o.table} ` +
          `before our guards (pref ${guardPref}); with tcp_fwmark_accept=1 SYN-ACKs loop into lo`,
        fix: `ip ${fam} rule del pref ${early[0]!.priority}`,
      });
    }
    let routeOk = false;
    try {
      routeOk = matchingRoutes(await listRoutes(env.run, fam, o.table, {})).length > 0;
    } catch { /* absent */ }
    add(
      routeOk
        ? {
          id: `route_${f}`,
          status: "OK",
          required: true,
          detail: `table ${o.table}: local default dev lo`,
        }
        : {
          id: `route_${f}`,
          status: "MISSING",
          required: true,
          detail: `table ${o.table} lacks local default dev lo`,
          fix: routeAdd.join(" "),
        },
    );
  }

  const sys = async (key: string): Promise<string | null> =>
    (await env.readFile(`/proc/sys/${key.replaceAll(".", "/")}`))?.trim() ?? null;
  const want = async (key: string, value: string, required: boolean, why: string) => {
    const v = await sys(key);
    add(
      v === value ? { id: key, status: "OK", required, detail: `${key} = ${v} (${why})` } : {
        id: key,
        status: required ? "MISSING" : "WARN",
        required,
        detail: `${key} = ${v ?? "unreadable"}, want ${value} (${why})`,
        fix: `sysctl -w ${key}=${value}`,
      },
    );
  };
  if (fams.includes("ipv4")) {
    await want("net.ipv4.ip_forward", "1", true, "route what is not proxied");
  }
  if (fams.includes("ipv6")) {
    await want("net.ipv6.conf.all.forwarding", "1", true, "route what is not proxied");
  }
  await want(
    "net.ipv4.tcp_fwmark_accept",
    "1",
    false,
    "TCP flows carry the SYN's mark, so route rules can match the box's mark bits",
  );

  // rp_filter: effective value is max(all, iface); strict (1) can drop
  // steered packets when routes are asymmetric.
  const all = await sys("net.ipv4.conf.all.rp_filter");
  for (const name of ["all", "default", ...o.interfaces]) {
    const key = `net.ipv4.conf.${name}.rp_filter`;
    const v = name === "all" ? all : await sys(key);
    const eff = Math.max(Number(all ?? 0), Number(v ?? 0));
    add(
      v === null
        ? { id: key, status: "WARN", required: false, detail: `${key} unreadable (no such iface?)` }
        : eff === 1
        ? {
          id: key,
          status: "WARN",
          required: false,
          detail: `${key} = ${v} (effective strict); loose is safer with policy routing`,
          fix: v === "1" ? `sysctl -w ${key}=2` : "sysctl -w net.ipv4.conf.all.rp_filter=2",
        }
        : { id: key, status: "OK", required: false, detail: `${key} = ${v} (effective ${eff})` },
    );
  }

  const localnet = await sys("net.ipv4.conf.all.route_localnet");
  add(
    localnet === "1"
      ? {
        id: "net.ipv4.conf.all.route_localnet",
        status: "WARN",
        required: false,
        detail: "= 1: not needed for tproxy to 127.0.0.1 and routes 127/8 from the wire",
        fix: "sysctl -w net.ipv4.conf.all.route_localnet=0",
      }
      : {
        id: "net.ipv4.conf.all.route_localnet",
        status: "OK",
        required: false,
        detail: `= ${localnet ?? "unreadable"} (not needed: tproxy keeps the original daddr)`,
      },
  );
  for (const key of ["net.ipv4.ip_nonlocal_bind", "net.ipv6.ip_nonlocal_bind"]) {
    const v = await sys(key);
    add({
      id: key,
      status: "OK",
      required: false,
      detail: `= ${v ?? "unreadable"} (not needed: sockets use IP_TRANSPARENT)`,
    });
  }
  return out;
}

/** 0 when every required check is OK, else 1. */
export function doctorExitCode(checks: readonly DoctorCheck[]): number {
  return checks.every((c) => !c.required || c.status === "OK") ? 0 : 1;
}

/** Human output: one line per check, the fix indented below. */
export function formatDoctor(checks: readonly DoctorCheck[]): string {
  const lines: string[] = [];
  for (const c of checks) {
    lines.push(`${c.status.padEnd(8)}${c.id}: ${c.detail}`);
    if (c.fix) lines.push(`        fix: ${c.fix}`);
  }
  const bad = checks.filter((c) => c.required && c.status !== "OK").length;
  lines.push(bad === 0 ? "all required checks passed" : `${bad} required check(s) failed`);
  return lines.join("\n");
}

/** Help text of `router doctor`. */
export const DOCTOR_HELP = `router doctor [--json] [--mark N] [--table N] [--table-name NAME]
              [--family ipv4|ipv6|both] [--interfaces a,b]
              [--skip-mark N] [--rule-priority N]

Checks privileges, nft tproxy/socket support, our nft table, the policy
routing rule and 'local default dev lo' route, and the sysctls the TPROXY
path depends on. Prints OK / MISSING / WARN with the command that fixes it.
Exit 0 when every required check passes, 1 otherwise, 2 on bad flags.
`;

/** Entry of `router doctor`; returns the exit code. */
export async function runDoctorCommand(
  args: string[],
  env: DoctorEnv = realDoctorEnv,
): Promise<number> {
  let o: DoctorOptions, json: boolean;
  try {
    const { values } = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        json: { type: "boolean" },
        mark: { type: "string" },
        table: { type: "string" },
        "table-name": { type: "string" },
        family: { type: "string" },
        interfaces: { type: "string" },
        "skip-mark": { type: "string" },
        "rule-priority": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
    if (values.help) {
      console.log(DOCTOR_HELP);
      return 0;
    }
    const d = defaultTproxyOptions();
    o = {
      mark: values.mark !== undefined ? parseIntFlag("mark", values.mark) : d.mark,
      table: values.table !== undefined ? parseIntFlag("table", values.table) : d.table,
      tableName: values["table-name"] ?? d.tableName,
      family: (values.family ?? d.family) as TproxyFamily,
      interfaces: (values.interfaces ?? "").split(",").map((s) => s.trim()).filter((s) => s !== ""),
      ...(values["skip-mark"] !== undefined
        ? { skipMark: parseIntFlag("skip-mark", values["skip-mark"]) }
        : {}),
      ...(values["rule-priority"] !== undefined
        ? { rulePriority: parseIntFlag("rule-priority", values["rule-priority"]) }
        : {}),
    };
    validateTproxyOptions(tproxyOpts(o));
    json = values.json === true;
  } catch (e) {
    console.error(`doctor: ${(e as Error).message}`);
    return 2;
  }
  const checks = await runDoctor(o, env);
  const code = doctorExitCode(checks);
  if (json) console.log(JSON.stringify({ ok: code === 0, checks }, null, 2));
  else console.log(formatDoctor(checks));
  return code;
}

if (import.meta.main) Deno.exit(await runDoctorCommand(Deno.args));
