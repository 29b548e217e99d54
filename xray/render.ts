/**
 * Renders the Xray-lite bridge configs (VLESS + XHTTP + REALITY) from
 * validated settings. Two sides:
 *
 * - `ingress`: the far server. VLESS inbound over XHTTP with REALITY
 *   (`dest`, `serverNames`, `privateKey`, `shortIds`), `freedom` outbound.
 * - `egress`: next to the router. A SOCKS5 inbound on 127.0.0.1:37101 (what
 *   a `type: "socks", kind: "xray"` outbound dials) and a VLESS outbound
 *   over XHTTP with REALITY (`publicKey`, `shortId`, `serverName`,
 *   `fingerprint`).
 *
 * Field names follow Xray-core's documented schema (`streamSettings.network:
 * "xhttp"`, `xhttpSettings`, `security: "reality"`, `realitySettings`). The
 * templates are JSON with whole-string `"{{name}}"` placeholders, replaced
 * by typed values (numbers, arrays) after validation. Errors name the field.
 *
 * @module
 */

import ingressTemplate from "./templates/ingress.json" with { type: "json" };
import egressTemplate from "./templates/egress.json" with { type: "json" };
import { parseIp } from "../core/ip.ts";

/** Which side of the bridge a config is for. */
export type XraySide = "ingress" | "egress";

/** XHTTP transport settings shared by both sides. */
export interface XhttpSettings {
  path: string;
  mode: "auto" | "packet-up" | "stream-up" | "stream-one";
}

/** Validated settings of the ingress (server) side. */
export interface IngressSettings {
  listen: string;
  port: number;
  uuid: string;
  xhttp: XhttpSettings;
  reality: { dest: string; serverNames: string[]; privateKey: string; shortIds: string[] };
  logLevel: string;
}

/** Validated settings of the egress (router-side) bridge. */
export interface EgressSettings {
  socksListen: string;
  socksPort: number;
  /** Xray policy `handshake` (s): how long a warmed SOCKS connection may idle before CONNECT. */
  socksHandshakeTimeout: number;
  server: string;
  serverPort: number;
  uuid: string;
  xhttp: XhttpSettings;
  reality: {
    serverName: string;
    fingerprint: string;
    publicKey: string;
    shortId: string;
    spiderX: string;
  };
  logLevel: string;
}

/** Default SOCKS port of the egress bridge (what the router's xray outbound dials). */
export const DEFAULT_SOCKS_PORT = 37101;

const FINGERPRINTS = [
  "chrome",
  "firefox",
  "safari",
  "ios",
  "android",
  "edge",
  "360",
  "qq",
  "random",
  "randomized",
];
const LOG_LEVELS = ["debug", "info", "warning", "error", "none"];
const XHTTP_MODES = ["auto", "packet-up", "stream-up", "stream-one"];

type Obj = Record<string, unknown>;

function err(path: string, msg: string): never {
  throw new TypeError(`${path}: ${msg}`);
}

function show(v: unknown): string {
  return JSON.stringify(v) ?? String(v);
}

function obj(v: unknown, path: string, allowed: readonly string[]): Obj {
  if (typeof v !== "object" || v === null || Array.isArray(v)) err(path, "want an object");
  for (const k of Object.keys(v)) {
    if (!allowed.includes(k)) err(path ? `${path}.${k}` : k, "unknown field");
  }
  return v as Obj;
}

function str(o: Obj, key: string, path: string, dflt?: string): string {
  const v = o[key] ?? dflt;
  const p = path ? `${path}.${key}` : key;
  if (v === undefined) err(p, "required");
  if (typeof v !== "string") err(p, `${show(v)}: want a string`);
  return v;
}

function port(o: Obj, key: string, path: string, dflt?: number): number {
  const v = o[key] ?? dflt;
  const p = path ? `${path}.${key}` : key;
  if (v === undefined) err(p, "required");
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > 65535) {
    err(p, `${show(v)}: want a port 1..65535`);
  }
  return v;
}

