// Privileged (root, netns, nft): reload of the real `router run` under live traffic.
// Acceptance of the "Rule engine" issue. Traffic stays inside the lab's namespaces.
import assert from "node:assert/strict";
import { IpcError } from "../../ipc/protocol.ts";
import { failures, type FlowResult, routerLabTest, target, waitUntil } from "./_router_lab.ts";

const OUTBOUNDS = [{ type: "direct", tag: "direct" }, { type: "block", tag: "block" }];

routerLabTest(
  "router reload: open flows survive, new flows follow the new rules, bad configs change nothing",
  async (rl, t) => {
    const a = rl.addrs;
    await rl.server(["[::]:8080"], "echo");
    await rl.server(["[::]:8081"], "hash");
    const router = await rl.startRouter(
      rl.config({ outbounds: OUTBOUNDS, route: { final: "direct" } }),
      "a.json",
    );
    const ipc = await rl.ipc();
    const echoTo = (addr: string) =>
      rl.flow({ target: target(addr, 8080), mode: "echo", bytes: 64 * 1024 });
    const assertPasses = (r: FlowResult) => assert.ok(r.ok && r.verified, failures([r]));
    const assertReset = (r: FlowResult) =>
      assert.equal(
        r.kind,
        "reset",
        `${r.target}: expected a reset: ${failures([r]) || "it passed"}`,
      );

    // Two long-running uploads (v4 and v6) to the hash server, open across every reload below.
    const { proc: paced, stopFile } = rl.pacedUploads(
      [a.extra4[0]!, a.extra6[0]!].map((addr) => target(addr, 8081)),
    );
    const connected = async () =>
      (await ipc.connectionsList()).connections.filter((c) => c.dst.endsWith(":8081"));
    await waitUntil(async () => (await connected()).length === 2, 15_000, "two paced flows open");
    assertPasses(await echoTo(a.extra4[0]!));

    const b = rl.config({
      outbounds: OUTBOUNDS,
      route: {
        final: "direct",
        rules: [{ ip_cidr: [`${a.extra4[0]}/32`, `${a.extra6[0]}/128`], outbound: "block" }],
      },
    });
    const bPath = await rl.writeConfig("b.json", b);

    await t.step(
      "`router reload --config` swaps the rules; new flows to that destination are reset",
      async () => {
        const r = await rl.cli([
          "reload",
          "--config",
          bPath,
          "--socket",
          rl.socketPath,
          "--json",
        ]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal((JSON.parse(r.stdout) as { rules: number }).rules, 1);
        assertReset(await echoTo(a.extra4[0]!));
        assertReset(await echoTo(a.extra6[0]!));
        assertPasses(await echoTo(a.extra4[1]!));
        assert.equal((await ipc.status()).rules, 1);
      },
    );

    await t.step("open flows keep transferring after the reload", async () => {
      const before = await connected();
      assert.equal(before.length, 2, "both paced flows are still open");
      for (const c of before) assert.equal(c.outbound, "direct", "they keep their decision");
      await waitUntil(
        async () => {
          const now = await connected();
          return now.length === 2 &&
            now.every((c) => c.bytes_up > before.find((x) => x.id === c.id)!.bytes_up);
        },
        10_000,
        "both paced flows to move more bytes after the reload",
      );
    });

    await t.step(
      "an invalid config via the CLI is refused naming the field; nothing changes",
      async () => {
        const bad = structuredClone(b) as { route: { rules: { ip_cidr: string[] }[] } };
        bad.route.rules[0]!.ip_cidr[1] = "10.0.0.0/33";
        const badPath = await rl.writeConfig("bad.json", bad);
        const r = await rl.cli(["reload", "--config", badPath, "--socket", rl.socketPath]);
        assert.equal(r.code, 1);
        assert.match(r.stderr, /route\.rules\[0\]\.ip_cidr\[1\]: "10\.0\.0\.0\/33"/);
        const st = await ipc.status();
        assert.equal(st.rules, 1);
        assert.equal(st.config_path, bPath, "still running b.json");
        assert.equal(st.last_reload?.ok, false);
        // The process's own memory, as /proc tells it.
        const rss = Number(
          /VmRSS:\s+(\d+) kB/.exec(await Deno.readTextFile(`/proc/${st.pid}/status`))![1],
        ) * 1024;
        assert.ok(
          Math.abs(st.memory!.rss - rss) < 16 << 20,
          `status rss ${st.memory!.rss} vs VmRSS ${rss}`,
        );
        assert.ok(st.memory!.heap_used > 0 && st.memory!.heap_used <= st.memory!.heap_total);
        assertReset(await echoTo(a.extra4[0]!));
        assertPasses(await echoTo(a.extra4[1]!));
      },
    );

    await t.step(
      "an invalid inline config via IPC is refused naming the field; nothing changes",
      async () => {
        const bad = rl.config({
          outbounds: [{ type: "direct", tag: "direct", routing_mark: "loud" }],
          route: { final: "direct" },
        });
        await assert.rejects(ipc.reload({ config: bad }), (e: unknown) => {
          assert.ok(e instanceof IpcError);
          assert.equal(e.code, "config_invalid");
          assert.match(e.message, /outbounds\[0\]\.routing_mark: "loud"/);
          return true;
        });
        const st = await ipc.status();
        assert.equal(st.rules, 1);
        assert.equal(st.config_path, bPath);
        assertReset(await echoTo(a.extra6[0]!));
        assertPasses(await echoTo(a.extra6[1]!));
      },
    );

    await t.step(
      "SIGHUP re-reads the config file; `router status --json` shows the new rule count",
      async () => {
        const c = rl.config({
          outbounds: OUTBOUNDS,
          route: {
            final: "direct",
            rules: [
              { ip_cidr: [`${a.extra4[1]}/32`], outbound: "block" },
              { port: [1], outbound: "block" },
            ],
          },
        });
        await rl.writeConfig("b.json", c);
        const from = router.lines.length;
        router.signal("SIGHUP");
        await router.waitForLog(/SIGHUP reload done rules=2/, 10_000, from);
        const r = await rl.cli(["status", "--json", "--socket", rl.socketPath]);
        assert.equal(r.code, 0, r.stderr);
        const st = JSON.parse(r.stdout) as { rules: number; config_path: string };
        assert.equal(st.rules, 2);
        assert.equal(st.config_path, bPath);
        assertPasses(await echoTo(a.extra4[0]!));
        assertReset(await echoTo(a.extra4[1]!));
      },
    );

    await t.step(
      "a reload that leaves the rules unchanged reuses them, same decisions",
      async () => {
        const r = await ipc.reload({ path: bPath });
        assert.equal(r.rules_reused, true);
        assert.equal(r.rules, 2);
        assertPasses(await echoTo(a.extra4[0]!));
        assertReset(await echoTo(a.extra4[1]!));
      },
    );

    await t.step(
      "rule hit counters: in `stats` and `router status --rules`, kept across that reload",
      async () => {
        // Rule 0 (extra4[1] → block) was hit once in each of the last two steps.
        const s = await ipc.stats({ rules: true });
        assert.equal(s.rules_hit, 1, JSON.stringify(s.rules));
        assert.deepEqual(s.rules![0], { rule: 0, outbound: "block", hits: 2 });
        assert.equal(s.rules!.at(-1)!.rule, null, "final comes last");
        const r = await rl.cli(["status", "--rules", "5", "--socket", rl.socketPath]);
        assert.equal(r.code, 0, r.stderr);
        assert.match(
          r.stdout,
          /hits: +rule #0 -> block: 2\n +final -> direct: \d+\n +\(1 rule with hits\)/,
        );
      },
    );

    await t.step(
      "a reload that edits one rule compiles that rule alone; decisions follow it",
      async () => {
        const fillers = Array.from({ length: 28 }, (_, i) => ({
          domain_suffix: [`filler${i}.example`],
          outbound: "block",
        }));
        const cfg = (blocked: string) =>
          rl.config({
            outbounds: OUTBOUNDS,
            route: {
              // A rule set the rules were not checked against before: the first reload
              // below compiles every rule; the next one is compared with it.
              rule_set: [{
                type: "inline",
                tag: "unused",
                rules: [{ domain: ["unused.example"] }],
              }],
              final: "direct",
              rules: [
                { port: [1], outbound: "block" },
                { ip_cidr: [`${blocked}/32`], outbound: "block" },
                ...fillers,
              ],
            },
          });
        await rl.writeConfig("b.json", cfg(a.extra4[1]!));
        const full = await ipc.reload({ path: bPath });
        assert.deepEqual([full.rules, full.rules_compiled], [30, 30]);
        assertPasses(await echoTo(a.extra4[0]!));
        assertReset(await echoTo(a.extra4[1]!));

        await rl.writeConfig("b.json", cfg(a.extra4[0]!));
        const r = await ipc.reload({ path: bPath });
        assert.equal(r.rules, 30);
        assert.equal(r.rules_reused, false);
        assert.equal(r.rules_compiled, 1, "the other rules' compiled indexes were reused");
        assert.equal((await ipc.status()).last_reload?.rules_compiled, 1);
        assertReset(await echoTo(a.extra4[0]!));
        assertPasses(await echoTo(a.extra4[1]!));
        const t2 = await ipc.routeTest({ dst: `${a.extra4[0]}:80` });
        assert.deepEqual([t2.outbound, t2.rule], ["block", 1]);
        const t3 = await ipc.routeTest({ dst: `${a.extra4[1]}:80`, domain: "x.filler27.example" });
        assert.deepEqual([t3.outbound, t3.rule], ["block", 29]);
      },
    );

    await t.step("the flows open across all reloads complete with the right hash", async () => {
      const mid = await connected();
      assert.equal(mid.length, 2, "still open after SIGHUP");
      await Deno.writeTextFile(stopFile, "");
      const done = await paced.waitForLine(/"done":true/, 30_000);
      const results = (JSON.parse(done) as { results: FlowResult[] }).results;
      assert.equal(results.length, 2);
      assert.equal(failures(results), "");
      for (const r of results) {
        const reply = JSON.parse(r.text) as { bytes: number; sha256: string };
        assert.equal(reply.sha256, r.sentSha256, "the server hashed exactly what was sent");
        assert.ok(r.sent >= mid.find((c) => c.src === r.local)!.bytes_up);
      }
      const stats = await ipc.stats();
      assert.equal(stats.reloads, 5, "CLI reload + SIGHUP + 3 IPC reloads");
      assert.equal(stats.reload_failures, 2, "CLI + IPC invalid configs");
    });

    assert.equal(router.exited, false);
  },
);
