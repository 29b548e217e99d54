/**
 * `router status`, `router reload` and `router route-test`: thin clients of
 * the IPC socket (route-test can also run offline against a config file,
 * through an injected {@linkcode RouteTester} factory).
 *
 * Exit codes: 0 success; 1 the operation failed (router unreachable, reload
 * rejected, a batch line was bad); 2 usage error.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { parseDurationArg } from "../core/duration.ts";
import { IpcClient } from "../ipc/client.ts";
import { LineReader, writeAll } from "../ipc/line_reader.ts";
import {
  DEFAULT_TAKEOVER_DRAIN,
  IpcError,
  MAX_DRAIN_MS,
  MAX_LIST_LIMIT,
  type RouteTestParams,
  type RouteTestResult,
  type StatsResult,
  type StatusResult,
  validateRouteTest,
} from "../ipc/protocol.ts";

/** Default socket path when neither `--socket` nor `VPN_ROUTER_SOCKET` is given. */
export const DEFAULT_SOCKET_PATH = "/run/vpn-router/router.sock";
/** Longest accepted `--batch` input line, in bytes. */
export const MAX_BATCH_LINE_BYTES = 64 * 1024;
/** Batch flows in flight at once against a running router. */
export const BATCH_WINDOW = 64;

/** Answers "where would this flow go" without a running router (offline route-test). */
export interface RouteTester {
  /** The outbound and matching rule for a validated flow. */
  test(flow: RouteTestParams): RouteTestResult | Promise<RouteTestResult>;
}

/** Something bytes can be written to (`Deno.stdout` fits). */
export interface ByteWriter {
  write(p: Uint8Array): Promise<number>;
}

/** What the commands need from the outside world (injected for tests). */
export interface IpcCommandDeps {
  /** Builds a route tester from a config file (offline `route-test --config F`). */
  offline?: (configPath: string) => Promise<RouteTester>;
  stdout: ByteWriter;
  stdin: ReadableStream<Uint8Array>;
  /** Where errors go (default `Deno.stderr`). */
  stderr?: ByteWriter;
  /** Environment lookup (default `Deno.env.get`). */
  env?: (name: string) => string | undefined;
  /** Current directory, to make `--config` absolute (default `Deno.cwd()`). */
  cwd?: () => string;
}

const encoder = new TextEncoder();

class UsageError extends Error {
  override readonly name = "UsageError";
}

interface Io {
  out(text: string): Promise<void>;
  err(text: string): Promise<void>;
  env(name: string): string | undefined;
  cwd(): string;
}

function makeIo(deps: IpcCommandDeps): Io {
  const stderr = deps.stderr ?? Deno.stderr;
  return {
    out: (t) => writeAll(deps.stdout, encoder.encode(t)),
    err: (t) => writeAll(stderr, encoder.encode(t)),
    env: deps.env ?? ((name) => {
      try {
        return Deno.env.get(name);
      } catch {
        return undefined; // no --allow-env
      }
    }),
    cwd: deps.cwd ?? (() => Deno.cwd()),
  };
}

