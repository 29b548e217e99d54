// Privileged (root, netns, nft): adding, changing and removing outbounds by reload under live
// traffic, with the real `router run`. Open flows on other outbounds are never disturbed; flows on
// a removed outbound finish, or are closed when the reload asks for it (`close_removed` over IPC,
// `router reload --close-removed` on the CLI). Needs dante-server. Traffic stays inside the lab.
import assert from "node:assert/strict";
import type { ConnectionInfo } from "../../ipc/protocol.ts";
import { startDante } from "./_kinds_lab.ts";
import type { LabProcess } from "./harness.ts";
import { failures, type FlowResult, routerLabTest, target, waitUntil } from "./_router_lab.ts";

const DANTE_PORT = 1081;
// Even marks: the TPROXY rules match fwmark 0x1/0x1.
const A_MARK = 204, B_MARK_OLD = 206, B_MARK_NEW = 208, C_MARK = 210;
/** Failure kinds a client sees when the router closes its flow. */
const CLOSED_KINDS = ["reset", "broken_pipe", "eof", "other"];

routerLabTest(
  "router live outbound changes: reload adds, changes and removes outbounds without disturbing other flows",
  async (rl, t) => {
    const a = rl.addrs;
    await rl.server(["[::]:8080"], "echo");
    await rl.server(["[::]:8081"], "hash");
    await startDante(rl.lab, rl.dir, DANTE_PORT);
    await rl.addCounters([
      { name: "a_mark", match: `oifname "eth2" meta mark ${A_MARK}` },
      { name: "c_mark", match: `oifname "eth2" meta mark ${C_MARK}` },
      {
        name: "b_leg_old",
        match: `oifname "lo" tcp dport ${DANTE_PORT} meta mark ${B_MARK_OLD}`,
      },
      {
        name: "b_leg_new",
        match: `oifname "lo" tcp dport ${DANTE_PORT} meta mark ${B_MARK_NEW}`,
      },
    ]);
    const aDst = [a.extra4[0]!, a.extra6[0]!], bDst = [a.extra4[1]!, a.extra6[1]!];
    const cidrs = (addrs: string[]) => addrs.map((x) => `${x}/${x.includes(":") ? 128 : 32}`);
    const A = { type: "direct", tag: "A", kind: "wireguard", routing_mark: A_MARK };
    const B = (mark: number) => ({
      type: "socks",
      tag: "B",
      kind: "xray",
      server: "127.0.0.1",
      server_port: DANTE_PORT,
      pool: { size: 2 },
      routing_mark: mark,
    });
    const C = { type: "direct", tag: "C", kind: "warp", routing_mark: C_MARK };
    const direct = { type: "direct", tag: "direct" };
    const cfg = (outbounds: object[], rules: object[]) =>
      rl.config({ outbounds, route: { final: "direct", rules } });
    const cfg1 = cfg([direct, A, B(B_MARK_OLD)], [
      { ip_cidr: cidrs(aDst), outbound: "A" },
      { ip_cidr: cidrs(bDst), outbound: "B" },
    ]);
    // A removed, B's mark changed, C added and given A's destinations.
    const cfg2 = cfg([direct, B(B_MARK_NEW), C], [
      { ip_cidr: cidrs(aDst), outbound: "C" },
      { ip_cidr: cidrs(bDst), outbound: "B" },
    ]);
    // C removed: its destinations fall through to final direct.
    const cfg3 = cfg([direct, B(B_MARK_NEW)], [{ ip_cidr: cidrs(bDst), outbound: "B" }]);

    const router = await rl.startRouter(cfg1, "live.json");
    const ipc = await rl.ipc();
    const echo = async (addr: string) => {
      const r = await rl.flow({ target: target(addr, 8080), mode: "echo", bytes: 64 << 10 });
      assert.equal(failures([r]), "");
      return await router.waitFlowLine(r);
    };
    let stopN = 0;
    /** Long paced uploads to the hash server; stop them by creating the returned file. */
    const paced = (addrs: string[]) => {
      const stopFile = `${rl.dir}/stop-${stopN++}`;
      const p = rl.spawnFlows({
        flows: addrs.map((addr) => ({
          target: target(addr, 8081),
          mode: "paced" as const,
          chunk: 8192,
          intervalMs: 20,
          stopFile,
          maxMs: 45_000,
        })),
        concurrency: addrs.length,
        timeoutMs: 10_000,
      });
      return { p, stopFile };
    };
    const open = async (outbound: string) =>
      (await ipc.connectionsList()).connections.filter((c) =>
        c.outbound === outbound && c.dst.endsWith(":8081")
      );
    const waitOpen = (outbound: string, n: number) =>
      waitUntil(
        async () => {
          const c = await open(outbound);
          return c.length === n ? c : null;
        },
        15_000,
        `${n} open flows on ${outbound}`,
      );
    /** Waits until every flow in `before` moved more bytes up than then. */
    const waitMoving = (outbound: string, before: ConnectionInfo[]) =>
      waitUntil(
        async () => {
          const now = await open(outbound);
          return now.length === before.length &&
            now.every((c) => c.bytes_up > before.find((x) => x.id === c.id)!.bytes_up);
        },
        10_000,
        `the flows on ${outbound} to keep moving`,
      );
    const finish = async (f: { p: LabProcess; stopFile: string }, n: number) => {
      await Deno.writeTextFile(f.stopFile, "");
      const done = await f.p.waitForLine(/"done":true/, 20_000);
      const results = (JSON.parse(done) as { results: FlowResult[] }).results;
      assert.equal(results.length, n);
      assert.equal(failures(results), "");
      for (const r of results) {
        const reply = JSON.parse(r.text) as { bytes: number; sha256: string };
        assert.equal(reply.sha256, r.sentSha256, "the server hashed exactly what was sent");
        assert.equal(reply.bytes, r.sent);
      }
      return results;
    };
    /** The client side of flows the router closed: they end now, before their stop file. */
    const assertClosed = async (f: { p: LabProcess }, n: number) => {
      const done = await f.p.waitForLine(/"done":true/, 10_000);
      const results = (JSON.parse(done) as { results: FlowResult[] }).results;
      assert.equal(results.length, n);
      for (const r of results) {
        assert.equal(r.ok, false, `${r.target} was not closed: ${JSON.stringify(r)}`);
        assert.ok(CLOSED_KINDS.includes(r.kind ?? ""), `${r.target}: ${r.kind} ${r.error}`);
        assert.ok(r.sent > 0, "it had been transferring");
      }
    };

    // Flows on B stay open through every reload of this test.
    const onB = paced(bDst);
    await waitOpen("B", 2);

    await t.step(
      "reload adding C, changing B's mark, removing A: open flows on A and B keep going and finish",
      async () => {
        const onA = paced(aDst);
        const a0 = await waitOpen("A", 2);
        const b0 = await waitOpen("B", 2);
        assert.ok(await rl.packets("a_mark") > 0, "A's flows carry mark 204");
        assert.ok(await rl.packets("b_leg_old") > 0, "B's leg carries mark 206");
        const from = router.lines.length;
        const res = await ipc.reload({ config: cfg2 });
        assert.equal(res.closed, 0);
        assert.equal(res.outbounds, 3);
        await router.waitForLog(/ reloaded .*added=C changed=B removed=A/, 5000, from);
        await waitMoving("A", a0);
        await waitMoving("B", b0);
        const results = await finish(onA, 2);
        for (const r of results) {
          assert.match(await router.waitFlowLine(r), / outbound=A rule=0$/);
        }
      },
    );

    await t.step(
      "new flows follow the new config: A's destinations go by C, B's leg has its new mark",
      async () => {
        const c0 = await rl.packets("c_mark"), a0 = await rl.packets("a_mark");
        for (const d of aDst) assert.match(await echo(d), / outbound=C rule=0$/);
        assert.ok(await rl.packets("c_mark") > c0, "mark 210 on the wire");
        assert.equal(await rl.packets("a_mark"), a0, "nothing carries A's mark any more");
        const n0 = await rl.packets("b_leg_new");
        for (const d of bDst) assert.match(await echo(d), / outbound=B rule=1$/);
        assert.ok(await rl.packets("b_leg_new") > n0, "B's new flows carry mark 208");
      },
    );

    await t.step(
      "IPC reload removing C with close_removed: C's flows are closed at once, B's untouched",
      async () => {
        const onC = paced(aDst);
        await waitOpen("C", 2);
        const b0 = await open("B");
        const res = await ipc.reload({ config: cfg3, close_removed: true });
        assert.equal(res.closed, 2);
        await assertClosed(onC, 2);
        assert.equal((await open("C")).length, 0);
        await waitMoving("B", b0);
        for (const d of aDst) assert.match(await echo(d), / outbound=direct rule=final$/);
      },
    );

    await t.step(
      "`router reload --config F --close-removed` closes the removed outbound's flows too",
      async () => {
        assert.equal((await ipc.reload({ config: cfg2 })).closed, 0, "C is back");
        const onC = paced(aDst);
        await waitOpen("C", 2);
        const b0 = await open("B");
        const path = await rl.writeConfig("live-no-c.json", cfg3);
        const r = await rl.cli([
          "reload",
          "--config",
          path,
          "--close-removed",
          "--socket",
          rl.socketPath,
          "--json",
        ]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal((JSON.parse(r.stdout) as { closed: number }).closed, 2);
        await assertClosed(onC, 2);
        await waitMoving("B", b0);
        const st = await ipc.status();
        assert.equal(st.config_path, path);
      },
    );

    await t.step(
      "the flows on B, open across all four reloads, finish with the right hash",
      async () => {
        const results = await finish(onB, 2);
        for (const r of results) {
          assert.match(await router.waitFlowLine(r), / outbound=B rule=1$/);
        }
        assert.equal((await ipc.stats()).reloads, 4);
      },
    );

    assert.equal(router.exited, false);
  },
);
