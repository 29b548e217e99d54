/**
 * A reusable network-namespace lab for privileged tests and benches:
 *
 * ```
 *  client ns            router ns                  server ns
 *  eth0 10.R.1.2 ── eth1 10.R.1.1 | eth2 10.R.2.1 ── eth0 10.R.2.2
 *       fd00:R:1::2      fd00:R:1::1  fd00:R:2::1         fd00:R:2::2
 *                                                    lo   10.R.3.1..n, fd00:R:3::1..n
 * ```
 *
 * Names are `vr` + 6 random hex digits + `c`/`r`/`s`; R is random so that
 * labs running side by side do not collide. The router forwards v4 and v6
 * (plain kernel forwarding until {@linkcode Lab.applyTproxy} steers traffic
 * to a local listener). Every spawned process is killed and every namespace
 * deleted by {@linkcode Lab.destroy} (idempotent; call it in `finally`).
 *
 * @example
 * ```ts
 * const lab = await Lab.create();
 * try {
 *   const srv = await lab.tcpServer("server", lab.addrs.extra4[0]!, 8080, "hash");
 *   const r = await lab.tcpClient("client", `${lab.addrs.extra4[0]}:8080`, { bytes: 1000 });
 * } finally {
 *   await lab.destroy();
 * }
 * ```
 *
 * @module
 */

import {
  applyTproxyRules,
  type CommandResult,
  defaultTproxyOptions,
  removeTproxyRules,
  type RunCommand,
  runCommand,
  type TproxyRulesOptions,
} from "../../cli/tproxy_rules.ts";

/** The three roles of the lab. */
export type Role = "client" | "router" | "server";

/** Options of {@linkcode Lab.create}. */
export interface LabOptions {
  /** Lowercase hex id (1..6 chars) instead of a random one. */
  name?: string;
  /** Extra destination addresses per family on the server's lo (default 4, max 32). */
  extraAddrs?: number;
}

/** Every address of the lab (text, no prefix length). */
export interface LabAddrs {
  client4: string;
  client6: string;
  routerLan4: string;
  routerLan6: string;
  routerWan4: string;
  routerWan6: string;
  server4: string;
  server6: string;
  /** Extra server addresses, routed by the router via the server. */
  extra4: string[];
  extra6: string[];
}

/** Options of {@linkcode Lab.spawn}. */
export interface SpawnOptions {
  env?: Record<string, string>;
  cwd?: string;
}

/** Report of `peers/tcp_client.ts`. */
export interface TcpClientReport {
  ok: boolean;
  error?: string;
  local?: string;
  remote?: string;
  sent?: number;
  sentSha256?: string;
  received?: number;
  receivedSha256?: string;
  text?: string;
}

const PEERS = new URL("./peers/", import.meta.url);
const MAX_LINES = 10_000;
const MAX_STDERR = 64 * 1024;

/** Path of a peer script under tests/netns/peers/. */
export function peerPath(file: string): string {
  return new URL(file, PEERS).pathname;
}

/** A process started in a namespace; stdout is split into lines, stderr kept (bounded). */
export class LabProcess {
  readonly lines: string[] = [];
  stderr = "";
  readonly #child: Deno.ChildProcess;
  readonly #pumps: Promise<void>[];
  #waiters: (() => void)[] = [];
  #exited = false;
  readonly status: Promise<Deno.CommandStatus>;

  constructor(child: Deno.ChildProcess, readonly argv: readonly string[]) {
    this.#child = child;
    this.#pumps = [this.#pumpOut(), this.#pumpErr()];
    this.status = child.status.then((s) => {
      this.#exited = true;
      this.#wake();
      return s;
    });
  }

  /** True once the process has exited. */
  get exited(): boolean {
    return this.#exited;
  }

  /** Process id (the command itself: `ip netns exec` execs it). */
  get pid(): number {
    return this.#child.pid;
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  async #pumpOut(): Promise<void> {
    let rest = "";
    for await (const chunk of this.#child.stdout.pipeThrough(new TextDecoderStream())) {
      rest += chunk;
      let i;
      while ((i = rest.indexOf("\n")) >= 0) {
        this.lines.push(rest.slice(0, i));
        if (this.lines.length > MAX_LINES) this.lines.shift();
        rest = rest.slice(i + 1);
      }
      this.#wake();
    }
    if (rest !== "") this.lines.push(rest);
    this.#wake();
  }

