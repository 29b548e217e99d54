/**
 * Test helpers (internal): fake IPC handlers with fixed answers, a temp
 * socket path and a raw line-oriented connection.
 *
 * @module
 */

import { LineReader, writeAll } from "./line_reader.ts";
import {
  IpcError,
  type ReloadParams,
  type RouteTestParams,
  type RouteTestResult,
  type StatusResult,
} from "./protocol.ts";
import type { IpcHandlers } from "./server.ts";

/** The status the fake router reports. */
export const FAKE_STATUS: StatusResult = {
  version: "0.1.0-test",
  pid: 4242,
  started_at: "2026-01-01T00:00:00.000Z",
  uptime_s: 3723,
  config_path: "/etc/vpn-router/router.json",
  rules: 3,
  final: "direct",
  flows: { active: 12, tcp: 8, udp: 4, total: 3456 },
  outbounds: [
    { tag: "direct", type: "direct", state: "up", flows: 5 },
    { tag: "wg-us", type: "direct", kind: "wireguard", state: "up", flows: 7 },
    { tag: "xray-jp", type: "socks", kind: "xray", state: "down", flows: 0, detail: "refused" },
  ],
  last_reload: { at: "2026-01-01T01:00:00.000Z", ok: true, took_ms: 4.2, rules_compiled: 1 },
  memory: { rss: 83_886_080, heap_used: 9_437_184, heap_total: 12_582_912, external: 3_145_728 },
  udp: [{
    inbound: "tproxy-in",
    sessions: 4,
    max_sessions: 65536,
    created: 40,
    expired: 36,
    evicted: 0,
    dropped: 9,
    reply_sockets: 3,
    fail_fast: 2,
    shared_sockets: 2,
    unsolicited: 5,
    unsolicited_admitted: 4,
    socks_associations: 1,
  }],
};

/** The rules the fake route tester knows, by index. */
export const FAKE_RULES = [
  { domain_suffix: ["netflix.com"], outbound: "wg-us" },
  { port: [53], outbound: "block" },
  { ip_cidr: ["10.0.0.0/8"], outbound: "xray-jp" },
];

/** A deterministic route tester over {@linkcode FAKE_RULES}. */
export function fakeRouteTest(p: RouteTestParams): RouteTestResult {
  const port = Number(p.dst.slice(p.dst.lastIndexOf(":") + 1));
  // 10.53.53.x "was looked up" as dns.netflix.com (the router's DNS reverse mapping).
  const dnsName = p.domain === undefined && p.dns !== false && p.dst.startsWith("10.53.53.")
    ? "dns.netflix.com"
    : undefined;
  const domain = p.domain ?? dnsName;
  let rule: number | null = null;
  if (domain === "netflix.com" || domain?.endsWith(".netflix.com")) rule = 0;
  else if (port === 53) rule = 1;
  else if (p.dst.startsWith("10.")) rule = 2;
  if (rule === null) return { outbound: "direct", rule: null, final: true };
  const r = FAKE_RULES[rule]!;
  return {
    outbound: r.outbound,
    rule,
    rule_text: JSON.stringify(r),
    final: false,
    ...(dnsName !== undefined ? { dns_name: dnsName } : {}),
  };
}

/** Records what the fake handlers were asked. */
export interface FakeCalls {
  reload: ReloadParams[];
  routeTest: RouteTestParams[];
}

/**
 * Fake handlers: fixed answers; `reload` of a path containing `bad` fails
 * with `config_invalid`; `overrides` replace single handlers.
 */
export function fakeHandlers(
  overrides: Partial<IpcHandlers> = {},
): { handlers: IpcHandlers; calls: FakeCalls } {
  const calls: FakeCalls = { reload: [], routeTest: [] };
  const handlers: IpcHandlers = {
    ping: () => ({ pong: true }),
    status: () => structuredClone(FAKE_STATUS),
    reload: (p) => {
      calls.reload.push(p);
      if (p.path?.includes("bad")) {
        throw new IpcError(
          "config_invalid",
          `route.rules[3].ip_cidr[0]: "10.0.0.0/33": prefix out of range`,
        );
      }
      return {
        rules: 3,
        outbounds: 3,
        took_ms: 1.5,
        closed: p.close_removed ? 2 : 0,
        // A path naming "edited" had one rule compiled; "main" was compiled on the data plane.
        rules_compiled: p.path?.includes("edited") ? 1 : 3,
        compiled_on: p.path?.includes("main") ? "main" : "worker",
      };
    },
    routeTest: (p) => {
      calls.routeTest.push(p);
      return fakeRouteTest(p);
    },
    connectionsList: (p) => ({ connections: [], total: p.limit ?? 0 }),
    connectionsClose: (p) => ({ closed: "id" in p ? 1 : 7 }),
    outboundsList: () => ({ outbounds: structuredClone(FAKE_STATUS.outbounds) }),
    shutdown: (p) => ({ pid: 4242, flows: 12, drain_ms: p.drain_ms ?? 0 }),
    stats: (p) => ({
      uptime_s: 1,
      flows: { active: 0, tcp: 0, udp: 0, total: 0 },
      bytes_up: 10,
      bytes_down: 20,
      reloads: 1,
      reload_failures: 0,
      outbounds: {},
      // With rules: final's row, its hits = the limit asked for (to check what was sent).
      ...(p.rules
        ? { rules: [{ rule: null, outbound: "direct", hits: p.limit ?? 100 }], rules_hit: 0 }
        : {}),
    }),
    ...overrides,
  };
  return { handlers, calls };
}

/** A fresh socket path in a new temp dir; remove the dir when done. */
export async function tempSocketPath(): Promise<{ dir: string; path: string }> {
  const dir = await Deno.makeTempDir({ prefix: "ipc-test-" });
  return { dir, path: `${dir}/router.sock` };
}

/** A raw connection that sends text and reads reply lines. */
export class RawConn {
  readonly conn: Deno.UnixConn;
  readonly #lines: LineReader;

  private constructor(conn: Deno.UnixConn) {
    this.conn = conn;
    this.#lines = new LineReader(conn.readable, 64 << 20);
  }

  /** Connects to `path`. */
  static async open(path: string): Promise<RawConn> {
    return new RawConn(await Deno.connect({ transport: "unix", path }));
  }

  /** Sends raw text. */
  async send(text: string): Promise<void> {
    await writeAll(this.conn, new TextEncoder().encode(text));
  }

  /** The next reply parsed, or null at EOF. */
  async reply(): Promise<Record<string, unknown> | null> {
    const item = await this.#lines.next();
    if (item === null) return null;
    if (item.kind !== "line") throw new Error("reply too long");
    return JSON.parse(item.text);
  }

  /** Closes the connection. */
  async close(): Promise<void> {
    try {
      this.conn.close();
    } catch { /* closed */ }
    await this.#lines.cancel();
  }
}
