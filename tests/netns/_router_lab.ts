/**
 * Helpers for the router's end-to-end tests on top of the netns
 * {@linkcode Lab}: run the real `router run` in the router namespace and read
 * its log, drive many flows with `peers/e2e_client.ts`, serve them with
 * `peers/e2e_server.ts`, count packets with nft counters, add a second
 * router→server link, talk to the IPC socket.
 *
 * Internal to tests/netns (the leading `_`).
 *
 * @module
 */

import assert from "node:assert/strict";
import { IpcClient } from "../../ipc/client.ts";
import { Lab, type LabProcess, peerPath, type Role } from "./harness.ts";
import type { ClientSpec, FlowResult, FlowSpec } from "./peers/e2e_client.ts";

/** A flow to find in the log: its client address, or a flow result (client address and target). */
export type FlowRef = string | undefined | { readonly local?: string; readonly target?: string };

export type { ClientSpec, FlowResult, FlowSpec };

/** Absolute path of the router's entry point. */
export const MAIN_TS = new URL("../../main.ts", import.meta.url).pathname;

/** The TPROXY port the lab's nft rules steer to (harness default). */
export const TPROXY_PORT = 7893;

const MAX_LOG_LINES = 200_000;

/** Polls `cond` every 100 ms until it returns a truthy value; throws after `timeoutMs`. */
export async function waitUntil<T>(
  cond: () => T | Promise<T>,
  timeoutMs: number,
  what: string,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await cond();
      if (v) return v as NonNullable<T>;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last}` : ""}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** `router run` inside a namespace; its stderr log is kept as lines (bounded). */
export class RouterProcess {
  readonly lines: string[] = [];
  readonly #child: Deno.ChildProcess;
  readonly #pumps: Promise<void>[];
  readonly status: Promise<Deno.CommandStatus>;
  #exited = false;

  constructor(
    netns: string,
    readonly configPath: string,
    readonly level = "debug",
    extraArgs: readonly string[] = [],
  ) {
    this.#child = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        netns,
        Deno.execPath(),
        "run",
        "-A",
        MAIN_TS,
        "run",
        "--config",
        configPath,
        "--log-level",
        level,
        ...extraArgs,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.status = this.#child.status.then((s) => {
      this.#exited = true;
      return s;
    });
    this.#pumps = [this.#pump(this.#child.stdout), this.#pump(this.#child.stderr)];
  }

  async #pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    let rest = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      rest += chunk;
      let i;
      while ((i = rest.indexOf("\n")) >= 0) {
        this.lines.push(rest.slice(0, i));
        if (this.lines.length > MAX_LOG_LINES) this.lines.shift();
        rest = rest.slice(i + 1);
      }
    }
    if (rest !== "") this.lines.push(rest);
  }

  /** Process id of the router (`ip netns exec` execs it, so this is deno itself). */
  get pid(): number {
    return this.#child.pid;
  }

  /** True once the process has exited. */
  get exited(): boolean {
    return this.#exited;
  }

  /** Waits for a log line matching `re` (searching from line `from`); throws on exit or timeout. */
  async waitForLog(re: RegExp, timeoutMs = 15_000, from = 0): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.lines.slice(from).find((l) => re.test(l));
      if (hit) return hit;
      if (this.#exited) throw new Error(`router exited before logging ${re}:\n${this.tail()}`);
      if (Date.now() > deadline) throw new Error(`no router log line ${re} in ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Log lines matching `re`. */
  grep(re: RegExp): string[] {
    return this.lines.filter((l) => re.test(l));
  }

  /**
   * The `flow id=..` INFO line of a flow: by its client address (`ADDR:PORT`)
   * and, when given, its target (`dst=`). Client ports are reused across
   * flows to other targets, so give the target when there is one; the
   * newest matching line wins.
   */
  flowLine(flow: FlowRef): string | undefined {
    const { local, target } = typeof flow === "object" ? flow : { local: flow, target: undefined };
    if (!local) return undefined;
    return this.lines.findLast((l) =>
      / INFO +router: flow id=/.test(l) && l.includes(` src=${local} `) &&
      (target === undefined || l.includes(` dst=${target} `))
    );
  }

  /** Waits (at most `timeoutMs`) for the {@linkcode flowLine} of `flow`. */
  waitFlowLine(flow: FlowRef, timeoutMs = 5000): Promise<string> {
    const name = typeof flow === "object" ? `${flow.local} → ${flow.target}` : flow;
    return waitUntil(() => this.flowLine(flow), timeoutMs, `flow log line of ${name}`);
  }

  /**
   * Waits (at most `timeoutMs`) for the `udp session` log line of the client
   * `local` to `target`, logged at line `since` or later (source ports are
   * reused: pass `lines.length` from before the flow).
   */
  waitUdpSessionLine(
    local: string | undefined,
    target: string,
    since: number,
    timeoutMs = 5000,
  ): Promise<string> {
    return waitUntil(
      () =>
        this.lines.slice(since).find((l) =>
          l.includes("udp session") && l.includes(` src=${local} `) && l.includes(` dst=${target} `)
        ),
      timeoutMs,
      `udp session of ${local} → ${target}`,
    );
  }

  /** The last `n` log lines, for assertion messages. */
  tail(n = 30): string {
    return this.lines.slice(-n).join("\n");
  }

  /** Number of open file descriptors of the router process. */
  async fdCount(): Promise<number> {
    let n = 0;
    for await (const _ of Deno.readDir(`/proc/${this.pid}/fd`)) n++;
    return n;
  }

  /** Sends a signal to the router. */
  signal(sig: Deno.Signal): void {
    this.#child.kill(sig);
  }

  /** SIGTERM, then SIGKILL after `graceMs`; waits for exit. Idempotent. */
  async kill(graceMs = 3000): Promise<void> {
    if (!this.#exited) {
      try {
        this.#child.kill("SIGTERM");
      } catch { /* gone */ }
      const t = setTimeout(() => {
        try {
          this.#child.kill("SIGKILL");
        } catch { /* gone */ }
      }, graceMs);
      await this.status;
      clearTimeout(t);
    }
    await Promise.all(this.#pumps);
  }
}

