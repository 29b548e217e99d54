// Loopback tests of the Router itself (root: the TPROXY listener sets
// IP_TRANSPARENT, which ordinary local connections also reach).
import assert from "node:assert/strict";
import { compileEngine, parseConfig } from "../config/mod.ts";
import type { RouterConfig } from "../config/schema.ts";
import { createLogger, nullLogger } from "../core/log.ts";
import { Router, udpPlaneChanges } from "./router.ts";
import { testInbound } from "./_udp_test_util.ts";

function config(rules: unknown[]): RouterConfig {
  const c = parseConfig({
    inbounds: [{
      type: "tproxy",
      tag: "tp",
      listen: "127.0.0.1",
      listen_port: 1,
      network: "tcp",
      sniff: false,
    }],
    outbounds: [{ type: "direct", tag: "direct" }, { type: "block", tag: "block" }],
    route: { rules, final: "direct" },
    ipc: { path: "/tmp/unused.sock" },
  }, { baseDir: "/" });
  // Port 0: let the kernel pick (the schema asks for 1..65535).
  return { ...c, inbounds: [{ ...c.inbounds[0]!, listen_port: 0 }] };
}

/** One connection to the router's own listener; the rule blocks it (reset). */
async function blockedFlow(port: number): Promise<void> {
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
  } catch {
    return; // reset before connect() returned
  }
  try {
    await conn.read(new Uint8Array(1)).catch(() => null);
  } finally {
    try {
      conn.close();
    } catch { /* reset */ }
  }
}

Deno.test({
  name: "Router counts hits per rule from the first engine on, and carries them over a reload",
  ignore: Deno.uid() !== 0,
  fn: async () => {
    const rules = [{ ip_cidr: ["127.0.0.1/32"], outbound: "block" }];
    const c1 = config(rules);
    const router = Router.start(c1, await compileEngine(c1), { logger: nullLogger });
    try {
      const port = router.listenAddresses()[0]!.addresses[0]!.port;
      for (let i = 0; i < 3; i++) await blockedFlow(port);
      const hits = () => router.ruleHits().find((r) => r.rule === 0)?.hits;
      for (let i = 0; i < 100 && hits() !== 3; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(hits(), 3, "the first engine's hits are counted");

      const c2 = config([...rules, { port: [9], outbound: "direct" }]);
      router.reload(c2, await compileEngine(c2));
      assert.equal(hits(), 3, "an unchanged rule keeps its count across a reload");

      const c3 = config([{ ip_cidr: ["127.0.0.0/8"], outbound: "block" }]);
      router.reload(c3, await compileEngine(c3));
      assert.equal(hits(), 0, "a changed rule starts from zero");
    } finally {
      await router.stop();
    }
  },
});

Deno.test("udpPlaneChanges() names the UDP fields a reload cannot apply (the plane read them at start)", () => {
  const was = testInbound();
  assert.deepEqual(udpPlaneChanges(was, testInbound()), []);
  assert.deepEqual(
    udpPlaneChanges(was, testInbound({ udp_mapping: "per_destination", udp_timeout_ms: 1000 })),
    ["udp_timeout", "udp_mapping"],
  );
  assert.deepEqual(
    udpPlaneChanges(was, testInbound({ udp_filtering: "endpoint_independent" })),
    ["udp_filtering"],
  );
  assert.deepEqual(
    udpPlaneChanges(was, testInbound({ sniff: false, udp_max_sessions: 9, sniff_timeout_ms: 5 })),
    ["udp_max_sessions", "sniff", "sniff_timeout"],
  );
  // Fields the plane does not read: no warning.
  assert.deepEqual(udpPlaneChanges(was, testInbound({ tcp_idle_timeout_ms: 1 })), []);
});

Deno.test({
  name: "Router.reload() warns when an inbound's UDP settings change (the plane keeps its own)",
  ignore: Deno.uid() !== 0,
  fn: async () => {
    const udp = (extra: Record<string, unknown>): RouterConfig => {
      const c = parseConfig({
        inbounds: [{ type: "tproxy", tag: "tp", listen: "127.0.0.1", listen_port: 1, ...extra }],
        outbounds: [{ type: "direct", tag: "direct" }],
        route: { final: "direct" },
        ipc: { path: "/tmp/unused.sock" },
      }, { baseDir: "/" });
      return { ...c, inbounds: [{ ...c.inbounds[0]!, listen_port: 0 }] };
    };
    const lines: string[] = [];
    const logger = createLogger({ level: "warn", write: (l) => lines.push(l) });
    const c1 = udp({ network: "udp" });
    const router = Router.start(c1, await compileEngine(c1), { logger });
    try {
      const c2 = udp({ network: "udp", udp_mapping: "per_destination", udp_timeout: "1m" });
      router.reload(c2, await compileEngine(c2));
      const warned = lines.filter((l) => l.includes("UDP settings take effect after a restart"));
      assert.equal(warned.length, 1, lines.join("\n"));
      assert.match(warned[0]!, /inbound=tp fields=udp_timeout,udp_mapping/);
      lines.length = 0;
      router.reload(c2, await compileEngine(c2));
      assert.deepEqual(lines, [], "the same settings again: nothing to say");
    } finally {
      await router.stop();
    }
  },
});
