/**
 * Small helpers for the Slim Node's privileged tests and bench: run
 * commands (argv arrays) in network namespaces, start and stop `slim`, talk
 * to its API with curl inside the namespace, watch /proc for leaked keys.
 * Kept apart from the router's tests/netns/harness.ts on purpose.
 *
 * @module
 */

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** Output of a finished command. */
export interface Out {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command; never throws on a non-zero exit. Bounded by `timeoutMs`. */
export async function exec(
  cmd: string,
  args: string[],
  opts: { stdin?: string; timeoutMs?: number } = {},
): Promise<Out> {
  const child = new Deno.Command(cmd, {
    args,
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(opts.timeoutMs ?? 30_000),
  }).spawn();
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(encoder.encode(opts.stdin)).catch(() => {});
    await w.close().catch(() => {});
  }
  const o = await child.output();
  return { code: o.code, stdout: decoder.decode(o.stdout), stderr: decoder.decode(o.stderr) };
}

/** Runs a command and throws with its stderr when it fails. */
export async function sh(
  cmd: string,
  args: string[],
  opts: { stdin?: string; timeoutMs?: number } = {},
): Promise<string> {
  const o = await exec(cmd, args, opts);
  if (o.code !== 0) throw new Error(`${cmd} ${args.join(" ")}: exit ${o.code}: ${o.stderr}`);
  return o.stdout;
}

/** Runs `cmd args` inside network namespace `ns`. */
export function nsExec(
  ns: string,
  cmd: string,
  args: string[],
  opts: { stdin?: string; timeoutMs?: number } = {},
): Promise<Out> {
  return exec("ip", ["netns", "exec", ns, cmd, ...args], opts);
}

/** Like {@linkcode nsExec} but throws on failure. */
export function nsSh(
  ns: string,
  cmd: string,
  args: string[],
  opts: { stdin?: string; timeoutMs?: number } = {},
): Promise<string> {
  return sh("ip", ["netns", "exec", ns, cmd, ...args], opts);
}

/** Adds network namespaces, each with its loopback up. */
export async function addNamespaces(names: string[]): Promise<void> {
  for (const ns of names) {
    await sh("ip", ["netns", "add", ns]);
    await sh("ip", ["-n", ns, "link", "set", "lo", "up"]);
  }
}

/** One end of a {@linkcode vethPair}: namespace, device name, address with prefix. */
export interface VethEnd {
  ns: string;
  dev: string;
  cidr: string;
}

/** A veth pair from `a.ns` to `b.ns`, both ends addressed and up. */
export async function vethPair(a: VethEnd, b: VethEnd): Promise<void> {
  await sh("ip", [
    "-n",
    a.ns,
    "link",
    "add",
    a.dev,
    "type",
    "veth",
    "peer",
    "name",
    b.dev,
    "netns",
    b.ns,
  ]);
  for (const end of [a, b]) {
    await sh("ip", ["-n", end.ns, "addr", "add", end.cidr, "dev", end.dev]);
    await sh("ip", ["-n", end.ns, "link", "set", end.dev, "up"]);
  }
}

/** Options of {@linkcode wgClient}. */
export interface WgClientOptions {
  ns: string;
  dev: string;
  /** Base64 private key (given to `wg` on stdin, never on a command line). */
  privateKey: string;
  serverPublicKey: string;
  /** The server's `ADDR:PORT`. */
  endpoint: string;
  /** The client's tunnel address with prefix. */
  address: string;
  /** The tunnel network: the peer's allowed IPs and a route by the tunnel. */
  network: string;
  mtu?: number;
}

/** A `wireguard-go` client in a namespace with one peer (the server), addressed, up and routed. */
export async function wgClient(o: WgClientOptions): Promise<void> {
  await nsSh(o.ns, "wireguard-go", [o.dev]);
  await nsSh(o.ns, "wg", [
    "set",
    o.dev,
    "private-key",
    "/dev/stdin",
    "peer",
    o.serverPublicKey,
    "endpoint",
    o.endpoint,
    "allowed-ips",
    o.network,
  ], { stdin: o.privateKey });
  await sh("ip", ["-n", o.ns, "addr", "add", o.address, "dev", o.dev]);
  const mtu = o.mtu === undefined ? [] : ["mtu", String(o.mtu)];
  await sh("ip", ["-n", o.ns, "link", "set", o.dev, ...mtu, "up"]);
  await sh("ip", ["-n", o.ns, "route", "add", o.network, "dev", o.dev]);
}

/** True when we are root and every program is on PATH. */
export function canRunPrivileged(programs: string[]): boolean {
  if (Deno.uid() !== 0) return false;
  const path = (Deno.env.get("PATH") ?? "").split(":");
  return programs.every((p) =>
    path.some((d) => {
      try {
        return Deno.statSync(`${d}/${p}`).isFile;
      } catch {
        return false;
      }
    })
  );
}

