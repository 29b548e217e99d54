// Privileged (root, netns, nft): the `redirect` inbound mode of the real `router run`, for boxes
// that use nat REDIRECT instead of TPROXY. The lab's TPROXY table is removed; an nft nat table of
// our own redirects the client's TCP to :7894 (v4 and v6) and the router reads the original
// destination with SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST. Traffic stays inside the lab.
import assert from "node:assert/strict";
import { defaultTproxyOptions } from "../../cli/tproxy_rules.ts";
import {
  assertAllVerified,
  b64,
  clientHello,
  failures,
  type FlowResult,
  routerLabTest,
  target,
  TPROXY_PORT,
  waitUntil,
} from "./_router_lab.ts";

const REDIRECT_PORT = 7894;
const TABLE = "e2e_redirect";
const PORTS = "{ 8080, 8081, 8443 }";

/** The REDIRECT ruleset: LAN TCP to :7894; the router's own (mark 255) sockets are skipped. */
function natRules(lanIf: string): string {
  return [
    `table inet ${TABLE} {`,
    "  counter redir4 {}",
    "  counter redir6 {}",
    "  counter out_skipped {}",
    "  counter out_redir {}",
    "  chain prerouting {",
    "    type nat hook prerouting priority dstnat; policy accept;",
    `    iifname != "${lanIf}" return`,
    "    meta mark 255 return",
    `    meta nfproto ipv4 tcp dport ${PORTS} counter name "redir4" redirect to :${REDIRECT_PORT}`,
    `    meta nfproto ipv6 tcp dport ${PORTS} counter name "redir6" redirect to :${REDIRECT_PORT}`,
    "  }",
    // Locally generated traffic too, as on a box that proxies its own connections: without the
    // mark the router's upstream connections would be redirected back into the router.
    "  chain output {",
    "    type nat hook output priority -100; policy accept;",
    `    tcp dport ${PORTS} meta mark 255 counter name "out_skipped" return`,
    `    tcp dport ${PORTS} counter name "out_redir" redirect to :${REDIRECT_PORT}`,
    "  }",
    "}",
    "",
  ].join("\n");
}

routerLabTest(
  "router redirect mode: nft nat REDIRECT, original destination from SO_ORIGINAL_DST, v4 and v6",
  async (rl, t) => {
    const a = rl.addrs;
    const lab = rl.lab;
    // Our TPROXY table would take the flows first: this box uses REDIRECT only.
    await lab.removeTproxy({
      ...defaultTproxyOptions(),
      interfaces: [lab.ifaces.routerLan],
      port: TPROXY_PORT,
    });
    await lab.runOk("router", ["nft", "-f", "-"], { stdin: natRules(lab.ifaces.routerLan) });
    const counter = async (name: string) => (await lab.nftCounter("router", TABLE, name)).packets;

    await rl.server(["[::]:8080", "[::]:8443"], "echo");
    await rl.server(["[::]:8081"], "hash");
    const router = await rl.startRouter(rl.config({
      inbound: { tag: "redir", mode: "redirect", listen_port: REDIRECT_PORT, network: "tcp" },
      outbounds: [{ type: "direct", tag: "direct" }, { type: "block", tag: "block" }],
      route: {
        final: "direct",
        rules: [
          { ip_cidr: [`${a.extra4[2]}/32`, `${a.extra6[2]}/128`], outbound: "block" },
          { domain_suffix: ["blocked.example.test"], outbound: "block" },
        ],
      },
    }));
    const ipc = await rl.ipc();

    await t.step(
      "v4 and v6 flows reach their original destination; the log shows it and the client",
      async () => {
        const r4 = await counter("redir4"), r6 = await counter("redir6");
        const res = await rl.flows({
          flows: [
            ...rl.bothFamilies(0, 8080, { mode: "echo", bytes: 1 << 20 }),
            ...rl.bothFamilies(1, 8081, { mode: "hash", bytes: 4 << 20 }),
          ],
          concurrency: 4,
        });
        assertAllVerified(res, 4);
        for (const r of res) {
          const line = await router.waitFlowLine(r);
          assert.ok(line.includes(` dst=${r.target} `), `original destination: ${line}`);
          assert.match(line, / outbound=direct rule=final$/);
        }
        assert.ok(await counter("redir4") > r4, "the v4 flows were REDIRECTed");
        assert.ok(await counter("redir6") > r6, "the v6 flows were REDIRECTed");
      },
    );

    await t.step("open flows are listed under the redirect inbound", async () => {
      const stop = `${rl.dir}/stop`;
      const paced = rl.spawnFlows({
        flows: [a.extra4[0]!, a.extra6[0]!].map((addr) => ({
          target: target(addr, 8081),
          mode: "paced" as const,
          chunk: 4096,
          intervalMs: 20,
          stopFile: stop,
          maxMs: 20_000,
        })),
        concurrency: 2,
      });
      try {
        const open = await waitUntil(
          async () => {
            const c = (await ipc.connectionsList()).connections.filter((x) =>
              x.dst.endsWith(":8081")
            );
            return c.length === 2 ? c : null;
          },
          10_000,
          "two paced flows listed",
        );
        for (const c of open) assert.equal(c.inbound, "redir");
        assert.deepEqual(
          open.map((c) => c.dst).sort(),
          [target(a.extra4[0]!, 8081), target(a.extra6[0]!, 8081)].sort(),
        );
      } finally {
        await Deno.writeTextFile(stop, "");
      }
      const done = await paced.waitForLine(/"done":true/, 20_000);
      assert.equal(failures((JSON.parse(done) as { results: FlowResult[] }).results), "");
    });

    await t.step(
      "rules see the original destination and the sniffed name: both block",
      async () => {
        const res = await rl.flows({
          flows: [
            ...rl.bothFamilies(2, 8080, { mode: "echo", bytes: 1000 }),
            {
              target: target(a.extra4[3]!, 8443),
              mode: "payload",
              payloadB64: b64(clientHello("www.blocked.example.test")),
            },
            {
              target: target(a.extra6[3]!, 8443),
              mode: "payload",
              payloadB64: b64(clientHello("www.allowed.example.test")),
            },
          ],
          concurrency: 4,
        });
        for (const r of res.slice(0, 3)) {
          assert.equal(r.kind, "reset", `${r.target}: ${failures([r]) || "it passed"}`);
        }
        assertAllVerified(res.slice(3), 1);
        assert.match(
          await router.waitFlowLine(res[2]!),
          / domain=www\.blocked\.example\.test protocol=tls .*outbound=block rule=1$/,
        );
        assert.match(
          await router.waitFlowLine(res[3]!),
          / domain=www\.allowed\.example\.test protocol=tls .*outbound=direct rule=final$/,
        );
      },
    );

    await t.step("the router's own marked sockets are never redirected back to it", async () => {
      assert.ok(await counter("out_skipped") > 0, "upstream sockets carried mark 255");
      assert.equal(await counter("out_redir"), 0);
      // 4 + 2 + 4 client flows; a looped upstream connection would be accepted too.
      assert.equal((await ipc.stats()).flows.total, 10, "exactly the client's flows");
    });

    assert.equal(router.exited, false);
  },
);
