/**
 * What the netns benches (`netns_bench.ts`, `udp_bench.ts`, `socks_bench.ts`)
 * share: the subject interface, starting a proxy process behind our TPROXY
 * rules in the router ns, v2ray's TPROXY config, and running the chosen
 * subjects one after another in a lab.
 *
 * @module
 */

import { Lab, type LabProcess, type SpawnOptions } from "../../tests/netns/harness.ts";

/** The TPROXY port every subject listens on in the router ns. */
export const TPROXY_PORT = 7893;
/** The mark a subject's upstream sockets carry (skipped by the TPROXY rules). */
export const SKIP_MARK = 255;

/** A running subject: the proxy's pid (none for kernel) and how to stop it. */
export interface SubjectHandle {
  pid?: number;
  stop(): Promise<void>;
  notes?: string[];
}

/** A bench subject: sets itself up in the router ns, or says why it cannot. */
export interface Subject {
  name: string;
  /** Returns the handle, or a string: the reason the subject is skipped. */
  setup(lab: Lab, workDir: string): Promise<SubjectHandle | string>;
}

/** Waits until something listens on TCP `port` in the router ns; false on timeout or exit. */
export async function waitListening(
  lab: Lab,
  port: number,
  timeoutMs: number,
  proc: LabProcess,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && !proc.exited) {
    const r = await lab.run("router", ["ss", "-Hltn", `sport = :${port}`]);
    if (r.stdout.trim() !== "") return true;
    await new Promise((res) => setTimeout(res, 100));
  }
  return false;
}

/** How {@linkcode startTproxyProxy} starts one proxy process. */
export interface TproxyProxySpec {
  /** Where the JSON config is written. */
  configPath: string;
  config: unknown;
  /** The command line, run in the router ns. */
  argv: string[];
  spawn?: SpawnOptions;
  timeoutMs: number;
  /** The skip reason when the process does not listen on {@linkcode TPROXY_PORT}. */
  failure(p: LabProcess): string;
  notes: string[];
}

/**
 * Writes the config, applies the TPROXY rules, starts the process in the
 * router ns and waits for it to listen; on failure undoes it all and
 * returns the reason.
 */
export async function startTproxyProxy(
  lab: Lab,
  spec: TproxyProxySpec,
): Promise<SubjectHandle | string> {
  await Deno.writeTextFile(spec.configPath, JSON.stringify(spec.config, null, 2));
  const o = await lab.applyTproxy({ port: TPROXY_PORT, skipMark: SKIP_MARK, family: "ipv4" });
  const p = lab.spawn("router", spec.argv, spec.spawn);
  const stop = async () => {
    await p.kill();
    await lab.removeTproxy(o);
  };
  if (!await waitListening(lab, TPROXY_PORT, spec.timeoutMs, p)) {
    await stop();
    return spec.failure(p);
  }
  return { pid: p.pid, notes: spec.notes, stop };
}

/** v2ray v4 JSON: a TPROXY dokodemo-door in, `outbound` out with `sockopt.mark`. */
export function v2rayTproxyConfig(
  port: number,
  mark: number,
  network: string,
  outbound: Record<string, unknown>,
): unknown {
  return {
    log: { loglevel: "warning" },
    inbounds: [{
      tag: "tproxy-in",
      listen: "0.0.0.0",
      port,
      protocol: "dokodemo-door",
      settings: { network, followRedirect: true },
      streamSettings: { sockopt: { tproxy: "tproxy" } },
    }],
    outbounds: [{ ...outbound, streamSettings: { sockopt: { mark } } }],
  };
}

/** Debian's v2ray with `config` (written to `file` in the work dir) behind our TPROXY rules. */
export function v2raySubject(name: string, file: string, config: unknown, note: string): Subject {
  return {
    name,
    async setup(lab, dir) {
      const which = await lab.run("router", ["v2ray", "-version"]);
      if (which.code !== 0) return "v2ray not installed";
      const configPath = `${dir}/${file}`;
      return await startTproxyProxy(lab, {
        configPath,
        config,
        argv: ["v2ray", "-config", configPath],
        timeoutMs: 10_000,
        failure: (p) => `v2ray did not listen: ${p.stderr.trim().slice(0, 200)}`,
        notes: [note],
      });
    },
  };
}

/** The subject of `subjects` called `name`; throws naming `--subjects` when none is. */
export function findSubject(subjects: readonly Subject[], name: string): Subject {
  const s = subjects.find((x) => x.name === name);
  if (!s) {
    throw new TypeError(`--subjects: "${name}": unknown (${subjects.map((x) => x.name)})`);
  }
  return s;
}

/** Runs `f` with a fresh lab and a temp work dir, both removed afterwards. */
export async function withLab<T>(
  prefix: string,
  f: (lab: Lab, dir: string) => Promise<T>,
): Promise<T> {
  const lab = await Lab.create();
  const dir = await Deno.makeTempDir({ prefix });
  try {
    return await f(lab, dir);
  } finally {
    await lab.destroy();
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * For each named subject in turn: sets it up, runs `measure` and stops it;
 * a subject that cannot start gives `skipped(name, reason)` instead.
 */
export async function eachSubject<R>(
  lab: Lab,
  dir: string,
  subjects: readonly Subject[],
  names: readonly string[],
  log: (s: string) => void,
  measure: (name: string, h: SubjectHandle) => Promise<R>,
  skipped: (name: string, why: string) => R,
): Promise<R[]> {
  const results: R[] = [];
  for (const name of names) {
    const s = findSubject(subjects, name);
    log(`== ${name}`);
    const h = await s.setup(lab, dir);
    if (typeof h === "string") {
      log(`  skipped: ${h}`);
      results.push(skipped(name, h));
      continue;
    }
    try {
      results.push(await measure(name, h));
    } finally {
      await h.stop();
    }
  }
  return results;
}

/** Starts `iperf3 -s` on `dst`:5201 in the server ns. */
export function startIperfServer(lab: Lab, dst: string): LabProcess {
  return lab.spawn("server", ["iperf3", "-s", "-B", dst, "-p", "5201"]);
}

/** Runs `argv` in the client ns and parses its last stdout line as JSON numbers. */
export async function runJson(
  lab: Lab,
  argv: string[],
  label = argv.join(" "),
): Promise<Record<string, number>> {
  const r = await lab.run("client", argv);
  const line = r.stdout.trim().split("\n").pop() ?? "";
  try {
    return JSON.parse(line) as Record<string, number>;
  } catch {
    throw new Error(`${label}: exit ${r.code}: ${r.stderr.trim().slice(0, 300)}`);
  }
}