/** The second router↔server link added by {@linkcode RouterLab.addSecondLink}. */
export interface SecondLink {
  /** Router-side interface name. */
  routerIf: string;
  /** Server-side interface name. */
  serverIf: string;
  router4: string;
  server4: string;
  router6: string;
  server6: string;
}

/** A named nft counter and the match expression in front of it. */
export interface CounterRule {
  name: string;
  /** nft match, e.g. `oifname "eth2" meta mark 255`. */
  match: string;
}

/** Options of {@linkcode RouterLab.create}. */
export interface RouterLabOptions {
  extraAddrs?: number;
}

/** A {@linkcode Lab} with TPROXY rules applied and helpers to run the real router in it. */
export class RouterLab {
  #router: RouterProcess | null = null;
  /** Routers a successor replaced (`replaceRouter`), killed at teardown if still running. */
  readonly #retired: RouterProcess[] = [];
  #ipc: IpcClient | null = null;
  #tables = 0;
  #paced = 0;
  readonly #counterTable = new Map<string, string>();

  private constructor(readonly lab: Lab, readonly dir: string) {}

  /** Builds the lab, applies TPROXY rules (LAN side) and makes a temp dir for configs. */
  static async create(opts: RouterLabOptions = {}): Promise<RouterLab> {
    // Deno's background update check would send DNS queries through the router.
    Deno.env.set("DENO_NO_UPDATE_CHECK", "1");
    const lab = await Lab.create({ extraAddrs: opts.extraAddrs ?? 4 });
    try {
      await lab.applyTproxy({ port: TPROXY_PORT });
      const dir = await Deno.makeTempDir({ prefix: `e2e-${lab.id}-` });
      return new RouterLab(lab, dir);
    } catch (e) {
      await lab.destroy();
      throw e;
    }
  }

  /** Lab addresses. */
  get addrs(): Lab["addrs"] {
    return this.lab.addrs;
  }

  /** IPC socket path used by {@linkcode config}. */
  get socketPath(): string {
    return `${this.dir}/router.sock`;
  }