function oneOf(v: string, options: readonly string[], path: string): string {
  if (!options.includes(v)) err(path, `"${v}": want one of ${options.join(", ")}`);
  return v;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Checks a VLESS user id: a UUID in 8-4-4-4-12 hex form. */
export function checkUuid(v: string, path: string): string {
  if (!UUID_RE.test(v)) err(path, `"${v}": want a UUID like 0b5f5b7a-8c2e-4d3f-9a1b-2c3d4e5f6a7b`);
  return v.toLowerCase();
}

/** Checks an X25519 key as Xray prints it: 43 base64url characters = 32 bytes. */
export function checkRealityKey(v: string, path: string): string {
  if (!/^[A-Za-z0-9_-]{43}$/.test(v)) {
    err(path, `"${v}": want 43 base64url characters (xray x25519 output)`);
  }
  const bin = atob(v.replaceAll("-", "+").replaceAll("_", "/") + "=");
  const canonical = btoa(bin).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
  if (bin.length !== 32 || canonical !== v) err(path, `"${v}": not a canonical 32-byte key`);
  return v;
}

/** Checks a REALITY short id: hex, even length, at most 16 characters ("" allowed). */
export function checkShortId(v: string, path: string): string {
  if (!/^([0-9a-f]{2}){0,8}$/i.test(v)) {
    err(path, `"${v}": want hex of even length, at most 16 characters`);
  }
  return v.toLowerCase();
}

/** Checks a DNS name (labels 1..63 of letters, digits, hyphens; at most 253 characters). */
export function checkHostname(v: string, path: string): string {
  const label = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;
  if (v.length < 1 || v.length > 253 || !v.split(".").every((l) => label.test(l))) {
    err(path, `"${v}": not a valid host name`);
  }
  return v.toLowerCase();
}

function checkHost(v: string, path: string): string {
  if (parseIp(v)) return v;
  return checkHostname(v, path);
}

/** Checks a REALITY `dest`: `host:port` or `[v6]:port`. */
function checkDest(v: string, path: string): string {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(v);
  if (!m) err(path, `"${v}": want host:port`);
  const host = m[1] ?? m[2]!;
  if (m[1] !== undefined && !parseIp(m[1])) err(path, `"${v}": bad IPv6 address`);
  if (m[1] === undefined) checkHost(host, path);
  const p = Number(m[3]);
  if (p < 1 || p > 65535) err(path, `"${v}": port out of range`);
  return v;
}

function xhttp(o: Obj, path: string): XhttpSettings {
  const x = obj(o["xhttp"] ?? {}, path, ["path", "mode"]);
  const p = str(x, "path", path, "/");
  if (!/^\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]{0,255}$/.test(p)) {
    err(`${path}.path`, `"${p}": want an absolute URL path`);
  }
  const mode = oneOf(str(x, "mode", path, "auto"), XHTTP_MODES, `${path}.mode`);
  return { path: p, mode: mode as XhttpSettings["mode"] };
}

function listenIp(v: string, path: string): string {
  if (!parseIp(v)) err(path, `"${v}": not an IP address`);
  return v;
}

/** Validates ingress settings (JSON from a file); errors name the field. */
export function validateIngressSettings(input: unknown): IngressSettings {
  const o = obj(input, "", ["listen", "port", "uuid", "xhttp", "reality", "log_level"]);
  const r = obj(o["reality"], "reality", ["dest", "server_names", "private_key", "short_ids"]);
  const names = r["server_names"];
  if (!Array.isArray(names) || names.length === 0 || names.length > 64) {
    err("reality.server_names", "want 1..64 host names");
  }
  const ids = r["short_ids"] ?? [""];
  if (!Array.isArray(ids) || ids.length === 0 || ids.length > 64) {
    err("reality.short_ids", "want 1..64 short ids");
  }
  return {
    listen: listenIp(str(o, "listen", "", "0.0.0.0"), "listen"),
    port: port(o, "port", "", 443),
    uuid: checkUuid(str(o, "uuid", ""), "uuid"),
    xhttp: xhttp(o, "xhttp"),
    reality: {
      dest: checkDest(str(r, "dest", "reality"), "reality.dest"),
      serverNames: names.map((n, i) => {
        const p = `reality.server_names[${i}]`;
        return checkHostname(typeof n === "string" ? n : err(p, `${show(n)}: want a string`), p);
      }),
      privateKey: checkRealityKey(str(r, "private_key", "reality"), "reality.private_key"),
      shortIds: ids.map((s, i) => {
        const p = `reality.short_ids[${i}]`;
        return checkShortId(typeof s === "string" ? s : err(p, `${show(s)}: want a string`), p);
      }),
    },
    logLevel: oneOf(str(o, "log_level", "", "warning"), LOG_LEVELS, "log_level"),
  };
}

