// Loopback tests of the Router itself (root: the TPROXY listener sets
// IP_TRANSPARENT, which ordinary local connections also reach).
import assert from "node:assert/strict";
import { compileEngine, parseConfig } from "../config/mod.ts";
import type { RouterConfig } from "../config/schema.ts";
import { nullLogger } from "../core/log.ts";
import { Router } from "./router.ts";

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
