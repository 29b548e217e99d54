// Privileged (root, netns, nft): `router run --replace` against the real router: a successor
// takes over the TPROXY listeners and the IPC socket while the old router's open flows go on
// until they end, then it exits. Traffic stays inside the lab's namespaces.
import assert from "node:assert/strict";
import { failures, type FlowResult, routerLabTest, target, waitUntil } from "./_router_lab.ts";

routerLabTest(
  "router run --replace: a successor takes over without dropping open flows; the old router drains and exits",
  async (rl, t) => {
    const a = rl.addrs;
    await rl.server(["[::]:8080"], "echo");
    await rl.server(["[::]:8081"], "hash");
    const old = await rl.startRouter(
      rl.config({ outbounds: [{ type: "direct", tag: "direct" }], route: { final: "direct" } }),
    );
    const oldPid = (await (await rl.ipc()).status()).pid;
    const echoTo = (addr: string) =>
      rl.flow({ target: target(addr, 8080), mode: "echo", bytes: 64 * 1024 });
    const passes = (r: FlowResult, what: string) =>
      assert.ok(r.ok && r.verified, `${what}: ${failures([r])}`);

    // Two uploads (v4, v6) paced over the whole test, open across the takeover.
    const { proc: paced, stopFile } = rl.pacedUploads(
      [a.extra4[0]!, a.extra6[0]!].map((addr) => target(addr, 8081)),
    );
    await waitUntil(
      async () => (await (await rl.ipc()).connectionsList()).total === 2,
      15_000,
      "two paced flows open",
    );

    await t.step(
      "a second router without --replace refuses to start, naming the first",
      async () => {
        const r = await rl.cli(["run", "--config", old.configPath]);
        assert.equal(r.code, 1, r.stderr);
        assert.match(r.stderr, new RegExp(`already running.*pid=${oldPid}`), r.stderr);
        passes(await echoTo(a.extra4[1]!), "the first router still routes");
        assert.equal((await (await rl.ipc()).status()).pid, oldPid);
      },
    );

    await t.step("--replace: the successor answers on the socket and takes new flows", async () => {
      await rl.replaceRouter(["--drain", "60s"]);
      const ipc = await rl.ipc();
      assert.notEqual((await ipc.status()).pid, oldPid, "the socket path is the successor's");
      await old.waitForLog(/draining: no new flows.*flows=2/, 10_000);
      for (const addr of [a.extra4[1]!, a.extra6[1]!]) {
        passes(await echoTo(addr), `new flow ${addr}`);
      }
      const st = await ipc.stats();
      assert.equal(st.flows.total, 2, "both new flows went through the successor");
      assert.equal(old.exited, false, "the old router drains its two open flows");
    });

    await t.step(
      "the open flows finish through the old router, intact; then it exits",
      async () => {
        await Deno.writeTextFile(stopFile, "");
        const done = await paced.waitForLine(/"done":true/, 30_000);
        const results = (JSON.parse(done) as { results: FlowResult[] }).results;
        assert.equal(results.length, 2);
        assert.equal(failures(results), "", "no flow was reset by the takeover");
        for (const r of results) {
          const reply = JSON.parse(r.text) as { sha256: string };
          assert.equal(reply.sha256, r.sentSha256, "the server hashed exactly what was sent");
        }
        const status = await Promise.race([
          old.status,
          new Promise<null>((r) => setTimeout(() => r(null), 10_000)),
        ]);
        assert.ok(status !== null, "the old router exits once its flows ended");
        assert.equal(status.code, 0);
        assert.match(old.grep(/stopping/).join("\n"), /flows_left=0/);
        passes(await echoTo(a.extra4[1]!), "the successor goes on");
      },
    );

    await t.step("`router stop --drain` stops the successor once it has no flow", async () => {
      const successor = rl.router;
      const r = await rl.cli(["stop", "--drain", "30s", "--socket", rl.socketPath]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(
        r.stdout,
        new RegExp(`router \\(pid ${successor.pid}\\) stopping: 0 open TCP flows`),
      );
      const status = await Promise.race([
        successor.status,
        new Promise<null>((r) => setTimeout(() => r(null), 10_000)),
      ]);
      assert.equal(status?.code, 0, "it exits at once: nothing to drain");
    });
  },
);
