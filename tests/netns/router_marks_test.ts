// Privileged (root, netns, nft): the real `router run` routes TCP and UDP flows by the
// mark the box's own nftables set from DSCP, through our TPROXY rules, v4 and v6.
// Traffic stays inside the namespaces the lab creates.
import assert from "node:assert/strict";
import { peerPath } from "./harness.ts";
import { routerLabTest, target } from "./_router_lab.ts";

/** The box's DSCP classification, in its own table, before ours (mangle - 10 < mangle). */
const BOX_TABLE = `table inet box {
  chain pre {
    type filter hook prerouting priority mangle - 10; policy accept;
    ip dscp ef meta mark set meta mark | 0x100
    ip6 dscp ef meta mark set meta mark | 0x100
  }
}
`;

const EF = "0xb8"; // DSCP 46 << 2

interface ClientReport {
  ok: boolean;
  local?: string;
  text?: string;
  error?: string;
}

routerLabTest(
  "router run: fwmark rule routes DSCP-EF flows the box marked, TCP and UDP, v4 and v6",
  async (rl, t) => {
    const lab = rl.lab;
    const a = rl.addrs;
    // applyTproxy() wrote the sysctls: accepted sockets carry the SYN's mark.
    const fwa = await lab.runOk("router", ["sysctl", "-n", "net.ipv4.tcp_fwmark_accept"]);
    assert.equal(fwa.trim(), "1");
    await lab.runOk("router", ["nft", "-f", "-"], { stdin: BOX_TABLE });
    // The box also routes its 0x100 class by policy (here: into a blackhole).
    // Without our `iif lo ... lookup main` guard, the SYN-ACKs of EF flows
    // (mark 0x101 with tcp_fwmark_accept=1) would follow this rule and vanish.
    for (const f of ["-4", "-6"]) {
      await lab.runOk("router", [
        "ip",
        f,
        "route",
        "add",
        "blackhole",
        "default",
        "table",
        "200",
      ]);
      await lab.runOk("router", [
        "ip",
        f,
        "rule",
        "add",
        "pref",
        "200",
        "fwmark",
        "0x100/0xff00",
        "lookup",
        "200",
      ]);
    }
    await rl.server(["[::]:8080"], "echo");
    const udpEcho = lab.spawn("server", [
      "python3",
      peerPath("udp_echo.py"),
      "--listen",
      `${a.extra4[0]}:5353,[${a.extra6[0]}]:5353,${a.extra4[1]}:5353,[${a.extra6[1]}]:5353`,
      "--seconds",
      "120",
    ]);
    await udpEcho.waitForLine(/^ready$/, 10_000);
    await rl.addCounters([
      { name: "m77_tcp", match: 'oifname "eth2" meta mark 77 meta l4proto tcp' },
      { name: "m77_udp", match: 'oifname "eth2" meta mark 77 meta l4proto udp' },
    ]);
    const router = await rl.startRouter(rl.config({
      outbounds: [
        { type: "direct", tag: "direct" },
        { type: "direct", tag: "marked", routing_mark: 77 },
        { type: "direct", tag: "af41" },
      ],
      route: {
        final: "direct",
        rules: [
          { fwmark: "0x100/0xff00", outbound: "marked" },
          // DSCP read from each datagram's TOS / traffic class cmsg.
          { network: "udp", dscp: [34], outbound: "af41" },
        ],
      },
    }));

    const client = async (
      to: string,
      network: "tcp" | "udp",
      tos: string,
      payload: string,
    ): Promise<ClientReport> => {
      const r = await lab.run("client", [
        "python3",
        peerPath("marks_client.py"),
        "--connect",
        to,
        "--network",
        network,
        "--tos",
        tos,
        "--payload",
        payload,
        "--timeout",
        "5",
      ]);
      try {
        return JSON.parse(r.stdout.trim().split("\n").pop() ?? "") as ClientReport;
      } catch {
        return { ok: false, error: `marks_client: exit ${r.code}: ${r.stderr.trim()}` };
      }
    };

    await t.step(
      "TCP: EF flows go to `marked` with mark 0x100, others to final, v4 and v6",
      async () => {
        const cases = [
          { to: target(a.extra4[0]!, 8080), tos: EF, outbound: "marked" },
          { to: target(a.extra4[1]!, 8080), tos: "0", outbound: "direct" },
          { to: target(a.extra6[0]!, 8080), tos: EF, outbound: "marked" },
          { to: target(a.extra6[1]!, 8080), tos: "0", outbound: "direct" },
          // A non-EF DSCP (AF41) is not marked by the box.
          { to: target(a.extra4[2]!, 8080), tos: "0x88", outbound: "direct" },
        ];
        for (const [i, c] of cases.entries()) {
          const payload = `hello-${i}-${c.outbound}`;
          const r = await client(c.to, "tcp", c.tos, payload);
          assert.equal(r.ok, true, `${c.to} tos=${c.tos}: ${r.error}\n${router.tail()}`);
          assert.equal(r.text, payload, "the flow works: echo through the router");
          const line = await router.waitFlowLine(r);
          assert.match(line, new RegExp(` outbound=${c.outbound} `), line);
          if (c.outbound === "marked") {
            // The router saw the box's bits with our TPROXY bit stripped.
            assert.match(line, / mark=0x100 /, line);
          } else {
            assert.doesNotMatch(line, / mark=/, line);
          }
        }
        const stats = await (await rl.ipc()).stats();
        assert.equal(stats.outbounds["marked"]?.flows_total, 2);
        assert.equal(stats.outbounds["direct"]?.flows_total, 3);
        assert.ok(await rl.packets("m77_tcp") > 0, "marked flows left with routing_mark 77");
      },
    );

    await t.step("UDP: EF datagrams go to `marked`, others to final, v4 and v6", async () => {
      const cases = [
        { to: target(a.extra4[0]!, 5353), tos: EF, outbound: "marked" },
        { to: target(a.extra6[0]!, 5353), tos: EF, outbound: "marked" },
        { to: target(a.extra4[0]!, 5353), tos: "0", outbound: "direct" },
        { to: target(a.extra6[0]!, 5353), tos: "0", outbound: "direct" },
      ];
      for (const [i, c] of cases.entries()) {
        const payload = `udp-${i}`;
        const since = router.lines.length;
        const r = await client(c.to, "udp", c.tos, payload);
        assert.equal(r.ok, true, `${c.to} tos=${c.tos}: ${r.error}\n${router.tail()}`);
        const reply = JSON.parse(r.text ?? "{}") as { local?: string; text?: string };
        assert.equal(reply.text, payload, "the datagram was relayed and answered");
        assert.equal(reply.local, c.to, "the server saw the original destination");
        const line = await router.waitUdpSessionLine(r.local, c.to, since);
        assert.match(line, new RegExp(` outbound=${c.outbound} `), line);
      }
      assert.ok(await rl.packets("m77_udp") > 0, "marked datagrams left with routing_mark 77");
    });

    await t.step("UDP: a dscp rule matches the datagram's DSCP (AF41), v4 and v6", async () => {
      const cases = [
        { to: target(a.extra4[1]!, 5353), tos: "0x88", outbound: "af41" },
        { to: target(a.extra6[1]!, 5353), tos: "0x88", outbound: "af41" },
        { to: target(a.extra4[1]!, 5353), tos: "0x20", outbound: "direct" },
      ];
      for (const [i, c] of cases.entries()) {
        const since = router.lines.length;
        const r = await client(c.to, "udp", c.tos, `dscp-${i}`);
        assert.equal(r.ok, true, `${c.to} tos=${c.tos}: ${r.error}\n${router.tail()}`);
        const line = await router.waitUdpSessionLine(r.local, c.to, since);
        assert.match(line, new RegExp(` outbound=${c.outbound} `), line);
      }
    });

    await t.step(
      "tproxy-rules apply is idempotent and remove leaves the box's table and rule",
      async () => {
        const show = async () =>
          (await lab.runOk("router", ["ip", "-4", "rule", "show"])) +
          (await lab.runOk("router", ["ip", "-6", "rule", "show"]));
        const before = await show();
        assert.equal(before.split("\n").filter((l) => l.includes("proto 250")).length, 8);
        const o = await lab.applyTproxy({ port: 7893 });
        assert.equal(await show(), before, "a second apply changes no rule");
        await lab.removeTproxy(o);
        await lab.removeTproxy(o);
        const after = await show();
        assert.doesNotMatch(after, /proto 250/);
        assert.equal(
          after.split("\n").filter((l) => l.includes("fwmark 0x100/0xff00")).length,
          2,
        );
        const tables = await lab.runOk("router", ["nft", "list", "tables"]);
        assert.match(tables, /table inet box\n/);
        assert.doesNotMatch(tables, /vpn_router/);
      },
    );
  },
);
