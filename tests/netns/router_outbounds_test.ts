// Privileged (root, netns, nft): outbound kinds of the real `router run`, observed on the wire.
// Acceptance of the "Outbound manager" issue. Needs Debian's microsocks and dante-server.
// Traffic stays inside the lab's namespaces (the SOCKS servers listen on the router ns' loopback).
import assert from "node:assert/strict";
import { startDante, startMicrosocks } from "./_kinds_lab.ts";
import {
  assertAllVerified,
  type FlowSpec,
  routerLabTest,
  target,
  waitUntil,
} from "./_router_lab.ts";

const MICROSOCKS_PORT = 1080;
const DANTE_PORT = 1081;

routerLabTest(
  "router outbounds on the wire: SOCKS5 via real servers, routing_mark policy routing, DSCP, SOCKS failover",
  async (rl, t) => {
    const a = rl.addrs;
    const link = await rl.addSecondLink();
    const net4 = a.extra4[0]!.replace(/\.\d+$/, ".0/24");
    const net6 = a.extra6[0]!.replace(/::\d+$/, "::/64");
    // routing_mark 200 → table 200 → the second link (like a WireGuard interface).
    for (const [fam, net, via] of [["-4", net4, link.server4], ["-6", net6, link.server6]]) {
      await rl.lab.runOk("router", [
        "ip",
        fam!,
        "rule",
        "add",
        "pref",
        "50",
        "fwmark",
        "200",
        "lookup",
        "200",
      ]);
      await rl.lab.runOk("router", [
        "ip",
        fam!,
        "route",
        "add",
        net!,
        "via",
        via!,
        "table",
        "200",
      ]);
    }
    await rl.server(["[::]:8080", "[::]:8082", "[::]:8443", "[::]:9000"], "echo");
    let microsocks = await startMicrosocks(rl.lab, MICROSOCKS_PORT);
    await startDante(rl.lab, rl.dir, DANTE_PORT);
    await rl.addCounters([
      // The SOCKS servers' own upstream sockets carry no mark; the router's direct ones do.
      { name: "ms_upstream", match: 'oifname "eth2" tcp dport 8080 meta mark 0' },
      { name: "dante_upstream", match: 'oifname "eth2" tcp dport 8082 meta mark 0' },
      // The router→SOCKS leg carries the socks outbound's routing_mark and DSCP.
      {
        name: "ms_leg",
        match: `oifname "lo" tcp dport ${MICROSOCKS_PORT} meta mark 201 ip dscp ef`,
      },
      { name: "m200_tun10", match: `oifname "${link.routerIf}" meta mark 200` },
      { name: "eth2_9000", match: 'oifname "eth2" tcp dport 9000' },
      { name: "ef4", match: 'oifname "eth2" tcp dport 8443 ip dscp ef' },
      { name: "ef6", match: 'oifname "eth2" tcp dport 8443 ip6 dscp ef' },
      { name: "ef_other4", match: 'oifname "eth2" tcp dport != 8443 ip dscp ef' },
      { name: "ef_other6", match: 'oifname "eth2" tcp dport != 8443 ip6 dscp ef' },
    ]);
    const router = await rl.startRouter(rl.config({
      outbounds: [
        { type: "direct", tag: "direct" },
        {
          type: "socks",
          tag: "microsocks",
          server: "127.0.0.1",
          server_port: MICROSOCKS_PORT,
          pool: { size: 4 },
          routing_mark: 201,
          dscp: 46,
          connect_timeout: "2s",
        },
        { type: "socks", tag: "dante", server: "127.0.0.1", server_port: DANTE_PORT },
        { type: "direct", tag: "wg", kind: "wireguard", routing_mark: 200 },
        { type: "direct", tag: "ef", dscp: 46 },
      ],
      route: {
        final: "direct",
        rules: [
          { port: [8080], outbound: "microsocks" },
          { port: [8082], outbound: "dante" },
          { port: [9000], outbound: "wg" },
          { port: [8443], outbound: "ef" },
        ],
      },
    }));
    const ipc = await rl.ipc();
    // microsocks closes both ways at the first EOF and relays with blocking
    // writes (a bulk echo both ways can deadlock it): lock-step request/response.
    const viaMicrosocks = (addr: string, bytes = 256 * 1024): FlowSpec => ({
      target: target(addr, 8080),
      mode: "rr",
      bytes,
      chunk: 128 * 1024,
    });

    await t.step(
      "socks outbound: flows reach the server through microsocks, v4 and v6",
      async () => {
        const up = await rl.packets("ms_upstream");
        const res = await rl.flows({
          flows: [viaMicrosocks(a.extra4[0]!, 1 << 20), viaMicrosocks(a.extra6[0]!, 1 << 20)],
          concurrency: 2,
        });
        assertAllVerified(res, 2);
        for (const r of res) {
          assert.match(await router.waitFlowLine(r), / outbound=microsocks rule=0$/);
        }
        assert.ok(await rl.packets("ms_upstream") > up, "microsocks' own socket carried them");
        assert.ok(await rl.packets("ms_leg") > 0, "router→SOCKS leg: mark 201 and DSCP EF");
      },
    );

    await t.step("socks outbound: through dante-server too, half-close included", async () => {
      const res = await rl.flows({
        flows: [
          { target: target(a.extra4[1]!, 8082), mode: "echo", bytes: 1 << 20 },
          { target: target(a.extra6[1]!, 8082), mode: "rr", bytes: 1 << 20 },
        ],
        concurrency: 2,
      });
      assertAllVerified(res, 2);
      for (const r of res) {
        assert.match(await router.waitFlowLine(r), / outbound=dante rule=1$/);
      }
      assert.ok(await rl.packets("dante_upstream") > 0);
    });

    await t.step("routing_mark 200 follows `ip rule fwmark 200` to the second link", async () => {
      const tx = await rl.txPackets(link.routerIf);
      const res = await rl.flows({
        flows: rl.bothFamilies(2, 9000, { mode: "echo", bytes: 1 << 20 }),
        concurrency: 2,
      });
      assertAllVerified(res, 2);
      assert.ok(await rl.packets("m200_tun10") > 0, "mark 200 packets left by tun10");
      assert.ok(await rl.txPackets(link.routerIf) > tx, "tun10 TX grew");
      assert.equal(await rl.packets("eth2_9000"), 0, "none took the main route");
    });

    await t.step(
      "dscp 46 marks egress packets EF, v4 and v6; other outbounds do not",
      async () => {
        const res = await rl.flows({
          flows: rl.bothFamilies(1, 8443, { mode: "echo", bytes: 256 << 10 }),
          concurrency: 2,
        });
        assertAllVerified(res, 2);
        assert.ok(await rl.packets("ef4") > 0, "ip dscp ef counted");
        assert.ok(await rl.packets("ef6") > 0, "ip6 dscp ef counted");
        assert.equal(await rl.packets("ef_other4"), 0);
        assert.equal(await rl.packets("ef_other6"), 0);
      },
    );

    await t.step(
      "SOCKS server killed: new flows reset and count as errors; when it returns the pool refills",
      async () => {
        const errors = async () => (await ipc.stats()).outbounds["microsocks"]?.errors ?? 0;
        const state = async () =>
          (await ipc.outboundsList()).outbounds.find((o) => o.tag === "microsocks");
        await waitUntil(
          async () => /"idle":4/.test((await state())?.detail ?? ""),
          10_000,
          "a warm pool",
        );
        const e0 = await errors();
        await microsocks.kill();
        const res = await rl.flows({
          flows: [viaMicrosocks(a.extra4[0]!, 1000), viaMicrosocks(a.extra6[0]!, 1000)],
          concurrency: 1,
          timeoutMs: 10_000,
        });
        for (const r of res) assert.equal(r.kind, "reset", `${r.target}: ${r.kind} ${r.error}`);
        assert.equal(await errors() - e0, 2, "stats: outbounds.microsocks.errors");
        assert.equal((await state())?.state, "down");
        const direct = await rl.flow({
          target: target(a.extra4[1]!, 8443),
          mode: "echo",
          bytes: 1000,
        });
        assertAllVerified([direct], 1);

        microsocks = await startMicrosocks(rl.lab, MICROSOCKS_PORT);
        await waitUntil(
          async () => (await rl.flow(viaMicrosocks(a.extra4[0]!, 1000))).verified,
          30_000,
          "a flow through microsocks to succeed again",
        );
        await waitUntil(
          async () => {
            const s = await state();
            return s?.state === "up" && /"idle":4/.test(s.detail ?? "");
          },
          30_000,
          "the pool to refill to 4",
        );
        assertAllVerified(await rl.flows({ flows: [viaMicrosocks(a.extra6[0]!, 1 << 20)] }), 1);
      },
    );

    assert.equal(router.exited, false, "the router was never restarted");
  },
);