/** Validates egress settings (JSON from a file); errors name the field. */
export function validateEgressSettings(input: unknown): EgressSettings {
  const o = obj(input, "", [
    "socks_listen",
    "socks_port",
    "socks_handshake_timeout",
    "server",
    "server_port",
    "uuid",
    "xhttp",
    "reality",
    "log_level",
  ]);
  const r = obj(o["reality"], "reality", [
    "server_name",
    "fingerprint",
    "public_key",
    "short_id",
    "spider_x",
  ]);
  const hs = o["socks_handshake_timeout"] ?? 30;
  if (typeof hs !== "number" || !Number.isInteger(hs) || hs < 1 || hs > 3600) {
    err("socks_handshake_timeout", `${show(hs)}: want seconds 1..3600`);
  }
  const spiderX = str(r, "spider_x", "reality", "/");
  if (!spiderX.startsWith("/") || spiderX.length > 256) {
    err("reality.spider_x", `"${spiderX}": want a path starting with "/"`);
  }
  return {
    socksListen: listenIp(str(o, "socks_listen", "", "127.0.0.1"), "socks_listen"),
    socksPort: port(o, "socks_port", "", DEFAULT_SOCKS_PORT),
    socksHandshakeTimeout: hs,
    server: checkHost(str(o, "server", ""), "server"),
    serverPort: port(o, "server_port", "", 443),
    uuid: checkUuid(str(o, "uuid", ""), "uuid"),
    xhttp: xhttp(o, "xhttp"),
    reality: {
      serverName: checkHostname(str(r, "server_name", "reality"), "reality.server_name"),
      fingerprint: oneOf(
        str(r, "fingerprint", "reality", "chrome"),
        FINGERPRINTS,
        "reality.fingerprint",
      ),
      publicKey: checkRealityKey(str(r, "public_key", "reality"), "reality.public_key"),
      shortId: checkShortId(str(r, "short_id", "reality", ""), "reality.short_id"),
      spiderX,
    },
    logLevel: oneOf(str(o, "log_level", "", "warning"), LOG_LEVELS, "log_level"),
  };
}

/** Deep-copies `tpl`, replacing every whole-string `"{{name}}"` by `values[name]`. */
export function fillTemplate(tpl: unknown, values: Record<string, unknown>): unknown {
  if (typeof tpl === "string") {
    const m = /^\{\{([a-z_]+)\}\}$/.exec(tpl);
    if (!m) {
      if (tpl.includes("{{")) throw new Error(`template: partial placeholder in "${tpl}"`);
      return tpl;
    }
    if (!(m[1]! in values)) throw new Error(`template: no value for {{${m[1]}}}`);
    return structuredClone(values[m[1]!]);
  }
  if (Array.isArray(tpl)) return tpl.map((x) => fillTemplate(x, values));
  if (typeof tpl === "object" && tpl !== null) {
    const out: Obj = {};
    for (const [k, v] of Object.entries(tpl)) out[k] = fillTemplate(v, values);
    return out;
  }
  return tpl;
}

/** Renders the ingress (server) config. */
export function renderIngress(s: IngressSettings): Obj {
  return fillTemplate(ingressTemplate, {
    log_level: s.logLevel,
    listen: s.listen,
    port: s.port,
    uuid: s.uuid,
    xhttp_path: s.xhttp.path,
    xhttp_mode: s.xhttp.mode,
    reality_dest: s.reality.dest,
    reality_server_names: s.reality.serverNames,
    reality_private_key: s.reality.privateKey,
    reality_short_ids: s.reality.shortIds,
  }) as Obj;
}

/** Renders the egress (router-side) config. */
export function renderEgress(s: EgressSettings): Obj {
  return fillTemplate(egressTemplate, {
    log_level: s.logLevel,
    socks_listen: s.socksListen,
    socks_port: s.socksPort,
    socks_handshake_timeout: s.socksHandshakeTimeout,
    server: s.server,
    server_port: s.serverPort,
    uuid: s.uuid,
    xhttp_path: s.xhttp.path,
    xhttp_mode: s.xhttp.mode,
    reality_server_name: s.reality.serverName,
    reality_fingerprint: s.reality.fingerprint,
    reality_public_key: s.reality.publicKey,
    reality_short_id: s.reality.shortId,
    reality_spider_x: s.reality.spiderX,
  }) as Obj;
}

/** Validates raw settings for `side` and renders its config. */
export function renderXrayConfig(side: XraySide, settings: unknown): Obj {
  return side === "ingress"
    ? renderIngress(validateIngressSettings(settings))
    : renderEgress(validateEgressSettings(settings));
}
