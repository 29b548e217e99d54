// Privileged (root, netns, nft): outbound health checks and fail-fast with the real
// `router run`. A socks outbound to microsocks in the router ns goes down when microsocks
// dies (seen by `router status --json`), its new flows are reset at once and counted, and
// it comes back by itself when microsocks returns; a direct outbound whose health_check
// target is unreachable shows down. Traffic stays inside the lab's namespaces.
import assert from "node:assert/strict";
import type { LabProcess } from "./harness.ts";
import { startMicrosocks } from "./_kinds_lab.ts";
import { failures, routerLabTest, target, waitUntil } from "./_router_lab.ts";

const SOCKS_PORT = 1080;
/** TEST-NET-1: the router ns has no route there, so connects fail with ENETUNREACH. */
const UNREACHABLE = "192.0.2.1:80";

interface OutboundRow {
  tag: string;
  state: string;
  health: string | null;
  last_error: string | null;
  since: string | null;
  last_check: string | null;
  errors: number;
  fail_fast: number;
}

routerLabTest(
  "router run: a down outbound is shown down, fails new flows fast, and recovers by itself",
  async (rl, t) => {
    let socks: LabProcess | null = null;
    const startSocks = async () => {
      socks = await startMicrosocks(rl.lab, SOCKS_PORT);
    };
    const status = async (): Promise<Map<string, OutboundRow>> => {
      const r = await rl.cli(["status", "--json", "--socket", rl.socketPath]);
      assert.equal(r.code, 0, r.stderr);
      const st = JSON.parse(r.stdout) as { outbounds: OutboundRow[] };
      return new Map(st.outbounds.map((o) => [o.tag, o]));
    };
    const waitState = (tag: string, state: string, ms = 15_000) =>
      waitUntil(
        async () => {
          const o = (await status()).get(tag);
          return o?.state === state ? o : null;
        },
        ms,
        `${tag} ${state}`,
      );
    const a = rl.addrs;
    await rl.server(["[::]:8080", "[::]:8081"], "echo");
    await startSocks();
    const outbounds = () => [
      {
        type: "socks",
        tag: "sx",
        server: "127.0.0.1",
        server_port: SOCKS_PORT,
        health_check: { interval: "1s", timeout: "1s" },
      },
      {
        // The same server through a pre-warmed pool (port 8081 flows).
        type: "socks",
        tag: "sp",
        server: "127.0.0.1",
        server_port: SOCKS_PORT,
        pool: { size: 4 },
        health_check: { interval: "1s", timeout: "1s" },
      },
      {
        type: "direct",
        tag: "dead",
        kind: "wireguard",
        routing_mark: 77,
        health_check: { target: UNREACHABLE, interval: "1s", timeout: "1s" },
      },
    ];
    const route = {
      rules: [{ port: 9, outbound: "dead" }, { port: 8081, outbound: "sp" }] as unknown[],
      final: "sx",
    };
    await rl.startRouter(rl.config({ outbounds: outbounds(), route }));
    const pid = rl.router.pid;
    const echo = target(a.extra4[0]!, 8080);
    // microsocks closes both ways at the first EOF: request/response without half-close.
    const pooled = target(a.extra4[0]!, 8081);
    const flow = (to = echo) => rl.flow({ target: to, mode: "rr", bytes: 64 }, 10_000);

    await t.step("the socks outbounds are up and carry flows", async () => {
      for (const tag of ["sx", "sp"]) {
        const o = await waitState(tag, "up");
        assert.equal(o.health, "active");
        assert.ok(o.last_check !== null, "a check ran");
      }
      for (const to of [echo, pooled]) {
        const r = await flow(to);
        assert.ok(r.ok && r.verified, failures([r]));
      }
    });

    await t.step(
      "a direct outbound with an unreachable health_check target is down",
      async () => {
        const dead = await waitState("dead", "down");
        assert.equal(dead.health, "active");
        assert.match(dead.last_error ?? "", /ENETUNREACH/);
        const r = await rl.flow({ target: target(a.extra4[0]!, 9), mode: "rr", bytes: 8 });
        assert.equal(r.kind, "reset", `${r.kind}: ${r.error}`);
        assert.ok((await status()).get("dead")!.fail_fast >= 1);
      },
    );

    await t.step("a reload that keeps an outbound keeps its health state", async () => {
      const before = (await status()).get("dead")!;
      const cfg = rl.config({
        outbounds: outbounds(),
        route: { ...route, rules: [...route.rules, { port: 10, outbound: "dead" }] },
      });
      const r = await rl.cli([
        "reload",
        "--config",
        await rl.writeConfig("r2.json", cfg),
        "--socket",
        rl.socketPath,
      ]);
      assert.equal(r.code, 0, r.stderr);
      const after = (await status()).get("dead")!;
      assert.equal(after.state, "down");
      assert.equal(after.since, before.since, "not restarted as unknown");
    });

    await t.step("microsocks dies: status shows both down with the last error", async () => {
      await socks!.kill();
      for (const tag of ["sx", "sp"]) {
        const o = await waitState(tag, "down");
        assert.match(o.last_error ?? "", /127\.0\.0\.1:1080.*ECONNREFUSED/);
        assert.ok(o.since !== null);
      }
    });

    await t.step("new flows to the down outbound are reset at once and counted", async () => {
      const before = (await status()).get("sx")!;
      const res = await rl.flows({
        flows: Array.from(
          { length: 5 },
          () => ({ target: echo, mode: "rr" as const, bytes: 64 }),
        ),
        timeoutMs: 10_000,
      });
      for (const r of res) assert.equal(r.kind, "reset", `${r.kind}: ${r.error}`);
      const after = (await status()).get("sx")!;
      assert.equal(after.fail_fast - before.fail_fast, 5);
      assert.equal(after.errors - before.errors, 5);
      const r = await flow(pooled);
      assert.equal(r.kind, "reset", `${r.kind}: ${r.error}`);
      const stats = await (await rl.ipc()).stats();
      assert.ok((stats.counters?.["fail_fast"] ?? 0) >= 7, JSON.stringify(stats.counters));
    });

    await t.step(
      "microsocks returns on the same port: both come back up by themselves",
      async () => {
        await startSocks();
        for (const [tag, to] of [["sx", echo], ["sp", pooled]] as const) {
          await waitState(tag, "up");
          const r = await flow(to);
          assert.ok(r.ok && r.verified, `${tag}: ${failures([r])}`);
        }
        assert.equal(rl.router.exited, false);
        assert.equal(rl.router.pid, pid, "same router process throughout");
      },
    );
  },
);