/** A short random hex id for unique namespace and interface names. */
export function uid(n = 4): string {
  const b = crypto.getRandomValues(new Uint8Array(Math.ceil(n / 2)));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("").slice(0, n);
}

/**
 * Deletes namespaces. Their links are deleted first: a wireguard-go daemon
 * keeps its namespace alive through its sockets, so `ip netns del` alone
 * would leave it running; deleting its tun device makes it exit.
 */
export async function deleteNamespaces(names: string[]): Promise<void> {
  for (const n of names) {
    const o = await exec("ip", ["-n", n, "-j", "link", "show"]);
    const links = o.code === 0 ? JSON.parse(o.stdout || "[]") as { ifname: string }[] : [];
    for (const l of links) {
      if (l.ifname !== "lo") await exec("ip", ["-n", n, "link", "del", "dev", l.ifname]);
    }
    await exec("ip", ["netns", "del", n]);
  }
}

/** A running `slim run` inside a namespace. */
export class SlimProcess {
  readonly #child: Deno.ChildProcess;
  /** Everything slim wrote to stderr (its log). */
  log = "";
  readonly #done: Promise<void>;

  constructor(ns: string, mainPath: string, configPath: string) {
    const child = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        ns,
        Deno.execPath(),
        "run",
        "-A",
        mainPath,
        "run",
        "--config",
        configPath,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    this.#child = child;
    this.#done = (async () => {
      for await (const chunk of child.stderr) {
        if (this.log.length < 1_000_000) this.log += decoder.decode(chunk);
      }
    })();
  }

  /** The pid (`ip netns exec` execs, so this is the deno process). */
  get pid(): number {
    return this.#child.pid;
  }

  /** Kills with `signal` and waits for the exit. */
  async kill(signal: Deno.Signal = "SIGKILL"): Promise<void> {
    try {
      this.#child.kill(signal);
    } catch {
      // Already gone.
    }
    await this.#child.status;
    await this.#done;
  }
}

/** Parsed JSON of an API answer; tests index into it freely. */
// deno-lint-ignore no-explicit-any
export type Json = any;

/** A client for slim's API, run with curl inside the namespace (token via a header file). */
export class SlimApi {
  constructor(
    readonly ns: string,
    readonly port: number,
    readonly headerFile: string,
  ) {}

  /** Sends a request; returns the status and parsed JSON body. */
  async call(
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; json: Json }> {
    const args = [
      "-sS",
      "-m",
      "20",
      "-X",
      method,
      "-H",
      `@${this.headerFile}`,
      "-w",
      "\n%{http_code}",
      `http://127.0.0.1:${this.port}${path}`,
    ];
    if (body !== undefined) {
      args.push("-H", "content-type: application/json", "--data-binary", "@-");
    }
    const o = await nsExec(this.ns, "curl", args, {
      ...(body !== undefined ? { stdin: JSON.stringify(body) } : {}),
      timeoutMs: 25_000,
    });
    if (o.code !== 0) return { status: 0, json: { curl: o.stderr } };
    const nl = o.stdout.lastIndexOf("\n");
    const text = o.stdout.slice(0, nl);
    return { status: Number(o.stdout.slice(nl + 1)), json: text ? JSON.parse(text) : null };
  }

  /** Polls the liveness probe until it answers (bounded). */
  async waitReady(timeoutMs = 20_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      const o = await nsExec(this.ns, "curl", [
        "-sS",
        "-m",
        "1",
        `http://127.0.0.1:${this.port}/api/health/live`,
      ]);
      if (o.code === 0 && o.stdout.includes("ok")) return;
      await new Promise((r) => setTimeout(r, 150));
    }
    throw new Error(`slim did not become ready on port ${this.port}`);
  }
}

/**
 * Scans /proc/<pid>/cmdline of every process, repeatedly, for any of
 * `secrets` until `stop()`; returns the command lines that contained one.
 */
export function watchCmdlines(secrets: () => string[]): { stop: () => Promise<string[]> } {
  const hits = new Set<string>();
  let running = true;
  const scan = () => {
    const keys = secrets();
    if (keys.length === 0) return;
    for (const e of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(e.name)) continue;
      let cmd: string;
      try {
        cmd = decoder.decode(Deno.readFileSync(`/proc/${e.name}/cmdline`)).replaceAll("\0", " ");
      } catch {
        continue;
      }
      if (keys.some((k) => cmd.includes(k))) hits.add(cmd);
    }
  };
  const loop = (async () => {
    const end = Date.now() + 300_000; // bounded even if stop() is never called
    while (running && Date.now() < end) {
      scan();
      await new Promise((r) => setTimeout(r, 2));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      scan();
      return [...hits];
    },
  };
}
