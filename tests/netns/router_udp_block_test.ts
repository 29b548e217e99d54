// Privileged: needs root (netns, nft, IP_TRANSPARENT, raw sockets). Traffic
// stays inside the namespaces created here. The router runs as a real
// process in the router ns.
//
// Peers: peers/udp_refused.py (a connected UDP socket: did its next recv()
// get data, ECONNREFUSED or nothing, and which ICMP arrived), udp_echo.py
// (the direct destination) and udp_churn.py (a burst of blocked sessions).
import assert from "node:assert/strict";
import type { UdpPlaneStats } from "../../router/udp_plane.ts";
import { peerPath } from "./harness.ts";
import { type RouterLab, routerLabTest, target, waitUntil } from "./_router_lab.ts";

interface Refused {
  ok: boolean;
  result: "data" | "refused" | "timeout";
  elapsed_ms: number;
  local: string;
  text: string | null;
  icmp: { from: string; type: number; code: number; quoted: number } | null;
  error?: string;
}

async function probe(rl: RouterLab, to: string, timeoutS: number): Promise<Refused> {
  const r = await rl.lab.run("client", [
    "python3",
    peerPath("udp_refused.py"),
    "--connect",
    to,
    "--payload",
    "probe-" + "x".repeat(100),
    "--timeout",
    String(timeoutS),
  ]);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const out = JSON.parse(r.stdout.trim().split("\n").pop()!) as Refused;
  assert.equal(out.ok, true, r.stdout);
  return out;
}

async function udpStats(rl: RouterLab): Promise<UdpPlaneStats> {
  const st = (await (await rl.ipc()).status()) as unknown as { udp: UdpPlaneStats[] };
  assert.equal(st.udp.length, 1);
  return st.udp[0]!;
}

routerLabTest(
  "UDP block: reset answers a connected socket with ICMP port unreachable from the original destination (ECONNREFUSED), drop stays silent, direct still echoes; v4 and v6",
  async (rl) => {
    const a = rl.addrs;
    const port = 7100;
    const echo = rl.lab.spawn("server", [
      "python3",
      peerPath("udp_echo.py"),
      "--listen",
      [target(a.extra4[0]!, port), target(a.extra6[0]!, port)].join(","),
    ]);
    await echo.waitForLine(/^ready$/, 10_000);
    await rl.startRouter(rl.config({
      outbounds: [
        { type: "direct", tag: "direct" },
        { type: "block", tag: "refuse" },
        { type: "block", tag: "blackhole", mode: "drop" },
      ],
      route: {
        rules: [
          { ip_cidr: [`${a.extra4[1]}/32`, `${a.extra6[1]}/128`], outbound: "refuse" },
          { ip_cidr: [`${a.extra4[2]}/32`, `${a.extra6[2]}/128`], outbound: "blackhole" },
        ],
        final: "direct",
      },
    }));

    for (const [fam, i4or6] of [["v4", a.extra4], ["v6", a.extra6]] as const) {
      const direct = await probe(rl, target(i4or6[0]!, port), 5);
      assert.equal(direct.result, "data", `${fam} direct: ${JSON.stringify(direct)}`);
      assert.match(direct.text ?? "", /probe-x/);

      // Nothing listens on the blocked addresses: only the router can refuse.
      const refused = await probe(rl, target(i4or6[1]!, port), 5);
      assert.equal(refused.result, "refused", `${fam} reset: ${JSON.stringify(refused)}`);
      assert.ok(refused.icmp, `${fam}: the client saw the ICMP error`);
      assert.equal(refused.icmp.from, i4or6[1], `${fam}: sent from the original destination`);
      assert.deepEqual(
        [refused.icmp.type, refused.icmp.code],
        fam === "v4" ? [3, 3] : [1, 4],
        `${fam}: destination unreachable / port unreachable`,
      );
      // v4 quotes IP header + 8 bytes; v6 the whole (small) invoking packet.
      assert.equal(refused.icmp.quoted, fam === "v4" ? 28 : 40 + 8 + 106);

      const dropped = await probe(rl, target(i4or6[2]!, port), 1.5);
      assert.equal(dropped.result, "timeout", `${fam} drop: ${JSON.stringify(dropped)}`);
      assert.equal(dropped.icmp, null, `${fam} drop: no ICMP`);
    }

    const st = await udpStats(rl);
    assert.equal(st.refused, 2, "one refusal per reset session");
    assert.equal(st.refused_errors, 0);
    assert.equal(st.outbounds["refuse"], 2);
    assert.equal(st.outbounds["blackhole"], 2);
    assert.equal(st.outbounds["direct"], 2);
  },
);

routerLabTest(
  "UDP block: a burst of 2000 blocked sessions gets at most ~100 refusals a second",
  async (rl) => {
    const a = rl.addrs;
    await rl.startRouter(rl.config({
      inbound: { sniff: false },
      outbounds: [{ type: "direct", tag: "direct" }, { type: "block", tag: "refuse" }],
      route: { rules: [{ ip_cidr: [`${a.extra4[1]}/32`], outbound: "refuse" }], final: "direct" },
    }));
    const total = 2000;
    const t0 = performance.now();
    const r = await rl.lab.run("client", [
      "python3",
      peerPath("udp_churn.py"),
      "--targets",
      target(a.extra4[1]!, 7200),
      "--count",
      String(total),
      "--batch",
      "500",
      "--wait",
      "0",
      "--seconds",
      "60",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const st = await waitUntil(
      async () => {
        const s = await udpStats(rl);
        return s.refused + s.refused_limited + s.refused_errors >= total ? s : null;
      },
      20_000,
      "every blocked datagram to be refused or limited",
    );
    const seconds = (performance.now() - t0) / 1000;
    assert.equal(st.refused_errors, 0);
    // Bucket of 100 plus 100/s refill over the whole burst (an upper bound).
    const cap = 100 + Math.ceil(seconds * 100) + 1;
    assert.ok(st.refused >= 100, `the bucket's burst was used: ${JSON.stringify(st)}`);
    assert.ok(st.refused <= cap, `refused ${st.refused} > ${cap} after ${seconds.toFixed(2)} s`);
    assert.ok(st.refused_limited >= total - cap, `limited ${st.refused_limited}`);
  },
);
