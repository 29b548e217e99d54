// Privileged (root, netns, nft): `route.dns_reverse_mapping` on the real `router run`: a DNS
// answer relayed through the router (over UDP or TCP) gives later flows to that address the
// name the client looked up, so domain rules route protocols that carry no name. Traffic stays
// in the lab.
import assert from "node:assert/strict";
import { peerPath } from "./harness.ts";
import {
  b64,
  clientHello,
  failures,
  type FlowResult,
  routerLabTest,
  target,
} from "./_router_lab.ts";

routerLabTest(
  "route.dns_reverse_mapping: flows to an address a client looked up are matched by its name (TCP, UDP); a sniffed name wins; a reload turning it off forgets; DNS over TCP maps too",
  async (rl, t) => {
    const a = rl.addrs;
    const mapped = a.extra4[2]!;
    await rl.server(["[::]:8080"], "echo");
    await rl.lab.dnsServer(`${a.server4}:53`, mapped, { tcp: true });
    const udpEcho = rl.lab.spawn("server", [
      "python3",
      peerPath("udp_echo.py"),
      "--listen",
      `${mapped}:7000`,
    ]);
    await udpEcho.waitForLine(/^ready$/);
    const config = (on: boolean) =>
      rl.config({
        outbounds: [{ type: "direct", tag: "direct" }, { type: "block", tag: "block" }],
        route: {
          final: "direct",
          dns_reverse_mapping: on,
          rules: [{ domain_suffix: ["mapped.e2e.test"], outbound: "block" }],
        },
      });
    const router = await rl.startRouter(config(true), "on.json");
    const ipc = await rl.ipc();
    const plain = () => rl.flow({ target: target(mapped, 8080), mode: "echo", bytes: 4096 });
    const passes = (r: FlowResult, what: string) =>
      assert.ok(r.ok && r.verified, `${what}: ${failures([r])}`);
    const lookup = async () => {
      const answer = await rl.lab.dnsQuery(`${a.server4}:53`, "www.Mapped.e2e.test");
      assert.deepEqual(answer.answers, [mapped], JSON.stringify(answer));
    };
    const counters = async () => (await ipc.stats()).counters as Record<string, number>;

    await t.step("before any lookup the address has no name: final", async () => {
      passes(await plain(), "plain TCP");
      const rt = await ipc.routeTest({ dst: `${mapped}:8080` });
      assert.deepEqual([rt.outbound, rt.final, rt.dns_name], ["direct", true, undefined]);
      assert.equal((await rl.lab.udpClient("client", `${mapped}:7000`)).ok, true, "UDP echo");
    });

    await t.step(
      "after the client looked it up, plain TCP and UDP to it match the rule",
      async () => {
        await lookup();
        const c = await counters();
        assert.equal(c["dns_reverse_entries"], 1);
        assert.equal(c["dns_reverse_answers"], 1);
        const r = await plain();
        assert.equal(r.kind, "reset", `plain TCP to a looked-up address: ${failures([r])}`);
        const line = await router.waitFlowLine(r);
        assert.match(line, /domain=www\.mapped\.e2e\.test/, line);
        assert.match(line, /outbound=block/, line);
        const u = await rl.lab.udpClient("client", `${mapped}:7000`, "again");
        assert.equal(u.ok, false, `UDP to it is blocked now: ${JSON.stringify(u)}`);
        const mappedFlows = (await counters())["dns_mapped_flows"]!;
        assert.ok(mappedFlows >= 2, "TCP and UDP took the name");
        // route.test sees the flow as the data plane does (the name from DNS), unless told not to.
        const rt = await ipc.routeTest({ dst: `${mapped}:8080` });
        assert.deepEqual([rt.outbound, rt.rule, rt.dns_name], ["block", 0, "www.mapped.e2e.test"]);
        const ipOnly = await ipc.routeTest({ dst: `${mapped}:8080`, dns: false });
        assert.deepEqual([ipOnly.outbound, ipOnly.final, ipOnly.dns_name], [
          "direct",
          true,
          undefined,
        ]);
        const named = await ipc.routeTest({ dst: `${mapped}:8080`, domain: "other.e2e.test" });
        assert.deepEqual(
          [named.outbound, named.dns_name],
          ["direct", undefined],
          "a given domain wins",
        );
        assert.equal((await counters())["dns_mapped_flows"], mappedFlows, "tests count no flow");
      },
    );

    await t.step("a sniffed name wins over the mapped one", async () => {
      const r = await rl.flow({
        target: target(mapped, 8080),
        mode: "payload",
        payloadB64: b64(clientHello("other.e2e.test")),
      });
      passes(r, "TLS with another SNI");
    });

    await t.step("a reload that turns it off forgets the names", async () => {
      const off = await rl.writeConfig("off.json", config(false));
      await ipc.reload({ path: off });
      passes(await plain(), "plain TCP after the reload");
      assert.equal((await counters())["dns_reverse_entries"], 0);
      assert.equal((await ipc.routeTest({ dst: `${mapped}:8080` })).dns_name, undefined);
      await lookup();
      assert.equal((await counters())["dns_reverse_answers"], 1, "answers not recorded when off");
      passes(await plain(), "plain TCP after another lookup");
    });

    await t.step("turned on again, a lookup over DNS over TCP maps the address", async () => {
      await ipc.reload({ path: await rl.writeConfig("on-again.json", config(true)) });
      passes(await plain(), "plain TCP before the lookup");
      const before = await counters();
      assert.equal(before["dns_reverse_entries"], 0);
      const answer = await rl.lab.dnsQuery(`${a.server4}:53`, "tcp.Mapped.e2e.test", {
        tcp: true,
      });
      assert.deepEqual(answer.answers, [mapped], JSON.stringify(answer));
      const c = await counters();
      assert.equal(c["dns_reverse_entries"], 1, "the address is mapped");
      assert.equal(c["dns_reverse_answers"], before["dns_reverse_answers"]! + 1);
      const r = await plain();
      assert.equal(r.kind, "reset", `plain TCP after a TCP lookup: ${failures([r])}`);
      const line = await router.waitFlowLine(r);
      assert.match(line, /domain=tcp\.mapped\.e2e\.test/, line);
    });
  },
);