  async #pumpErr(): Promise<void> {
    for await (const chunk of this.#child.stderr.pipeThrough(new TextDecoderStream())) {
      if (this.stderr.length < MAX_STDERR) this.stderr += chunk.slice(0, MAX_STDERR);
    }
  }

  /** Resolves with the first stdout line matching `pattern`; rejects on exit or timeout. */
  async waitForLine(pattern: RegExp, timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let seen = 0;
    for (;;) {
      for (; seen < this.lines.length; seen++) {
        if (pattern.test(this.lines[seen]!)) return this.lines[seen]!;
      }
      if (this.#exited) {
        throw new Error(`${this.argv.join(" ")} exited before ${pattern}: ${this.stderr.trim()}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`${this.argv.join(" ")}: no line ${pattern} in ${timeoutMs} ms`);
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; waits for exit and drains output. Idempotent. */
  async kill(graceMs = 2000): Promise<void> {
    if (!this.#exited) {
      try {
        this.#child.kill("SIGTERM");
      } catch { /* already gone */ }
      const t = setTimeout(() => {
        try {
          this.#child.kill("SIGKILL");
        } catch { /* already gone */ }
      }, graceMs);
      await this.status;
      clearTimeout(t);
    }
    await Promise.all(this.#pumps);
  }
}

function randomHex(bytes: number): string {
  const b = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** The netns lab (see the module doc). */
export class Lab {
  readonly ns: Record<Role, string>;
  readonly ifaces = { client: "eth0", routerLan: "eth1", routerWan: "eth2", server: "eth0" };
  readonly #procs = new Set<LabProcess>();
  #destroyed = false;
  #created: string[] = [];

  private constructor(readonly id: string, readonly addrs: LabAddrs) {
    this.ns = { client: `vr${id}c`, router: `vr${id}r`, server: `vr${id}s` };
  }

  /** Builds the three namespaces, links, addresses and routes; destroys them on failure. */
  static async create(opts: LabOptions = {}): Promise<Lab> {
    const id = opts.name ?? randomHex(3);
    if (!/^[0-9a-f]{1,6}$/.test(id)) {
      throw new TypeError(`name: "${id}": expected 1..6 lowercase hex digits`);
    }
    const n = opts.extraAddrs ?? 4;
    if (!Number.isInteger(n) || n < 0 || n > 32) {
      throw new RangeError(`extraAddrs: ${n}: expected 0..32`);
    }
    const r = 16 + (crypto.getRandomValues(new Uint8Array(1))[0]! % 230);
    const h = r.toString(16);
    const range = (k: number) => Array.from({ length: k }, (_, i) => i + 1);
    const lab = new Lab(id, {
      client4: `10.${r}.1.2`,
      client6: `fd00:${h}:1::2`,
      routerLan4: `10.${r}.1.1`,
      routerLan6: `fd00:${h}:1::1`,
      routerWan4: `10.${r}.2.1`,
      routerWan6: `fd00:${h}:2::1`,
      server4: `10.${r}.2.2`,
      server6: `fd00:${h}:2::2`,
      extra4: range(n).map((i) => `10.${r}.3.${i}`),
      extra6: range(n).map((i) => `fd00:${h}:3::${i}`),
    });
    try {
      await lab.#build(r, h);
    } catch (e) {
      await lab.destroy();
      throw e;
    }
    return lab;
  }

  async #ip(args: string[]): Promise<void> {
    const res = await runCommand(["ip", ...args]);
    if (res.code !== 0) throw new Error(`ip ${args.join(" ")}: ${res.stderr.trim()}`);
  }

  async #build(r: number, h: string): Promise<void> {
    const { client: c, router: rt, server: s } = this.ns;
    const a = this.addrs;
    for (const ns of [c, rt, s]) {
      await this.#ip(["netns", "add", ns]);
      this.#created.push(ns);
      await this.#ip(["-n", ns, "link", "set", "lo", "up"]);
      // No DAD on links created from here on: addresses usable at once.
      await this.runOk(ns, [
        "sysctl",
        "-qw",
        "net.ipv6.conf.all.accept_dad=0",
        "net.ipv6.conf.default.accept_dad=0",
      ]);
    }
    const i = this.ifaces;
    await this.#ip([
      "link",
      "add",
      i.client,
      "netns",
      c,
      "type",
      "veth",
      "peer",
      "name",
      i.routerLan,
      "netns",
      rt,
    ]);
    await this.#ip([
      "link",
      "add",
      i.routerWan,
      "netns",
      rt,
      "type",
      "veth",
      "peer",
      "name",
      i.server,
      "netns",
      s,
    ]);
    const addr = (ns: string, cidr: string, dev: string) =>
      this.#ip([
        "-n",
        ns,
        "addr",
        "add",
        cidr,
        "dev",
        dev,
        ...(cidr.includes(":") ? ["nodad"] : []),
      ]);
    await addr(c, `${a.client4}/24`, i.client);
    await addr(c, `${a.client6}/64`, i.client);
    await addr(rt, `${a.routerLan4}/24`, i.routerLan);
    await addr(rt, `${a.routerLan6}/64`, i.routerLan);
    await addr(rt, `${a.routerWan4}/24`, i.routerWan);
    await addr(rt, `${a.routerWan6}/64`, i.routerWan);
    await addr(s, `${a.server4}/24`, i.server);
    await addr(s, `${a.server6}/64`, i.server);
    for (const x of a.extra4) await addr(s, `${x}/32`, "lo");
    for (const x of a.extra6) await addr(s, `${x}/128`, "lo");
    for (const [ns, dev] of [[c, i.client], [rt, i.routerLan], [rt, i.routerWan], [s, i.server]]) {
      await this.#ip(["-n", ns!, "link", "set", dev!, "up"]);
    }
    await this.#ip(["-n", c, "route", "add", "default", "via", a.routerLan4]);
    await this.#ip(["-n", c, "-6", "route", "add", "default", "via", a.routerLan6]);
    await this.#ip(["-n", s, "route", "add", "default", "via", a.routerWan4]);
    await this.#ip(["-n", s, "-6", "route", "add", "default", "via", a.routerWan6]);
    await this.#ip(["-n", rt, "route", "add", `10.${r}.3.0/24`, "via", a.server4]);
    await this.#ip(["-n", rt, "-6", "route", "add", `fd00:${h}:3::/64`, "via", a.server6]);
    await this.runOk(rt, [
      "sysctl",
      "-qw",
      "net.ipv4.ip_forward=1",
      "net.ipv6.conf.all.forwarding=1",
    ]);
    await this.#waitNoTentative();
  }

  async #waitNoTentative(): Promise<void> {
    const deadline = Date.now() + 5000;
    for (const ns of Object.values(this.ns)) {
      for (;;) {
        const r = await this.run(ns, ["ip", "-6", "addr", "show", "tentative"]);
        if (r.stdout.trim() === "" || Date.now() > deadline) break;
        await new Promise((res) => setTimeout(res, 100));
      }
    }
  }

  /** Resolves a role or a namespace name to the namespace name. */
  nsName(ns: Role | string): string {
    return (this.ns as Record<string, string>)[ns] ?? ns;
  }

  /** Runs argv inside a namespace (role or name); never throws on a non-zero exit. */
  run(
    ns: Role | string,
    argv: readonly string[],
    opts: { stdin?: string } = {},
  ): Promise<CommandResult> {
    return runCommand(argv, { netns: this.nsName(ns), ...opts });
  }

  /** Like {@linkcode Lab.run} but throws on a non-zero exit. */
  async runOk(
    ns: Role | string,
    argv: readonly string[],
    opts: { stdin?: string } = {},
  ): Promise<string> {
    const r = await this.run(ns, argv, opts);
    if (r.code !== 0) {
      throw new Error(`[${this.nsName(ns)}] ${argv.join(" ")}: exit ${r.code}: ${r.stderr.trim()}`);
    }
    return r.stdout;
  }

  /** A {@linkcode RunCommand} bound to one namespace (for doctor/tproxy-rules). */
  runner(ns: Role | string): RunCommand {
    const name = this.nsName(ns);
    return (argv, opts = {}) => runCommand(argv, { ...opts, netns: name });
  }

  /** Starts argv inside a namespace; the process is killed by {@linkcode Lab.destroy}. */
  spawn(ns: Role | string, argv: readonly string[], opts: SpawnOptions = {}): LabProcess {
    if (this.#destroyed) throw new Error("lab destroyed");
    const full = ["netns", "exec", this.nsName(ns), ...argv];
    const child = new Deno.Command("ip", {
      args: full,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      ...(opts.env ? { env: opts.env } : {}),
      ...(opts.cwd ? { cwd: opts.cwd } : {}),
    }).spawn();
    const p = new LabProcess(child, argv);
    this.#procs.add(p);
    return p;
  }

  /** Applies our TPROXY rules in the router ns (LAN interface only, sysctls set). */
  async applyTproxy(partial: Partial<TproxyRulesOptions> = {}): Promise<TproxyRulesOptions> {
    const o: TproxyRulesOptions = {
      ...defaultTproxyOptions(),
      interfaces: [this.ifaces.routerLan],
      ...partial,
    };
    await applyTproxyRules(o, runCommand, { netns: this.ns.router, setSysctls: true });
    return o;
  }

  /** Removes our TPROXY rules from the router ns. */
  async removeTproxy(o: TproxyRulesOptions): Promise<void> {
    await removeTproxyRules(o, runCommand, { netns: this.ns.router });
  }

  /** Reads a named nft counter (`inet` family). */
  async nftCounter(
    ns: Role | string,
    table: string,
    name: string,
  ): Promise<{ packets: number; bytes: number }> {
    const out = await this.runOk(ns, ["nft", "-j", "list", "counter", "inet", table, name]);
    const doc = JSON.parse(out) as { nftables: { counter?: { packets: number; bytes: number } }[] };
    const c = doc.nftables.find((x) => x.counter)?.counter;
    if (!c) throw new Error(`counter inet ${table} ${name}: not found`);
    return { packets: c.packets, bytes: c.bytes };
  }

  /** Starts `peers/echo_server.ts` and waits until it listens. */
  async tcpServer(
    ns: Role | string,
    addr: string,
    port: number,
    mode: "echo" | "sink" | "hash" | "refuse",
  ): Promise<LabProcess> {
    const listen = addr.includes(":") ? `[${addr}]:${port}` : `${addr}:${port}`;
    const p = this.spawn(ns, [
      Deno.execPath(),
      "run",
      "-A",
      peerPath("echo_server.ts"),
      "--listen",
      listen,
      "--mode",
      mode,
    ]);
    await p.waitForLine(/^ready$/, 20_000);
    return p;
  }

  /**
   * Starts `peers/udp_dns.py serve` in the server namespace on `listen`
   * (`ADDR:PORT`), answering every A query with `answer`, for `seconds`
   * (default 120), over TCP too with `tcp`, and waits until it is bound.
   */
  async dnsServer(
    listen: string,
    answer: string,
    opts: { seconds?: number; tcp?: boolean } = {},
  ): Promise<LabProcess> {
    const p = this.spawn("server", [
      "python3",
      peerPath("udp_dns.py"),
      "serve",
      "--listen",
      listen,
      "--answer",
      answer,
      "--seconds",
      String(opts.seconds ?? 120),
      ...(opts.tcp ? ["--tcp", "1"] : []),
    ]);
    await p.waitForLine(/^ready$/, 10_000);
    return p;
  }

  /**
   * One A query for `name` to `server` (`ADDR:PORT`) from the client
   * namespace with `peers/udp_dns.py query` (over TCP with `tcp`): its report.
   */
  async dnsQuery(
    server: string,
    name: string,
    opts: { tcp?: boolean } = {},
  ): Promise<{ ok: boolean; from?: string; answers?: string[]; error?: string }> {
    const r = await this.run("client", [
      "python3",
      peerPath("udp_dns.py"),
      "query",
      "--server",
      server,
      "--name",
      name,
      ...(opts.tcp ? ["--tcp", "1"] : []),
    ]);
    try {
      return JSON.parse(r.stdout.trim());
    } catch {
      return { ok: false, error: `udp_dns.py: exit ${r.code}: ${r.stderr.trim()}` };
    }
  }

  /** Runs `peers/tcp_client.ts` to `target` (`ADDR:PORT` / `[V6]:PORT`) and parses its report. */
  async tcpClient(
    ns: Role | string,
    target: string,
    opts: { bytes?: number; seed?: number; timeoutMs?: number } = {},
  ): Promise<TcpClientReport> {
    const r = await this.run(ns, [
      Deno.execPath(),
      "run",
      "-A",
      peerPath("tcp_client.ts"),
      "--connect",
      target,
      "--bytes",
      String(opts.bytes ?? 0),
      "--seed",
      String(opts.seed ?? 1),
      "--timeout-ms",
      String(opts.timeoutMs ?? 10_000),
    ]);
    const line = r.stdout.trim().split("\n").pop() ?? "";
    try {
      return JSON.parse(line) as TcpClientReport;
    } catch {
      return { ok: false, error: `tcp_client: exit ${r.code}: ${r.stderr.trim()}` };
    }
  }

  /** Sends one UDP datagram from `ns` with `peers/udp_client.py` and returns its report. */
  async udpClient(
    ns: Role | string,
    target: string,
    payload = "ping",
  ): Promise<{ ok: boolean; from?: string; text?: string; error?: string }> {
    const r = await this.run(ns, [
      "python3",
      peerPath("udp_client.py"),
      "--connect",
      target,
      "--payload",
      payload,
    ]);
    try {
      return JSON.parse(r.stdout.trim()) as { ok: boolean; from?: string; text?: string };
    } catch {
      return { ok: false, error: `udp_client: exit ${r.code}: ${r.stderr.trim()}` };
    }
  }

  /**
   * Starts the python stand-in TPROXY listener (`peers/transparent_listener.py`)
   * in the router ns; it answers each flow with its original destination.
   */
  async transparentListener(
    listen: string,
    network: "tcp" | "udp",
    max = 100,
  ): Promise<LabProcess> {
    const p = this.spawn("router", [
      "python3",
      peerPath("transparent_listener.py"),
      "--listen",
      listen,
      "--network",
      network,
      "--max",
      String(max),
      "--seconds",
      "60",
    ]);
    await p.waitForLine(/^ready$/, 10_000);
    return p;
  }

  /** Kills every spawned process and deletes the namespaces. Idempotent. */
  async destroy(): Promise<void> {
    this.#destroyed = true;
    const procs = [...this.#procs];
    this.#procs.clear();
    await Promise.all(procs.map((p) => p.kill()));
    const names = this.#created;
    this.#created = [];
    for (const ns of names) await runCommand(["ip", "netns", "del", ns]);
  }

  /**
   * Deletes leftover lab namespaces (`PREFIX` + hex + c/r/s) older than
   * `minAgeMs` (so labs of a test running right now survive). Returns their names.
   */
  static async cleanupStale(prefix = "vr", minAgeMs = 10 * 60_000): Promise<string[]> {
    const re = new RegExp(`^${prefix.replace(/[^a-z0-9]/g, "")}[0-9a-f]{1,6}[crs]$`);
    const out = await runCommand(["ip", "netns", "list"]);
    const removed: string[] = [];
    for (const line of out.stdout.split("\n")) {
      const name = line.split(" ")[0] ?? "";
      if (!re.test(name)) continue;
      try {
        const st = await Deno.stat(`/run/netns/${name}`);
        const age = Date.now() - (st.mtime?.getTime() ?? 0);
        if (age < minAgeMs) continue;
      } catch { /* no file: delete anyway */ }
      const r = await runCommand(["ip", "netns", "del", name]);
      if (r.code === 0) removed.push(name);
    }
    return removed;
  }
}