  /** The running router (throws when none). */
  get router(): RouterProcess {
    if (!this.#router) throw new Error("router not started");
    return this.#router;
  }

  /** A router config: one TPROXY inbound on `::`, the given outbounds and route, our IPC path. */
  config(parts: { outbounds: unknown[]; route?: Record<string, unknown>; inbound?: object }): {
    [k: string]: unknown;
  } {
    return {
      log: { level: "debug" },
      inbounds: [{
        type: "tproxy",
        tag: "tp",
        listen: "::",
        listen_port: TPROXY_PORT,
        ...parts.inbound,
      }],
      outbounds: parts.outbounds,
      route: { default_mark: 255, ...parts.route },
      ipc: { path: this.socketPath },
    };
  }

  /** Writes `cfg` as JSON to `<dir>/<name>` and returns the path. */
  async writeConfig(name: string, cfg: unknown): Promise<string> {
    const path = `${this.dir}/${name}`;
    await Deno.writeTextFile(path, typeof cfg === "string" ? cfg : JSON.stringify(cfg, null, 2));
    return path;
  }

  /** Starts `router run` with `cfg` and waits for its `started` log line. */
  async startRouter(cfg: unknown, name = "router.json"): Promise<RouterProcess> {
    if (this.#router && !this.#router.exited) throw new Error("router already running");
    const path = await this.writeConfig(name, cfg);
    const r = new RouterProcess(this.lab.ns.router, path);
    this.#router = r;
    await r.waitForLog(/ INFO +router: started /, 30_000);
    return r;
  }

  /**
   * Starts a successor with `router run --replace` (and `args`) on the
   * running router's config, waits until it started, and makes it the
   * running router; returns the one it replaced (still running while it
   * drains; killed at teardown if need be).
   */
  async replaceRouter(args: readonly string[] = []): Promise<RouterProcess> {
    const old = this.router;
    try {
      await this.#ipc?.close();
    } catch { /* closed */ }
    this.#ipc = null;
    const next = new RouterProcess(this.lab.ns.router, old.configPath, old.level, [
      "--replace",
      ...args,
    ]);
    this.#retired.push(old);
    this.#router = next;
    await next.waitForLog(/ INFO +router: started /, 30_000);
    return old;
  }

  /** A (cached) IPC client of the running router. */
  async ipc(): Promise<IpcClient> {
    if (!this.#ipc || this.#ipc.closed) {
      this.#ipc = await IpcClient.connect(this.socketPath, { timeoutMs: 15_000 });
    }
    return this.#ipc;
  }

  /** Runs `router <args>` (a CLI command such as `reload`) in the router ns. */
  cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return this.lab.run("router", [Deno.execPath(), "run", "-A", MAIN_TS, ...args]);
  }

  /** Starts `peers/e2e_server.ts` listening on every `listens` entry; waits until ready. */
  async server(listens: string[], mode: "echo" | "hash" | "banner"): Promise<LabProcess> {
    const p = this.lab.spawn("server", [
      Deno.execPath(),
      "run",
      "-A",
      peerPath("e2e_server.ts"),
      "--mode",
      mode,
      ...listens.flatMap((l) => ["--listen", l]),
    ]);
    await p.waitForLine(/^ready$/, 20_000);
    return p;
  }

  #clientArgv(spec: ClientSpec): string[] {
    return [
      Deno.execPath(),
      "run",
      "-A",
      peerPath("e2e_client.ts"),
      "--spec",
      JSON.stringify(spec),
    ];
  }

