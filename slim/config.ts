/**
 * `slim.json`: parsed, defaulted and validated in one place. Unknown fields
 * are errors; every message names the field, e.g.
 * `wireguard.mtu: 99999 is out of range 1280..9000`.
 *
 * @module
 */

import { parseIp } from "../core/ip.ts";
import { type Level, LEVELS } from "../core/log.ts";
import type { WireGuardMode } from "./kernel_linux.ts";
import { parseTableName } from "./nft.ts";
import {
  expectArray,
  expectBoolean,
  expectInt,
  expectObject,
  expectString,
  rejectUnknown,
  ValidationError,
} from "./validate.ts";

/** WireGuard defaults and programs. */
export interface WireGuardConfig {
  readonly mode: WireGuardMode;
  readonly mtu: number;
  /** Keepalive for new peers without one; null for off. */
  readonly persistentKeepalive: number | null;
  readonly listenPortRange: readonly [number, number];
  readonly wireguardGo: string;
  readonly wg: string;
}

/** The Slim Node configuration, defaults filled in. */
export interface SlimConfig {
  readonly listen: string;
  readonly listenPort: number;
  /** File holding the API bearer token (absolute path). */
  readonly tokenFile: string;
  /** SQLite state file (absolute path). */
  readonly statePath: string;
  readonly nftTable: string;
  readonly maxBodyBytes: number;
  readonly livenessProbe: boolean;
  readonly logLevel: Level;
  /** Drop traffic from a peer towards anything but another peer. */
  readonly peersOnly: boolean;
  readonly pruneUnknownInterfaces: boolean;
  readonly maxPeers: number;
  readonly maxRules: number;
  readonly wireguard: WireGuardConfig;
}

/** Defaults of every optional field. */
export const DEFAULTS = {
  listen: "127.0.0.1",
  listen_port: 8001,
  token_file: "/etc/vpn-router/slim.token",
  state_path: "/var/lib/vpn-router/slim.db",
  nft_table: "vpn_slim",
  max_body_bytes: 65536,
  liveness_probe: true,
  log_level: "info" as Level,
  peers_only: true,
  prune_unknown_interfaces: true,
  max_peers: 250,
  max_rules: 2000,
  wireguard: {
    mode: "auto" as WireGuardMode,
    mtu: 1420,
    persistent_keepalive_interval: 25,
    listen_port_range: [51820, 52819] as [number, number],
    wireguard_go: "wireguard-go",
    wg: "wg",
  },
};

const TOP = [
  "listen",
  "listen_port",
  "token_file",
  "state_path",
  "nft_table",
  "max_body_bytes",
  "liveness_probe",
  "log_level",
  "peers_only",
  "prune_unknown_interfaces",
  "max_peers",
  "max_rules",
  "wireguard",
] as const;
const WG = [
  "mode",
  "mtu",
  "persistent_keepalive_interval",
  "listen_port_range",
  "wireguard_go",
  "wg",
] as const;

function resolvePath(field: string, v: unknown, base: string): string {
  const s = expectString(field, v, 4096);
  if (s.length === 0 || s.includes("\0")) throw new ValidationError(field, "expected a path");
  return s.startsWith("/") ? s : `${base.replace(/\/$/, "")}/${s}`;
}

function pick<T>(
  o: Record<string, unknown>,
  k: string,
  def: T,
  parse: (f: string, v: unknown) => T,
) {
  return o[k] === undefined ? def : parse(k, o[k]);
}

/**
 * Validates a parsed `slim.json`; relative paths resolve against `baseDir`
 * (the config file's directory).
 */