const COMMON_OPTIONS = {
  socket: { type: "string" },
  timeout: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

const COMMON_HELP =
  `  --socket PATH    router IPC socket (default $VPN_ROUTER_SOCKET or ${DEFAULT_SOCKET_PATH})
  --timeout T      how long to wait for the router, e.g. 5s, 300ms (default 30s)
  --json           print JSON instead of text
  -h, --help       show this help`;

/** Help text of `router status`. */
export const STATUS_HELP = `Usage: router status [--rules N] [--json] [--socket PATH]

Shows the running router: uptime, flows, rules, outbounds with their state.

  --rules N        also list the N most hit route rules and final's hits
                   (counts survive reloads for rules whose text is unchanged)
${COMMON_HELP}
`;

/** Help text of `router reload`. */
export const RELOAD_HELP = `Usage: router reload [--config FILE] [--close-removed] [--socket PATH]

Asks the running router to load a config. Without --config it re-reads the
file it runs from. A config that fails validation is rejected whole; the
old one stays in force and the error names the field.

  -c, --config FILE  config file to load (made absolute before sending)
  --close-removed    close flows whose outbound is gone from the new config
${COMMON_HELP}
`;

/** Help text of `router route-test`. */
export const ROUTE_TEST_HELP =
  `Usage: router route-test --dst IP:PORT [flow options] [--socket PATH | --config FILE]
       router route-test --batch [--socket PATH | --config FILE] < flows.ndjson

Shows which outbound and rule a flow would take: against the running router
(--socket) or offline against a config file (--config).

Flow options:
  --dst IP:PORT      destination (required; IPv6 as [addr]:port)
  --domain NAME      sniffed server name (SNI / Host)
  --src IP[:PORT]    source address
  --network tcp|udp  (default tcp)
  --protocol P       sniffed protocol: tls, http, quic
  --mark N           netfilter mark (decimal or 0x hex)
  --dscp N           DSCP 0..63
  --inbound TAG      inbound tag
  --no-dns           without --domain, the running router tests the flow with
                     the name its DNS answers gave the destination (route.
                     dns_reverse_mapping), as the data plane would; this
                     tests the address alone
  -c, --config FILE  test offline against this config instead of the router
  --batch            read flows as NDJSON from stdin (keys: dst, domain, src,
                     network, protocol, mark, dscp, inbound, dns) and write one
                     JSON object per input line: {"line":N,"outbound":...,
                     "rule":N|null,"final":bool[,"dns_name":...]} or {"line":N,"error":"..."};
                     blank lines are skipped; lines over ${MAX_BATCH_LINE_BYTES} bytes are errors
${COMMON_HELP}
`;

function socketPath(value: string | undefined, io: Io): string {
  return value ?? io.env("VPN_ROUTER_SOCKET") ?? DEFAULT_SOCKET_PATH;
}

/**
 * `--flag T`: a duration (ms), at most `maxMs`, above 0 when `positive`; a
 * usage error naming the flag otherwise.
 */
function durationFlag(flag: string, value: string, maxMs = Infinity, positive = false): number {
  try {
    const ms = parseDurationArg(value, maxMs);
    if (positive && ms <= 0) throw new RangeError("must be positive");
    return ms;
  } catch (e) {
    throw new UsageError(`--${flag}: "${value}": ${(e as Error).message}`);
  }
}

function timeoutMs(value: string | undefined): number {
  return value === undefined ? 30_000 : durationFlag("timeout", value, Infinity, true);
}

function absolute(path: string, io: Io): string {
  if (path.startsWith("/")) return path;
  const cwd = io.cwd();
  return `${cwd.endsWith("/") ? cwd : cwd + "/"}${path}`.replace(/\/\.\//g, "/");
}

async function connect(path: string, ms: number): Promise<IpcClient> {
  try {
    return await IpcClient.connect(path, { timeoutMs: ms, connectTimeoutMs: Math.min(ms, 5000) });
  } catch (e) {
    if (e instanceof IpcError && e.code === "connect_failed") {
      throw new IpcError(e.code, `${e.message} (is the router running?)`);
    }
    throw e;
  }
}

function parse<T extends Record<string, { type: "string" | "boolean"; short?: string }>>(
  args: string[],
  options: T,
) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** Runs a command body, mapping errors to messages on stderr and exit codes. */
async function run(name: string, io: Io, help: string, body: () => Promise<number>) {
  try {
    return await body();
  } catch (e) {
    if (e instanceof UsageError) {
      await io.err(`router ${name}: ${e.message}\n\n${help}`);
      return 2;
    }
    const msg = e instanceof IpcError ? `${e.message} [${e.code}]` : (e as Error).message;
    await io.err(`router ${name}: ${msg}\n`);
    return 1;
  }
}

// ---------------------------------------------------------------- status

/** `router status [--json]`: prints the running router's status. */
export function runStatus(args: string[], deps: IpcCommandDeps): Promise<number> {
  const io = makeIo(deps);
  return run("status", io, STATUS_HELP, async () => {
    const { values } = parse(args, { ...COMMON_OPTIONS, rules: { type: "string" } });
    if (values.help) {
      await io.out(STATUS_HELP);
      return 0;
    }
    const top = values.rules === undefined ? null : countFlag(values.rules, "rules");
    const client = await connect(socketPath(values.socket, io), timeoutMs(values.timeout));
    try {
      const status = await client.status();
      const hits = top === null ? null : await client.stats({ rules: true, limit: top });
      const out = hits === null
        ? status
        : { ...status, rules_hits: hits.rules, rules_hit: hits.rules_hit };
      if (values.json) await io.out(JSON.stringify(out) + "\n");
      else await io.out(formatStatus(status) + (hits ? formatRuleHits(hits) : ""));
      return 0;
    } finally {
      await client.close();
    }
  });
}

/** `--flag N`: a count from 0 to {@linkcode MAX_LIST_LIMIT}. */
function countFlag(value: string, flag: string): number {
  if (!/^\d{1,6}$/.test(value) || Number(value) > MAX_LIST_LIMIT) {
    throw new UsageError(`--${flag}: "${value}": expected a count from 0 to ${MAX_LIST_LIMIT}`);
  }
  return Number(value);
}

/** The human form of `stats {rules: true}`'s rule counters. */
export function formatRuleHits(st: Pick<StatsResult, "rules" | "rules_hit">): string {
  const rows = st.rules ?? [];
  const lines = rows.map((r, k) =>
    `${k === 0 ? "hits:" : ""}`.padEnd(10) +
    `${r.rule === null ? "final" : `rule #${r.rule}`} -> ${r.outbound}: ${r.hits}`
  );
  const listed = rows.filter((r) => r.rule !== null).length;
  const hit = st.rules_hit ?? listed;
  lines.push(
    "".padEnd(10) +
      `(${hit} rule${hit === 1 ? "" : "s"} with hits${listed < hit ? `, ${listed} shown` : ""})`,
  );
  return lines.join("\n") + "\n";
}

/** Formats seconds as `1d 2h 3m 4s` (largest units only as needed). */
export function formatUptime(seconds: number): string {
  let s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  const parts: string[] = [];
  if (d) parts.push(`${d}d`);
  if (d || h) parts.push(`${h}h`);
  if (d || h || m) parts.push(`${m}m`);
  parts.push(`${s}s`);
  return parts.join(" ");
}

/** The human form of a `status` result. */
export function formatStatus(st: StatusResult): string {
  const lines = [
    `vpn-router ${st.version} (pid ${st.pid}), up ${
      formatUptime(st.uptime_s)
    } since ${st.started_at}`,
    `config:   ${st.config_path ?? "(inline)"}`,
    `rules:    ${st.rules} (final: ${st.final})`,
    `flows:    ${st.flows.active} active (${st.flows.tcp} tcp, ${st.flows.udp} udp), ${st.flows.total} since start`,
  ];
  for (const u of st.udp ?? []) {
    lines.push(
      `udp:      ${u.inbound}: ${u.sessions}/${u.max_sessions} sessions, ${u.created} created, ${u.expired} expired, ${u.evicted} evicted, ${u.dropped} dropped, ${u.reply_sockets} reply sockets${
        u.shared_sockets ? `, ${u.shared_sockets} shared sockets` : ""
      }${u.socks_associations ? `, ${u.socks_associations} socks associations` : ""}${
        u.unsolicited ? `, ${u.unsolicited} unsolicited dropped` : ""
      }${u.unsolicited_admitted ? `, ${u.unsolicited_admitted} opened by remotes` : ""}${
        u.fail_fast ? `, ${u.fail_fast} failed fast (outbound down)` : ""
      }`,
    );
  }
  if (st.memory) {
    const mib = (n: number) => (n / 2 ** 20).toFixed(1);
    const m = st.memory;
    lines.push(
      `memory:   rss ${mib(m.rss)} MiB, JS heap ${mib(m.heap_used)}/${
        mib(m.heap_total)
      } MiB, external ${mib(m.external)} MiB`,
    );
  }
  if (st.last_reload) {
    const r = st.last_reload;
    const how = r.took_ms !== undefined
      ? ` in ${r.took_ms} ms, ${r.rules_compiled ?? "?"} rule${
        r.rules_compiled === 1 ? "" : "s"
      } compiled`
      : "";
    lines.push(`reload:   ${r.at} ${r.ok ? `ok${how}` : `FAILED: ${r.error ?? "unknown error"}`}`);
  }
  lines.push(`outbounds (${st.outbounds.length}):`);
  const rows = [["TAG", "TYPE", "STATE", "FLOWS", "DETAIL"]];
  for (const o of st.outbounds) {
    rows.push([
      o.tag,
      o.kind ? `${o.type}/${o.kind}` : o.type,
      o.state,
      String(o.flows),
      o.detail ?? "",
    ]);
  }
  const widths = [0, 1, 2, 3].map((i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) {
    const cells = r.map((c, i) =>
      i === 3 ? c.padStart(widths[i]!) : i < 4 ? c.padEnd(widths[i]!) : c
    );
    lines.push(("  " + cells.join("  ")).trimEnd());
  }
  return lines.join("\n") + "\n";
}

// ---------------------------------------------------------------- reload

/** `router reload [--config F] [--close-removed]`: asks the router to load a config. */
export function runReload(args: string[], deps: IpcCommandDeps): Promise<number> {
  const io = makeIo(deps);
  return run("reload", io, RELOAD_HELP, async () => {
    const { values } = parse(args, {
      ...COMMON_OPTIONS,
      config: { type: "string", short: "c" },
      "close-removed": { type: "boolean" },
    });
    if (values.help) {
      await io.out(RELOAD_HELP);
      return 0;
    }
    if (values.config === "") throw new UsageError("--config: empty path");
    const client = await connect(socketPath(values.socket, io), timeoutMs(values.timeout));
    let path = values.config === undefined ? undefined : absolute(values.config, io);
    try {
      if (path === undefined) {
        const st = await client.status();
        if (st.config_path === null) {
          throw new Error("the router runs an inline config; pass --config FILE");
        }
        path = st.config_path;
      }
      const closeRemoved = values["close-removed"] === true;
      let result;
      try {
        result = await client.reload(
          closeRemoved ? { path, close_removed: true } : { path },
        );
      } catch (e) {
        if (!(e instanceof IpcError)) throw e;
        const msg = e.message.replace(/^reload: /, "");
        throw new IpcError(e.code, `reload of ${path} failed: ${msg}`);
      }
      if (values.json) await io.out(JSON.stringify({ path, ...result }) + "\n");
      else {
        const closed = closeRemoved ? `, closed ${result.closed} flows` : "";
        const reused = result.rules_reused
          ? " (rules unchanged: compiled indexes reused)"
          : result.rules_compiled !== undefined && result.rules_compiled < result.rules
          ? ` (${result.rules_compiled} rule${
            result.rules_compiled === 1 ? "" : "s"
          } compiled, the others' indexes reused)`
          : "";
        const where = result.compiled_on === "main"
          ? " (compiled on the data-plane thread: the config worker could not run)"
          : "";
        await io.out(
          `reloaded ${path}: ${result.rules} rules, ${result.outbounds} outbounds in ${result.took_ms} ms${closed}${reused}${where}\n`,
        );
      }
      return 0;
    } finally {
      await client.close();
    }
  });
}

// ---------------------------------------------------------------- stop

/** Help text of `router stop`. */
export const STOP_HELP = `Usage: router stop [--drain T] [--socket PATH]

Asks the running router to stop. It stops taking flows at once (UDP sessions
end); its open TCP flows go on until they end or --drain passes (default 0:
closed at once), then it exits. To restart without dropping flows, start the
new router with 'router run --replace' instead.

  --drain T        how long open TCP flows may go on, e.g. 30s, 10m (at most 24h)
${COMMON_HELP}
`;

/** `router stop [--drain T]`: asks the router to stop, letting its TCP flows finish. */
export function runStop(args: string[], deps: IpcCommandDeps): Promise<number> {
  const io = makeIo(deps);
  return run("stop", io, STOP_HELP, async () => {
    const { values } = parse(args, { ...COMMON_OPTIONS, drain: { type: "string" } });
    if (values.help) {
      await io.out(STOP_HELP);
      return 0;
    }
    const drainMs = values.drain === undefined
      ? 0
      : durationFlag("drain", values.drain, MAX_DRAIN_MS);
    const client = await connect(socketPath(values.socket, io), timeoutMs(values.timeout));
    try {
      const r = await client.shutdown({ drain_ms: drainMs });
      await io.out(
        values.json
          ? JSON.stringify(r) + "\n"
          : `router (pid ${r.pid}) stopping: ${
            r.flows === 0 || r.drain_ms === 0
              ? `${r.flows} open TCP flow${r.flows === 1 ? "" : "s"} closed`
              : `its ${r.flows} open TCP flow${r.flows === 1 ? "" : "s"} may go on for ${
                r.drain_ms / 1000
              } s`
          }\n`,
      );
      return 0;
    } finally {
      await client.close();
    }
  });
}

// ---------------------------------------------------------------- upgrade

/** Help text of `router upgrade`. */
export const UPGRADE_HELP = `Usage: router upgrade [--drain T] [--wait T] [--socket PATH]

Restarts the running router without dropping its flows: starts a new router
with the running one's command line and --replace (so a new binary at the
same path, the config file as it is now, inbound changes included), waits
until it has taken over, and prints both pids. The old router drains its
open TCP flows (at most --drain) and exits. The new router writes its log
where this command's output goes. Under systemd, make it the unit's
ExecReload= with Type=notify and NotifyAccess=all: the new router tells
systemd it is the main process (docs/production.md).

  --drain T        how long the old router's open TCP flows may go on
                   (default ${DEFAULT_TAKEOVER_DRAIN}; 0 closes them at once)
  --wait T         how long the new router may take to take over (default 60s;
                   past it the new router is stopped and the old one goes on)
${COMMON_HELP}
`;

/**
 * The command line of a successor to a router started with `argv` (its
 * `/proc/PID/cmdline`): the same, with `--replace` and `--drain drain` after
 * the router's `run` (earlier `--replace` / `--drain` dropped). Null when
 * `argv` has no `run` command.
 */
export function successorArgv(argv: readonly string[], drain: string): string[] | null {
  // The router's `run`: the last "run" that is not an option's value (`deno run … main.ts run`).
  let at = -1;
  for (let i = 1; i < argv.length; i++) {
    if (argv[i] === "run" && !["--config", "-c", "--drain"].includes(argv[i - 1]!)) at = i;
  }
  if (at < 0) return null;
  const rest: string[] = [];
  for (let i = at + 1; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--replace" || a.startsWith("--drain=")) continue;
    if (a === "--drain") {
      i++;
      continue;
    }
    rest.push(a);
  }
  return [...argv.slice(0, at + 1), ...rest, "--replace", "--drain", drain];
}

/** `router upgrade`: a successor takes over the running router (see {@linkcode UPGRADE_HELP}). */
export function runUpgrade(args: string[], deps: IpcCommandDeps): Promise<number> {
  const io = makeIo(deps);
  return run("upgrade", io, UPGRADE_HELP, async () => {
    const { values } = parse(args, {
      ...COMMON_OPTIONS,
      drain: { type: "string" },
      wait: { type: "string" },
    });
    if (values.help) {
      await io.out(UPGRADE_HELP);
      return 0;
    }
    const drain = values.drain ?? DEFAULT_TAKEOVER_DRAIN;
    durationFlag("drain", drain, MAX_DRAIN_MS); // checked here; the new router reads it
    const waitMs = values.wait === undefined
      ? 60_000
      : durationFlag("wait", values.wait, Infinity, true);
    const path = socketPath(values.socket, io);
    const ms = timeoutMs(values.timeout);
    const oldPid = await routerPid(path, ms);
    if (oldPid === 1) {
      // The container's init: when it exits after its drain, the container (and the new router
      // started inside it) goes with it.
      throw new Error(
        "the router is PID 1 (a container?): a new router started beside it would end with it. " +
          "Start the new one as a second container in the same network namespace with " +
          "'router run --replace' (docs/production.md)",
      );
    }
    let argv: string[], cwd: string;
    try {
      argv = new TextDecoder().decode(Deno.readFileSync(`/proc/${oldPid}/cmdline`)).split("\0");
      if (argv.at(-1) === "") argv.pop();
      cwd = Deno.readLinkSync(`/proc/${oldPid}/cwd`);
    } catch (e) {
      throw new Error(
        `cannot read the command line of the router (pid ${oldPid}) in /proc: ${
          (e as Error).message
        }`,
      );
    }
    const next = successorArgv(argv, drain);
    if (next === null) {
      throw new Error(`the router (pid ${oldPid}) was not started with "run": ${argv.join(" ")}`);
    }
    const child = new Deno.Command(next[0]!, {
      args: next.slice(1),
      cwd,
      stdin: "null",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
    child.unref();
    // Taken over: the IPC socket answers with the new pid.
    let exited: Deno.CommandStatus | null = null;
    child.status.then((s) => exited = s, () => {});
    const deadline = Date.now() + waitMs;
    for (;;) {
      if (exited !== null) {
        throw new Error(
          `the new router (pid ${child.pid}) exited with code ${
            (exited as Deno.CommandStatus).code
          } before taking over; the old one (pid ${oldPid}) goes on`,
        );
      }
      const pid = await routerPid(path, 2_000).catch(() => null);
      if (pid === child.pid) break;
      if (Date.now() > deadline) {
        // Never two routers: one that has not taken over by now is stopped.
        try {
          child.kill("SIGTERM");
        } catch { /* it has just exited */ }
        throw new Error(
          `the new router (pid ${child.pid}) had not taken over after ${waitMs / 1000} s ` +
            `(a different ipc.path in the config?): stopped it; the old one (pid ${oldPid}) goes on`,
        );
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    await io.out(
      values.json
        ? JSON.stringify({ old_pid: oldPid, new_pid: child.pid, drain }) + "\n"
        : `router upgraded: pid ${oldPid} -> ${child.pid} (the old one drains its TCP flows for up to ${drain})\n`,
    );
    return 0;
  });
}

/** The pid of the router answering on `path`. */
async function routerPid(path: string, ms: number): Promise<number> {
  const client = await connect(path, ms);
  try {
    return (await client.status()).pid;
  } finally {
    await client.close();
  }
}

// ---------------------------------------------------------------- route-test

type Backend = {
  test(p: RouteTestParams): Promise<RouteTestResult>;
  close(): Promise<void>;
};

const FLOW_FLAGS = ["dst", "domain", "src", "network", "protocol", "mark", "dscp", "inbound"];

function flagInt(value: string, flag: string): number {
  if (!/^(0x[0-9a-fA-F]{1,8}|\d{1,10})$/.test(value)) {
    throw new UsageError(`--${flag}: "${value}": expected an integer (decimal or 0x hex)`);
  }
  return Number(value);
}

/**
 * `router route-test`: one flow from flags, or NDJSON flows from stdin with
 * `--batch`; against the router (`--socket`) or offline (`--config`).
 */
export function runRouteTest(args: string[], deps: IpcCommandDeps): Promise<number> {
  const io = makeIo(deps);
  return run("route-test", io, ROUTE_TEST_HELP, async () => {
    const { values } = parse(args, {
      ...COMMON_OPTIONS,
      config: { type: "string", short: "c" },
      batch: { type: "boolean" },
      dst: { type: "string" },
      domain: { type: "string" },
      src: { type: "string" },
      network: { type: "string" },
      protocol: { type: "string" },
      mark: { type: "string" },
      dscp: { type: "string" },
      inbound: { type: "string" },
      "no-dns": { type: "boolean" },
    });
    if (values.help) {
      await io.out(ROUTE_TEST_HELP);
      return 0;
    }
    if (values.config !== undefined && values.socket !== undefined) {
      throw new UsageError("use either --socket (running router) or --config (offline)");
    }
    let flow: RouteTestParams | null = null;
    if (values.batch) {
      const given = [...FLOW_FLAGS, "no-dns"].filter((f) =>
        (values as Record<string, unknown>)[f] !== undefined
      );
      if (given.length > 0) {
        throw new UsageError(`--batch reads flows from stdin; drop --${given[0]}`);
      }
    } else {
      if (values.dst === undefined) throw new UsageError("--dst IP:PORT is required");
      const raw: Record<string, unknown> = {};
      for (const f of FLOW_FLAGS) {
        const v = (values as Record<string, unknown>)[f];
        if (v !== undefined) raw[f] = f === "mark" || f === "dscp" ? flagInt(String(v), f) : v;
      }
      if (values["no-dns"]) raw.dns = false;
      try {
        flow = validateRouteTest(raw, "--");
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
    }
    const backend = await openBackend(values.config, values.socket, values.timeout, deps, io);
    try {
      if (flow === null) return await runBatch(backend, deps.stdin, io);
      const result = await backend.test(flow);
      await io.out(values.json ? JSON.stringify(result) + "\n" : formatRouteTest(result));
      return 0;
    } finally {
      await backend.close();
    }
  });
}

async function openBackend(
  config: string | undefined,
  socket: string | undefined,
  timeout: string | undefined,
  deps: IpcCommandDeps,
  io: Io,
): Promise<Backend> {
  const ms = timeoutMs(timeout);
  if (config !== undefined) {
    if (!deps.offline) throw new Error("offline route-test (--config) is not available here");
    const path = absolute(config, io);
    let tester: RouteTester;
    try {
      tester = await deps.offline(path);
    } catch (e) {
      throw new Error(`cannot load ${path}: ${(e as Error).message}`);
    }
    return { test: async (p) => await tester.test(p), close: async () => {} };
  }
  const client = await connect(socketPath(socket, io), ms);
  return { test: (p) => client.routeTest(p), close: () => client.close() };
}

/** The human form of a `route.test` result. */
export function formatRouteTest(r: RouteTestResult): string {
  const rule = r.rule === null || r.final
    ? "none matched; final applied"
    : `#${r.rule}${r.rule_text ? " " + r.rule_text : ""}`;
  const name = r.dns_name !== undefined ? `name:     ${r.dns_name} (from DNS answers)\n` : "";
  return `outbound: ${r.outbound}\nrule:     ${rule}\n${name}`;
}

/** Errors that end a batch: the router is gone, not just one flow bad. */
function isFatal(e: unknown): boolean {
  return e instanceof IpcError &&
    (e.code === "connection_closed" || e.code === "timeout" || e.code === "connect_failed" ||
      e.code === "bad_response");
}

async function runBatch(
  backend: Backend,
  stdin: ReadableStream<Uint8Array>,
  io: Io,
): Promise<number> {
  const lines = new LineReader(stdin, MAX_BATCH_LINE_BYTES);
  // Results in input order, at most BATCH_WINDOW flows in flight.
  // Queued promises never reject (see testLine), so none is left unhandled
  // when a fatal error ends the batch early.
  const queue: Promise<LineOutcome>[] = [];
  let bad = 0;
  const flushOne = async () => {
    const outcome = await queue.shift()!;
    if ("fatal" in outcome) throw outcome.fatal;
    const out = outcome.out;
    if ("error" in out) bad++;
    await io.out(JSON.stringify(out) + "\n");
  };
  let n = 0;
  try {
    for (;;) {
      const item = await lines.next();
      if (item === null) break;
      n++;
      const line = n;
      if (item.kind === "too_long") {
        queue.push(Promise.resolve({
          out: { line, error: `line exceeds ${MAX_BATCH_LINE_BYTES} bytes (${item.bytes})` },
        }));
      } else if (item.text.trim() !== "") {
        queue.push(testLine(backend, item.text, line));
      }
      while (queue.length >= BATCH_WINDOW) await flushOne();
    }
    while (queue.length > 0) await flushOne();
  } finally {
    await lines.cancel();
  }
  return bad > 0 ? 1 : 0;
}

type LineOutcome = { out: Record<string, unknown> } | { fatal: unknown };

/** Tests one batch line; never rejects. */
async function testLine(backend: Backend, text: string, line: number): Promise<LineOutcome> {
  let flow: RouteTestParams;
  try {
    flow = validateRouteTest(JSON.parse(text), "");
  } catch (e) {
    const msg = e instanceof SyntaxError ? `Cannot parse JSON: ${e.message}` : (e as Error).message;
    return { out: { line, error: msg } };
  }
  try {
    const r = await backend.test(flow);
    const out: Record<string, unknown> = {
      line,
      outbound: r.outbound,
      rule: r.rule,
      final: r.final,
    };
    if (r.rule_text !== undefined) out.rule_text = r.rule_text;
    if (r.dns_name !== undefined) out.dns_name = r.dns_name;
    return { out };
  } catch (e) {
    if (isFatal(e)) return { fatal: e };
    return { out: { line, error: e instanceof Error ? e.message : String(e) } };
  }
}