  /** Runs the flows of `spec` from `ns` (default: client) and returns their results in order. */
  async flows(spec: ClientSpec, ns: Role = "client"): Promise<FlowResult[]> {
    const r = await this.lab.run(ns, this.#clientArgv(spec));
    const line = r.stdout.trim().split("\n").pop() ?? "";
    try {
      return (JSON.parse(line) as { results: FlowResult[] }).results;
    } catch {
      throw new Error(`e2e_client: exit ${r.code}: ${r.stderr.trim().slice(0, 2000)}`);
    }
  }

  /** One flow; see {@linkcode flows}. */
  async flow(f: FlowSpec, timeoutMs = 10_000): Promise<FlowResult> {
    return (await this.flows({ flows: [f], timeoutMs }))[0]!;
  }

  /** The same flow to extra address `i` on `port`, IPv4 then IPv6. */
  bothFamilies(i: number, port: number, flow: Omit<FlowSpec, "target">): FlowSpec[] {
    const a = this.addrs;
    return [a.extra4[i]!, a.extra6[i]!].map((addr) => ({ ...flow, target: target(addr, port) }));
  }

  /** Starts a client in the background (e.g. a `paced` flow); read its lines to follow it. */
  spawnFlows(spec: ClientSpec, ns: Role = "client"): LabProcess {
    return this.lab.spawn(ns, this.#clientArgv(spec));
  }

  /**
   * Long uploads from the client to each of `targets` (16 KiB every 20 ms, at
   * most 60 s), in one client process, until a file appears at `stopFile`; the
   * process prints its `{"done":true, results}` line then.
   */
  pacedUploads(targets: string[]): { proc: LabProcess; stopFile: string } {
    const stopFile = `${this.dir}/stop-paced-${this.#paced++}`;
    const proc = this.spawnFlows({
      flows: targets.map((t) => ({
        target: t,
        mode: "paced" as const,
        chunk: 16 * 1024,
        intervalMs: 20,
        stopFile,
        maxMs: 60_000,
      })),
      concurrency: targets.length,
      timeoutMs: 15_000,
    });
    return { proc, stopFile };
  }

  /** Adds nft named counters in their own table, hooked on `hook` (default output) of the ns. */
  async addCounters(
    rules: CounterRule[],
    opts: { ns?: Role; hook?: "output" | "postrouting" | "prerouting" | "input" } = {},
  ): Promise<void> {
    const table = `e2e_obs${this.#tables++}`;
    const hook = opts.hook ?? "output";
    const text = [
      `table inet ${table} {`,
      ...rules.map((r) => `  counter ${r.name} {}`),
      `  chain c {`,
      `    type filter hook ${hook} priority 0; policy accept;`,
      ...rules.map((r) => `    ${r.match} counter name "${r.name}"`),
      `  }`,
      `}`,
      "",
    ].join("\n");
    await this.lab.runOk(opts.ns ?? "router", ["nft", "-f", "-"], { stdin: text });
    for (const r of rules) this.#counterTable.set(r.name, `${opts.ns ?? "router"}|${table}`);
  }

  /** Packets counted so far by a counter made with {@linkcode addCounters}. */
  async packets(name: string): Promise<number> {
    const where = this.#counterTable.get(name);
    if (!where) throw new Error(`counter ${name}: not added`);
    const [ns, table] = where.split("|") as [Role, string];
    return (await this.lab.nftCounter(ns, table, name)).packets;
  }

  /** TX packets of an interface in the router ns (`ip -s -j link`). */
  async txPackets(ifname: string, ns: Role = "router"): Promise<number> {
    const out = await this.lab.runOk(ns, ["ip", "-s", "-j", "link", "show", "dev", ifname]);
    const doc = JSON.parse(out) as { stats64?: { tx?: { packets: number } } }[];
    const n = doc[0]?.stats64?.tx?.packets;
    if (n === undefined) throw new Error(`ip -s -j link show ${ifname}: no tx stats`);
    return n;
  }

  /**
   * Adds a second router↔server veth link `tun10` (router) ↔ `eth1` (server)
   * on 10.R.4.0/24 and fd00:R:4::/64, with a route to the server's extra
   * addresses through it that loses to the main path (higher metric), so
   * only sockets bound to `tun10` (or policy routing) use it. Turns off
   * reverse-path filtering in the router ns (replies arrive on either link).
   */
  async addSecondLink(): Promise<SecondLink> {
    const a = this.addrs;
    const r = a.server4.split(".")[1]!;
    const h = a.server6.split(":")[1]!;
    const link: SecondLink = {
      routerIf: "tun10",
      serverIf: "eth1",
      router4: `10.${r}.4.1`,
      server4: `10.${r}.4.2`,
      router6: `fd00:${h}:4::1`,
      server6: `fd00:${h}:4::2`,
    };
    const s = this.lab.ns.server;
    const ip = (args: string[]) => this.lab.runOk("router", ["ip", ...args]);
    await ip([
      "link",
      "add",
      link.routerIf,
      "type",
      "veth",
      "peer",
      "name",
      link.serverIf,
      "netns",
      s,
    ]);
    await ip(["addr", "add", `${link.router4}/24`, "dev", link.routerIf]);
    await ip(["-6", "addr", "add", `${link.router6}/64`, "dev", link.routerIf, "nodad"]);
    await this.lab.runOk("server", ["ip", "addr", "add", `${link.server4}/24`, "dev", "eth1"]);
    await this.lab.runOk("server", [
      "ip",
      "-6",
      "addr",
      "add",
      `${link.server6}/64`,
      "dev",
      "eth1",
      "nodad",
    ]);
    await ip(["link", "set", link.routerIf, "up"]);
    await this.lab.runOk("server", ["ip", "link", "set", "eth1", "up"]);
    await ip(["route", "add", `10.${r}.3.0/24`, "via", link.server4, "metric", "100"]);
    await ip(["-6", "route", "add", `fd00:${h}:3::/64`, "via", link.server6, "metric", "4000"]);
    await this.lab.runOk("router", [
      "sysctl",
      "-qw",
      "net.ipv4.conf.all.rp_filter=0",
      "net.ipv4.conf.default.rp_filter=0",
      `net.ipv4.conf.${link.routerIf}.rp_filter=0`,
      "net.ipv4.conf.eth2.rp_filter=0",
    ]);
    return link;
  }

  /**
   * Kills the router, closes IPC, destroys the lab and removes the temp dir.
   * With `E2E_LOG_DIR` set, the router's log is kept there as
   * `<lab id>-router.log` for post-mortems. Idempotent.
   */
  async destroy(): Promise<void> {
    try {
      await this.#ipc?.close();
    } catch { /* closed */ }
    this.#ipc = null;
    await this.#router?.kill();
    for (const r of this.#retired) await r.kill();
    const logDir = Deno.env.get("E2E_LOG_DIR");
    if (logDir && this.#router) {
      await Deno.mkdir(logDir, { recursive: true });
      await Deno.writeTextFile(
        `${logDir}/${this.lab.id}-router.log`,
        this.#router.lines.join("\n") + "\n",
      );
    }
    await this.lab.destroy();
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }

  /** Stops the router (SIGTERM) and forgets it, so another can start. */
  async stopRouter(): Promise<void> {
    try {
      await this.#ipc?.close();
    } catch { /* closed */ }
    this.#ipc = null;
    await this.#router?.kill();
    this.#router = null;
  }
}

/**
 * Registers a `Deno.test` that gets a fresh {@linkcode RouterLab} (destroyed
 * afterwards, pass or fail). Op and resource sanitizers are off: the router,
 * the servers and the cached IPC connection live across steps.
 */
export function routerLabTest(
  name: string,
  fn: (rl: RouterLab, t: Deno.TestContext) => Promise<void>,
  opts: RouterLabOptions = {},
): void {
  Deno.test({
    name,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async (t) => {
      const rl = await RouterLab.create(opts);
      try {
        await fn(rl, t);
      } finally {
        await rl.destroy();
      }
    },
  });
}

/** Asserts `n` results, every one ok and verified (the failures in the message). */
export function assertAllVerified(results: FlowResult[], n: number): void {
  assert.equal(results.length, n);
  const bad = results.filter((r) => !r.ok || !r.verified);
  assert.equal(bad.length, 0, failures(results));
}

/** `ADDR:PORT` / `[V6]:PORT`. */
export function target(addr: string, port: number): string {
  return addr.includes(":") ? `[${addr}]:${port}` : `${addr}:${port}`;
}

/** A minimal TLS 1.2/1.3 ClientHello record with an SNI extension for `sni` (none if null). */
export function clientHello(sni: string | null): Uint8Array {
  const name = new TextEncoder().encode(sni ?? "");
  const u16 = (n: number) => [(n >> 8) & 0xff, n & 0xff];
  const ext: number[] = sni === null
    ? []
    : [0, 0, ...u16(name.length + 5), ...u16(name.length + 3), 0, ...u16(name.length), ...name];
  const body = [
    0x03,
    0x03,
    ...new Array(32).fill(7),
    0, // session id
    ...u16(4),
    0x13,
    0x01,
    0x13,
    0x02,
    1,
    0, // compression: null
    ...u16(ext.length),
    ...ext,
  ];
  const hs = [1, (body.length >> 16) & 0xff, ...u16(body.length), ...body];
  return Uint8Array.from([0x16, 0x03, 0x01, ...u16(hs.length), ...hs]);
}

/** An HTTP/1.1 GET with `Host: host`. */
export function httpGet(host: string): Uint8Array {
  return new TextEncoder().encode(
    `GET /e2e HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: e2e\r\nAccept: */*\r\n\r\n`,
  );
}

/** Base64 of bytes (for `payloadB64`). */
export function b64(b: Uint8Array): string {
  return btoa(String.fromCharCode(...b));
}

/** A compact description of the flows that failed verification, for assertion messages. */
export function failures(results: FlowResult[]): string {
  const bad = results.filter((r) => !r.ok || !r.verified);
  return bad.slice(0, 10).map((r) =>
    `#${r.i} ${r.target}: ok=${r.ok} verified=${r.verified} kind=${r.kind} ${r.error ?? ""} ` +
    `sent=${r.sent} received=${r.received}`
  ).join("\n") + (bad.length > 10 ? `\n... and ${bad.length - 10} more` : "");
}