export function parseSlimConfig(raw: unknown, baseDir: string): SlimConfig {
  const o = expectObject("config", raw);
  rejectUnknown("", o, TOP);
  const w = o.wireguard === undefined ? {} : expectObject("wireguard", o.wireguard);
  rejectUnknown("wireguard", w, WG);
  const d = DEFAULTS;
  const wf = (k: string) => `wireguard.${k}`;
  const range = w.listen_port_range === undefined
    ? d.wireguard.listen_port_range
    : expectArray(wf("listen_port_range"), w.listen_port_range, 2, (f, v) =>
      expectInt(f, v, 1, 65535));
  if (range.length !== 2 || range[0]! > range[1]!) {
    throw new ValidationError(wf("listen_port_range"), "expected [first, last] with first <= last");
  }
  const mode = w.mode === undefined ? d.wireguard.mode : expectString(wf("mode"), w.mode, 16);
  if (!["auto", "kernel", "userspace"].includes(mode)) {
    throw new ValidationError(
      wf("mode"),
      `${JSON.stringify(mode)}: expected auto, kernel or userspace`,
    );
  }
  const keepalive = w.persistent_keepalive_interval === undefined
    ? d.wireguard.persistent_keepalive_interval
    : expectInt(wf("persistent_keepalive_interval"), w.persistent_keepalive_interval, 0, 65535);
  const logLevel = pick(o, "log_level", d.log_level, (f, v) => {
    const s = expectString(f, v, 16);
    if (!(LEVELS as readonly string[]).includes(s)) {
      throw new ValidationError(f, `${JSON.stringify(s)}: expected one of ${LEVELS.join(", ")}`);
    }
    return s as Level;
  });
  return {
    listen: pick(o, "listen", d.listen, (f, v) => {
      const s = expectString(f, v, 64);
      if (!parseIp(s)) throw new ValidationError(f, `${JSON.stringify(s)}: not an IP address`);
      return s;
    }),
    listenPort: pick(o, "listen_port", d.listen_port, (f, v) => expectInt(f, v, 1, 65535)),
    tokenFile: resolvePath("token_file", o.token_file ?? d.token_file, baseDir),
    statePath: resolvePath("state_path", o.state_path ?? d.state_path, baseDir),
    nftTable: pick(o, "nft_table", d.nft_table, parseTableName),
    maxBodyBytes: pick(
      o,
      "max_body_bytes",
      d.max_body_bytes,
      (f, v) => expectInt(f, v, 1024, 16 << 20),
    ),
    livenessProbe: pick(o, "liveness_probe", d.liveness_probe, expectBoolean),
    logLevel,
    peersOnly: pick(o, "peers_only", d.peers_only, expectBoolean),
    pruneUnknownInterfaces: pick(
      o,
      "prune_unknown_interfaces",
      d.prune_unknown_interfaces,
      expectBoolean,
    ),
    maxPeers: pick(o, "max_peers", d.max_peers, (f, v) => expectInt(f, v, 1, 10_000)),
    maxRules: pick(o, "max_rules", d.max_rules, (f, v) => expectInt(f, v, 1, 100_000)),
    wireguard: {
      mode: mode as WireGuardMode,
      mtu: w.mtu === undefined ? d.wireguard.mtu : expectInt(wf("mtu"), w.mtu, 1280, 9000),
      persistentKeepalive: keepalive === 0 ? null : keepalive,
      listenPortRange: [range[0]!, range[1]!],
      wireguardGo: w.wireguard_go === undefined
        ? d.wireguard.wireguard_go
        : expectString(wf("wireguard_go"), w.wireguard_go, 4096),
      wg: w.wg === undefined ? d.wireguard.wg : expectString(wf("wg"), w.wg, 4096),
    },
  };
}

/** Reads and validates the config file; errors name the file and the field. */
export async function loadSlimConfig(path: string): Promise<SlimConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new Error(`Cannot read config ${path}: ${(e as Error).message}`, { cause: e });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new SyntaxError(`Cannot parse config ${path}: ${(e as Error).message}`, { cause: e });
  }
  const abs = path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
  const dir = abs.slice(0, abs.lastIndexOf("/")) || "/";
  try {
    return parseSlimConfig(raw, dir);
  } catch (e) {
    if (e instanceof ValidationError) {
      throw new ValidationError(e.field, `${e.message.slice(e.field.length + 2)} (in ${path})`);
    }
    throw e;
  }
}

/**
 * Reads the bearer token: the first line of the file, 16..512 visible
 * characters. Warns (through `warn`) when the file is readable by others.
 */
export async function readToken(path: string, warn: (msg: string) => void): Promise<string> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new Error(`token_file: cannot read ${path}: ${(e as Error).message}`, { cause: e });
  }
  const token = (text.split("\n")[0] ?? "").trim();
  if (!/^[\x21-\x7e]{16,512}$/.test(token)) {
    throw new ValidationError(
      "token_file",
      `${path}: the first line must be a token of 16..512 visible ASCII characters`,
    );
  }
  const mode = (await Deno.stat(path)).mode;
  if (mode !== null && (mode & 0o077) !== 0) {
    warn(`token_file ${path} is readable by group/others (mode ${(mode & 0o777).toString(8)})`);
  }
  return token;
}
