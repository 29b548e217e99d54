// Privileged: needs root (netns, nft, IP_TRANSPARENT). Traffic stays inside the
// namespaces created here. The router runs as a real process in the router ns.
//
// Peers: tests/netns/peers/udp_echo.py (replies from the exact address it was
// sent to), udp_multi.py (one source port, several destinations),
// udp_churn.py (many source ports), udp_mapping.py (STUN-like NAT probe:
// the address each destination saw, pokes from strangers), udp_dns.py (python3 stdlib DNS responder
// and query), udp_quic_replay.py (replays tests/fixtures/quic/*.hex),
// udp_burst.py (numbered datagrams in bursts, echoed raw and checked byte for
// byte), and danted (dante-server) for SOCKS5 UDP ASSOCIATE.
import assert from "node:assert/strict";
import { IpcClient } from "../../ipc/client.ts";
import { UDP_ADMITTED_MAX, type UdpPlaneStats } from "../../router/udp_plane.ts";
import { Lab, type LabProcess, peerPath } from "./harness.ts";
import { startDante } from "./_kinds_lab.ts";
import { burstThrough, startBurstEcho } from "./_udp_burst.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const FIXTURES = new URL("../fixtures/quic/", import.meta.url).pathname;

interface Started {
  proc: LabProcess;
  ipc: string;
  configPath: string;
  dir: string;
}

async function until<T>(what: string, f: () => Promise<T | null> | T | null, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== null) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function startRouter(lab: Lab, config: Record<string, unknown>): Promise<Started> {
  const dir = await Deno.makeTempDir({ prefix: "vr-udp-" });
  const ipc = `${dir}/router.sock`;
  const configPath = `${dir}/router.json`;
  await Deno.writeTextFile(configPath, JSON.stringify({ ...config, ipc: { path: ipc } }));
  const proc = lab.spawn(
    "router",
    [Deno.execPath(), "run", "-A", "main.ts", "run", "--config", configPath],
    { cwd: ROOT },
  );
  await until("router UDP listening", () => {
    if (proc.exited) throw new Error(`router exited: ${proc.stderr}`);
    return /listening.*network=udp/.test(proc.stderr) ? true : null;
  }, 30_000);
  await until("router IPC", async () => {
    try {
      await Deno.stat(ipc);
      return true;
    } catch {
      return null;
    }
  });
  return { proc, ipc, configPath, dir };
}

type StatusWithUdp = { udp: UdpPlaneStats[]; flows: { udp: number } };

async function udpStatus(ipc: string): Promise<UdpPlaneStats> {
  const c = await IpcClient.connect(ipc);
  try {
    const st = (await c.status()) as unknown as StatusWithUdp;
    assert.equal(st.udp.length, 1);
    assert.equal(st.flows.udp, st.udp[0]!.sessions, "status flows.udp is the session count");
    return st.udp[0]!;
  } finally {
    await c.close();
  }
}

function inbound(extra: Record<string, unknown> = {}) {
  return { type: "tproxy", tag: "tp", listen: "::", listen_port: 7893, ...extra };
}

function py(lab: Lab, script: string, args: string[]) {
  return lab.run("client", ["python3", peerPath(script), ...args]);
}

async function multi(lab: Lab, targets: string[], payload: string, timeoutS = 2) {
  const r = await py(lab, "udp_multi.py", [
    "--targets",
    targets.join(","),
    "--payload",
    payload,
    "--timeout",
    String(timeoutS),
  ]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as { local: string; replies: { from: string; text: string }[] };
}

async function echoServer(lab: Lab, listen: string[]): Promise<LabProcess> {
  const p = lab.spawn("server", ["python3", peerPath("udp_echo.py"), "--listen", listen.join(",")]);
  await p.waitForLine(/^ready$/, 10_000);
  return p;
}

async function fdCount(pid: number): Promise<number> {
  let n = 0;
  for await (const _ of Deno.readDir(`/proc/${pid}/fd`)) n++;
  return n;
}

const ep = (a: string, port: number) => a.includes(":") ? `[${a}]:${port}` : `${a}:${port}`;

Deno.test("UDP TPROXY, v4 and v6: replies come from each original destination, each destination of one source port gets its own rule, DNS works, sessions expire", async () => {
  const lab = await Lab.create();
  let router: Started | null = null;
  try {
    const a = lab.addrs;
    await lab.applyTproxy();
    const dests = [...a.extra4.slice(0, 3), ...a.extra6.slice(0, 3)].map((x) => ep(x, 7000));
    const blocked = [ep(a.extra4[3]!, 7000), ep(a.extra6[3]!, 7000)];
    await echoServer(lab, [...dests, ...blocked]);
    await lab.dnsServer(`${a.server4}:53`, "192.0.2.77");
    router = await startRouter(lab, {
      log: { level: "info" },
      inbounds: [inbound({ udp_timeout: "2s", sniff: true })],
      outbounds: [{ type: "direct", tag: "direct" }, { type: "block", tag: "block" }],
      route: {
        rules: [{ ip_cidr: [`${a.extra4[3]}/32`, `${a.extra6[3]}/128`], outbound: "block" }],
        final: "direct",
        default_mark: 255,
      },
    });

    for (const family of ["v4", "v6"] as const) {
      const i = family === "v4" ? 0 : 3;
      const targets = [...dests.slice(i, i + 3), blocked[family === "v4" ? 0 : 1]!];
      const r = await multi(lab, targets, `hello-${family}`);
      const from = r.replies.map((x) => x.from).sort();
      assert.deepEqual(
        from,
        dests.slice(i, i + 3).sort(),
        `${family}: one reply per allowed destination`,
      );
      for (const reply of r.replies) {
        const body = JSON.parse(reply.text) as { local: string; text: string };
        assert.equal(
          body.local,
          reply.from,
          "the server answered on the address the client sent to",
        );
        assert.equal(body.text, `hello-${family}#0`);
      }
    }

    const q = await py(lab, "udp_dns.py", [
      "query",
      "--server",
      `${a.server4}:53`,
      "--name",
      "example.test",
    ]);
    const answer = JSON.parse(q.stdout) as { ok: boolean; from: string; answers: string[] };
    assert.equal(answer.ok, true, q.stdout + q.stderr);
    assert.equal(answer.from, `${a.server4}:53`);
    assert.deepEqual(answer.answers, ["192.0.2.77"]);

    const st = await udpStatus(router.ipc);
    assert.equal(st.created, 9, "4 + 4 destinations and one DNS session");
    assert.equal(st.outbounds["block"], 2);
    assert.equal(st.outbounds["direct"], 7);
    assert.ok(st.sessions > 0 && st.sessions <= 9);
    assert.ok(st.reply_sockets >= 7, "one reply socket per answered destination");
    assert.ok(st.dropped >= 2, "datagrams to the blocked destinations were dropped");

    // udp_timeout 2s: every session goes away without traffic.
    const expired = await until("sessions to expire", async () => {
      const s = await udpStatus(router!.ipc);
      return s.sessions === 0 ? s : null;
    }, 15_000);
    assert.equal(expired.expired, 9);
    assert.equal(expired.evicted, 0);
  } finally {
    await lab.destroy();
    if (router) await Deno.remove(router.dir, { recursive: true });
  }
});

type MappingReply = { from: string; peer: string; text: string };

/**
 * Starts `peers/udp_mapping.py client` in the client namespace (answering
 * whoever reaches it while it waits when `answer`) and waits for its first
 * phase: the address each of the first two `dests` saw. `go` is the file
 * that lets it go on.
 */
async function mappingClient(
  lab: Lab,
  dir: string,
  label: string,
  dests: readonly string[],
  answer = false,
): Promise<{ client: LabProcess; go: string; seen: Set<string>; mapped: string }> {
  const go = `${dir}/go-${label.replaceAll(/\W/g, "_")}`;
  const client = lab.spawn("client", [
    "python3",
    peerPath("udp_mapping.py"),
    "client",
    "--first",
    dests.slice(0, 2).join(","),
    "--then",
    dests[2]!,
    "--go",
    go,
    ...(answer ? ["--answer", "1"] : []),
  ]);
  const first = JSON.parse(await client.waitForLine(/"phase": "first"/)) as {
    replies: MappingReply[];
  };
  assert.equal(first.replies.length, 2, `${label}: both destinations answered`);
  const seen = new Set(first.replies.map((r) => r.peer));
  return { client, go, seen, mapped: first.replies[0]!.peer };
}

/** argv of `peers/udp_mapping.py poke` from `from` to `to`, `extra` options after. */
function pokeArgv(from: string, to: string, ...extra: string[]): string[] {
  return ["python3", peerPath("udp_mapping.py"), "poke", "--from", from, "--to", to, ...extra];
}

/**
 * STUN-like probe through a running router (`peers/udp_mapping.py`): from
 * one client socket, the first two `dests` report the address they saw (one
 * when the mapping is endpoint-independent, two otherwise); pokes at it from
 * `stranger` and from the first destination's address on another port must
 * not reach the client; then the third destination sees the same address
 * (endpoint-independent) or a new one. `label` names the case in messages.
 */
async function mappingProbe(
  lab: Lab,
  dir: string,
  label: string,
  dests: readonly string[],
  pokers: readonly string[],
  eim: boolean,
): Promise<void> {
  const { client, go, seen, mapped } = await mappingClient(lab, dir, label, dests);
  assert.equal(
    seen.size,
    eim ? 1 : 2,
    `${label}: the source address the destinations saw: ${[...seen]}`,
  );
  for (const from of pokers) {
    const r = await lab.run("server", pokeArgv(from, mapped));
    assert.equal(r.code, 0, r.stderr);
  }
  await Deno.writeTextFile(go, "");
  const waited = JSON.parse(await client.waitForLine(/"phase": "waited"/)) as { got: unknown[] };
  assert.deepEqual(waited.got, [], `${label}: nothing from the pokes got through`);
  const then = JSON.parse(await client.waitForLine(/"phase": "then"/)) as {
    replies: MappingReply[];
  };
  assert.equal(then.replies.length, 1, `${label}: a third destination answers`);
  if (eim) assert.equal(then.replies[0]!.peer, mapped, `${label}: it sees the same mapping`);
  else assert.ok(!seen.has(then.replies[0]!.peer), `${label}: it sees a mapping of its own`);
}

type MappingStats = UdpPlaneStats & {
  unsolicited: number;
  unsolicited_admitted: number;
  shared_sockets: number;
  socks_associations: number;
};

/** Runs `body` against a router started with each `udp_mapping` in turn (and stopped after). */
async function eachMapping(
  lab: Lab,
  config: (mapping: string) => Record<string, unknown>,
  body: (router: Started, eim: boolean) => Promise<void>,
): Promise<void> {
  for (const mapping of ["endpoint_independent", "per_destination"]) {
    const router = await startRouter(lab, config(mapping));
    try {
      await body(router, mapping === "endpoint_independent");
    } finally {
      await router.proc.kill();
      await Deno.remove(router.dir, { recursive: true });
    }
  }
}

/**
 * The destinations of the NAT-behaviour tests: applies the lab's TPROXY
 * rules and starts a UDP echo on the first three extra addresses of each
 * family (port 7000); `v6` empty when `withV6` is false.
 */
async function mappingDests(lab: Lab, withV6 = true): Promise<{ v4: string[]; v6: string[] }> {
  const a = lab.addrs;
  await lab.applyTproxy();
  const v4 = a.extra4.slice(0, 3).map((x) => ep(x, 7000));
  const v6 = withV6 ? a.extra6.slice(0, 3).map((x) => ep(x, 7000)) : [];
  await echoServer(lab, [...v4, ...v6]);
  return { v4, v6 };
}

Deno.test("UDP TPROXY: endpoint-independent mapping gives every destination one source port (v4, v6) and drops senders the client never sent to; per_destination maps each destination apart", async () => {
  const lab = await Lab.create();
  try {
    const a = lab.addrs;
    const { v4, v6 } = await mappingDests(lab);
    const config = (mapping: string) => ({
      log: { level: "info" },
      inbounds: [inbound({ udp_mapping: mapping, sniff: false })],
      outbounds: [{ type: "direct", tag: "direct" }],
      route: { final: "direct", default_mark: 255 },
    });
    await eachMapping(lab, config, async (router, eim) => {
      const mode = eim ? "endpoint_independent" : "per_destination";
      // Pokes at the mapped address: from a sender the client never sent to, and from a
      // destination's address on another port.
      await mappingProbe(lab, router.dir, `${mode} v4`, v4, [
        ep(a.extra4[3]!, 0),
        ep(a.extra4[0]!, 0),
      ], eim);
      await mappingProbe(lab, router.dir, `${mode} v6`, v6, [
        ep(a.extra6[3]!, 0),
        ep(a.extra6[0]!, 0),
      ], eim);
      const st = await udpStatus(router.ipc) as MappingStats;
      assert.equal(st.created, 6);
      if (!eim) {
        assert.equal(st.shared_sockets, 0);
        assert.equal(st.unsolicited, 0, "connected sockets: the kernel drops the pokes");
        return;
      }
      assert.equal(st.shared_sockets, 2, "one shared socket per client socket (v4, v6)");
      assert.equal(st.unsolicited, 20, "2 pokers x 5 datagrams x 2 families");
      // A shared socket lives as long as one of its sessions does.
      const c = await IpcClient.connect(router.ipc);
      try {
        const list = await c.connectionsList();
        const udp = list.connections.filter((x) => x.network === "udp");
        assert.equal(udp.length, 6);
        const one = udp.find((x) => x.dst === v4[0])!;
        assert.deepEqual(await c.connectionsClose({ id: one.id }), { closed: 1 });
        const after = (await udpStatus(router.ipc)) as MappingStats;
        assert.equal(after.shared_sockets, 2, "the v4 socket still has two sessions");
        assert.deepEqual(await c.connectionsClose({ outbound: "direct" }), { closed: 5 });
        const none = (await udpStatus(router.ipc)) as MappingStats;
        assert.equal(none.shared_sockets, 0, "closed with their last session");
      } finally {
        await c.close();
      }
    });
  } finally {
    await lab.destroy();
  }
});

Deno.test("UDP TPROXY through a SOCKS5 outbound: endpoint-independent mapping shares one UDP ASSOCIATE per client port (one relay port for every destination, strangers dropped); per_destination opens one per destination", async () => {
  const lab = await Lab.create();
  const dir = await Deno.makeTempDir({ prefix: "vr-danted-" });
  try {
    const a = lab.addrs;
    const { v4 } = await mappingDests(lab, false);
    const port = 1080;
    await startDante(lab, dir, port, [a.routerWan4]);
    const config = (mapping: string) => ({
      log: { level: "info" },
      inbounds: [inbound({ udp_mapping: mapping, sniff: false })],
      outbounds: [
        { type: "direct", tag: "direct" },
        { type: "socks", tag: "dante", server: "127.0.0.1", server_port: port },
      ],
      route: { final: "dante", default_mark: 255 },
    });
    await eachMapping(lab, config, async (router, eim) => {
      // The relay forwards what reaches its port from anyone (dante's rules pass all):
      // the router is what drops a stranger's datagrams.
      const label = `socks ${eim ? "endpoint_independent" : "per_destination"}`;
      await mappingProbe(lab, router.dir, label, v4, [ep(a.extra4[3]!, 0)], eim);
      const st = await udpStatus(router.ipc) as MappingStats;
      assert.equal(st.outbounds["dante"], 3);
      assert.equal(st.socks_associations, eim ? 1 : 3, "associations open");
      assert.equal(st.shared_sockets, 0);
      if (eim) assert.equal(st.unsolicited, 5, "the stranger's 5 datagrams, named by the relay");
    });
  } finally {
    await lab.destroy();
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * Full-cone probe (`udp_filtering: "endpoint_independent"`) through a
 * running router: the client's mapping (what the first two `dests` saw) is
 * poked from `admitted` (whom the rules route like the client's flows) and
 * from `refused` (whom they route elsewhere); only `admitted`'s datagrams
 * reach the client, from `admitted`'s own address, and the client's answer
 * reaches `admitted` from the mapped address: the same mapping both ways.
 */
async function fullConeProbe(
  lab: Lab,
  dir: string,
  label: string,
  dests: readonly string[],
  admitted: string,
  refused: string,
): Promise<string> {
  const { client, go, seen, mapped } = await mappingClient(lab, dir, label, dests, true);
  assert.equal(seen.size, 1, `${label}: one mapping for both destinations: ${[...seen]}`);
  const poke = (from: string, wait: number) =>
    lab.spawn("server", pokeArgv(from, mapped, "--count", "3", "--wait", String(wait)));
  const out = poke(refused, 0);
  const outDone = JSON.parse(await out.waitForLine(/"ok": true/)) as { from: string };
  const stranger = poke(admitted, 8);
  // The client waits for the go file; let the pokes arrive first.
  await new Promise((r) => setTimeout(r, 500));
  await Deno.writeTextFile(go, "");
  const waited = JSON.parse(await client.waitForLine(/"phase": "waited"/)) as {
    got: { from: string; text: string }[];
  };
  const froms = new Set(waited.got.map((g) => g.from));
  assert.equal(
    waited.got.length,
    3,
    `${label}: the admitted stranger's 3 datagrams: ${[...froms]}`,
  );
  assert.equal(froms.size, 1, `${label}: all from one sender`);
  assert.ok(!froms.has(outDone.from), `${label}: nothing from the refused sender`);
  const got = JSON.parse(await stranger.waitForLine(/"ok": true/, 15_000)) as {
    from: string;
    answers: { from: string; text: string }[];
  };
  assert.ok(froms.has(got.from), `${label}: the client heard the stranger at ${got.from}`);
  assert.deepEqual(
    got.answers,
    [{ from: mapped, text: "answer" }],
    `${label}: the client's answer left through its mapping`,
  );
  const then = JSON.parse(await client.waitForLine(/"phase": "then"/)) as {
    replies: MappingReply[];
  };
  assert.equal(then.replies[0]?.peer, mapped, `${label}: the mapping is still the same`);
  return mapped;
}

Deno.test("UDP TPROXY: endpoint-independent filtering (full cone) lets a stranger the rules route the same way reach a client's mapping, both ways (direct v4, v6; socks); others stay out", async () => {
  const lab = await Lab.create({ extraAddrs: 5 });
  const dir = await Deno.makeTempDir({ prefix: "vr-danted-" });
  try {
    const a = lab.addrs;
    const { v4, v6 } = await mappingDests(lab);
    const port = 1080;
    await startDante(lab, dir, port, [a.routerWan4]);
    const config = (final: string, maxSessions: number) => ({
      log: { level: "info" },
      inbounds: [
        inbound({
          udp_filtering: "endpoint_independent",
          sniff: false,
          udp_max_sessions: maxSessions,
        }),
      ],
      outbounds: [
        { type: "direct", tag: "direct" },
        { type: "direct", tag: "other", routing_mark: 77 },
        { type: "socks", tag: "dante", server: "127.0.0.1", server_port: port },
      ],
      route: {
        rules: [{ ip_cidr: [`${a.extra4[4]}/32`, `${a.extra6[4]}/128`], outbound: "other" }],
        final,
        default_mark: 255,
      },
    });
    // direct (v4, v6), dante (v4), and direct (v4) with a small session table: strangers may
    // fill half of it.
    const cases = [
      { final: "direct", v6: true, maxSessions: 65536 },
      { final: "dante", v6: false, maxSessions: 65536 },
      { final: "direct", v6: false, maxSessions: 16 },
    ];
    for (const { final, v6: withV6, maxSessions } of cases) {
      const router = await startRouter(lab, config(final, maxSessions));
      try {
        const mapped4 = await fullConeProbe(
          lab,
          router.dir,
          `${final} v4`,
          v4,
          ep(a.extra4[3]!, 0),
          ep(a.extra4[4]!, 0),
        );
        if (withV6) {
          await fullConeProbe(
            lab,
            router.dir,
            "direct v6",
            v6,
            ep(a.extra6[3]!, 0),
            ep(a.extra6[4]!, 0),
          );
        }
        const st = await udpStatus(router.ipc) as MappingStats;
        const families = withV6 ? 2 : 1;
        assert.equal(st.unsolicited_admitted, families, "one stranger admitted per probe");
        assert.equal(st.unsolicited, 3 * families, "the other outbound's sender: dropped");
        assert.equal(
          st.outbounds[final],
          4 * families,
          "3 sessions to destinations + the stranger",
        );
        const c = await IpcClient.connect(router.ipc);
        try {
          // The refused sender's rule ("other") counts no hit: no flow went there.
          const hits = await c.stats({ rules: true });
          assert.equal(hits.rules_hit, 0, `rules with hits: ${JSON.stringify(hits.rules)}`);
          const finalRow = hits.rules?.find((r) => r.rule === null);
          assert.ok(finalRow!.hits >= 4 * families, "final counts the flows and the stranger");
          const udp = (await c.connectionsList()).connections.filter((x) => x.network === "udp");
          const opened = udp.filter((x) => x.dst.startsWith(a.extra4[3]!));
          assert.equal(opened.length, 1, "the stranger's session is listed");
          assert.equal(opened[0]!.outbound, final);
          assert.equal(opened[0]!.opened_by_remote, true);
          const byRemote = udp.filter((x) => x.opened_by_remote).map((x) => x.dst);
          const strangers = [a.extra4[3]!, `[${a.extra6[3]}]`].slice(0, families);
          assert.equal(byRemote.length, families, `opened by the remote: ${byRemote}`);
          for (const x of byRemote) {
            assert.ok(strangers.some((h) => x.startsWith(`${h}:`)), `${x} is a stranger`);
          }
        } finally {
          await c.close();
        }
        if (final !== "direct") continue;
        // A flood of strangers (300 ports): at most UDP_ADMITTED_MAX sessions per mapping, and
        // strangers' sessions take at most half the session table.
        const r = await lab.run(
          "server",
          pokeArgv(ep(a.extra4[3]!, 0), mapped4, "--count", "1", "--senders", "300"),
        );
        assert.equal(r.code, 0, r.stderr);
        const before = st.unsolicited_admitted + st.unsolicited;
        let flood = st;
        for (
          let i = 0;
          i < 50 && flood.unsolicited_admitted + flood.unsolicited < before + 300;
          i++
        ) {
          await new Promise((res) => setTimeout(res, 100));
          flood = await udpStatus(router.ipc) as MappingStats;
        }
        const cap = withV6 ? 1 + UDP_ADMITTED_MAX : maxSessions / 2;
        assert.equal(flood.unsolicited_admitted, cap, withV6 ? "v6's one + v4's cap" : "half");
        const more = cap - st.unsolicited_admitted;
        assert.equal(flood.unsolicited, st.unsolicited + 300 - more, "the rest");
        assert.equal(flood.sessions, 3 * families + cap, "no client session evicted");
      } finally {
        await router.proc.kill();
        await Deno.remove(router.dir, { recursive: true });
      }
    }
  } finally {
    await lab.destroy();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("UDP TPROXY: 20,000 sessions of churn from many source ports keep the router's fd count bounded", async () => {
  const lab = await Lab.create();
  let router: Started | null = null;
  try {
    const a = lab.addrs;
    await lab.applyTproxy();
    const targets = [ep(a.extra4[0]!, 7001), ep(a.extra6[0]!, 7001), ep(a.extra4[1]!, 7001)];
    await echoServer(lab, targets);
    const maxSessions = 500;
    router = await startRouter(lab, {
      log: { level: "info" },
      inbounds: [inbound({ udp_timeout: "30s", udp_max_sessions: maxSessions, sniff: false })],
      outbounds: [{ type: "direct", tag: "direct" }],
      route: { rules: [], final: "direct", default_mark: 255 },
    });
    const pid = router.proc.pid;
    const base = await fdCount(pid);
    let maxFds = base;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        maxFds = Math.max(maxFds, await fdCount(pid));
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const total = 20_000;
    const r = await py(lab, "udp_churn.py", [
      "--targets",
      targets.join(","),
      "--count",
      String(total),
      "--batch",
      "250",
      "--wait",
      "0.5",
      "--seconds",
      "180",
    ]);
    sampling = false;
    await sampler;
    assert.equal(r.code, 0, r.stderr);
    const churn = JSON.parse(r.stdout) as { sent: number; replies: number };
    assert.equal(churn.sent, total);
    assert.ok(
      churn.replies > total * 0.9,
      `most sessions got their reply: ${JSON.stringify(churn)}`,
    );
    const st = await udpStatus(router.ipc);
    assert.ok(st.sessions <= maxSessions);
    // Every datagram reached the router; a source port the client's kernel
    // reused while its old session was still alive continues that session.
    assert.equal(st.datagrams_up, total);
    assert.ok(st.created > total * 0.9 && st.created <= total, `created ${st.created}`);
    assert.ok(st.evicted >= st.created - maxSessions, "old sessions were evicted (LRU)");
    // One upstream socket per session (each from its own client port: with the default
    // endpoint-independent mapping, one shared socket each) plus a few reply sockets.
    const bound = base + maxSessions + targets.length + 16;
    assert.ok(maxFds <= bound, `fds peaked at ${maxFds} (base ${base}, bound ${bound})`);
    assert.ok(maxFds > base + maxSessions / 2, `sampling saw the table fill: ${maxFds}`);
    assert.equal(st.reply_sockets, targets.length, "reply sockets shared by all clients");
  } finally {
    await lab.destroy();
    if (router) await Deno.remove(router.dir, { recursive: true });
  }
});

Deno.test("UDP TPROXY: a SOCKS5 outbound relays UDP through dante's UDP ASSOCIATE, v4 and v6, bursts intact", async () => {
  const lab = await Lab.create();
  let router: Started | null = null;
  const dir = await Deno.makeTempDir({ prefix: "vr-danted-" });
  try {
    const a = lab.addrs;
    await lab.applyTproxy();
    const viaSocks = ep(a.extra4[1]!, 7002);
    const direct = ep(a.extra4[0]!, 7002);
    const viaSocks6 = ep(a.extra6[1]!, 7002);
    const direct6 = ep(a.extra6[0]!, 7002);
    await echoServer(lab, [viaSocks, direct, viaSocks6, direct6]);
    const port = 1080;
    await startDante(lab, dir, port, [a.routerWan4, a.routerWan6]);
    router = await startRouter(lab, {
      log: { level: "info" },
      inbounds: [inbound({ sniff: false })],
      outbounds: [
        { type: "direct", tag: "direct" },
        { type: "socks", tag: "dante", server: "127.0.0.1", server_port: port },
      ],
      route: {
        rules: [{ ip_cidr: [`${a.extra4[1]}/32`, `${a.extra6[1]}/128`], outbound: "dante" }],
        final: "direct",
        default_mark: 255,
      },
    });
    for (
      const [socksTo, directTo, relay] of [
        [viaSocks, direct, `${a.routerWan4}:`],
        [viaSocks6, direct6, `[${a.routerWan6}]:`],
      ] as const
    ) {
      const r = await multi(lab, [socksTo, directTo], "via-dante", 3);
      const byFrom = new Map(
        r.replies.map((x) => [x.from, JSON.parse(x.text) as { peer: string }]),
      );
      assert.deepEqual([...byFrom.keys()].sort(), [directTo, socksTo].sort(), JSON.stringify(r));
      const socksPeer = byFrom.get(socksTo)!.peer;
      assert.ok(socksPeer.startsWith(relay), `dante relayed ${socksTo} from ${socksPeer}`);
    }
    const st = await udpStatus(router.ipc);
    assert.equal(st.outbounds["dante"], 2);
    assert.equal(st.outbounds["direct"], 2);
    // A second round on the same session reuses the association.
    const again = await multi(lab, [viaSocks], "again", 3);
    assert.equal(again.replies.length, 1);
    const sessionsBefore = (await udpStatus(router.ipc)).outbounds["dante"]!;
    // Bursts through the relay: each datagram gets its SOCKS5 header in the
    // router's batched sends (one GSO send for a run of one size), and the
    // relay's replies come back batched; every byte checked, v4 and v6.
    for (const addr of [a.extra4[1]!, a.extra6[1]!]) {
      const at = ep(addr, 7003);
      const echo = await startBurstEcho(lab, at);
      await burstThrough(lab, at, 2000);
      await echo.kill();
    }
    assert.equal((await udpStatus(router.ipc)).outbounds["dante"], sessionsBefore + 2);
  } finally {
    await lab.destroy();
    if (router) await Deno.remove(router.dir, { recursive: true });
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("UDP TPROXY: QUIC Initials are routed by their SNI (domain rules), and without the rule the same flight goes direct", async () => {
  const lab = await Lab.create();
  let router: Started | null = null;
  try {
    const a = lab.addrs;
    await lab.applyTproxy();
    const target = ep(a.extra4[0]!, 443);
    const target6 = ep(a.extra6[0]!, 443);
    await echoServer(lab, [target, target6]);
    const base = {
      log: { level: "info" },
      inbounds: [inbound({ sniff: true, sniff_timeout: "300ms" })],
      outbounds: [{ type: "direct", tag: "direct" }, { type: "block", tag: "block" }],
    };
    router = await startRouter(lab, {
      ...base,
      route: {
        rules: [{ domain_suffix: ["example.org"], outbound: "block" }],
        final: "direct",
        default_mark: 255,
      },
    });
    const replay = async (fixture: string, t: string) => {
      const r = await py(lab, "udp_quic_replay.py", [
        "--fixture",
        `${FIXTURES}${fixture}`,
        "--target",
        t,
        "--timeout",
        "1.5",
      ]);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as { sent: number; replies: number };
    };
    // chromium.hex carries SNI www.example.org (over several Initials); gtlsclient "localhost".
    assert.equal((await replay("chromium.hex", target)).replies, 0, "example.org is blocked");
    assert.equal((await replay("chromium.hex", target6)).replies, 0, "also over IPv6");
    const ok = await replay("gtlsclient_v1.hex", target);
    assert.equal(ok.replies, ok.sent, "another SNI to the same address goes direct");
    let st = await udpStatus(router.ipc);
    assert.equal(st.outbounds["block"], 2);
    assert.equal(st.outbounds["direct"], 1);
    assert.equal(st.sniffed_quic, 3);

    // Same flight without the rule: reload, and the next session goes direct.
    await Deno.writeTextFile(
      router.configPath,
      JSON.stringify({
        ...base,
        route: { rules: [], final: "direct", default_mark: 255 },
        ipc: { path: router.ipc },
      }),
    );
    const c = await IpcClient.connect(router.ipc);
    try {
      await c.call("reload", { path: router.configPath });
    } finally {
      await c.close();
    }
    const after = await replay("chromium.hex", target);
    assert.equal(after.replies, after.sent, "without the rule the chromium flight is answered");
    st = await udpStatus(router.ipc);
    assert.equal(st.outbounds["direct"], 2);
  } finally {
    await lab.destroy();
    if (router) await Deno.remove(router.dir, { recursive: true });
  }
});

Deno.test("UDP TPROXY: bursts of numbered datagrams (runs of one size and mixed sizes) come back intact and in order, v4 and v6", async () => {
  const lab = await Lab.create();
  let router: Started | null = null;
  try {
    const a = lab.addrs;
    await lab.applyTproxy();
    const targets = [ep(a.extra4[0]!, 7001), ep(a.extra6[0]!, 7001)];
    for (const t of targets) await startBurstEcho(lab, t);
    router = await startRouter(lab, {
      log: { level: "info" },
      inbounds: [inbound({ sniff: true })],
      outbounds: [{ type: "direct", tag: "direct" }],
      route: { final: "direct", default_mark: 255 },
    });
    let received = 0;
    for (const target of targets) {
      // Bursts of 32: the router reads them in batches and sends each batch's
      // datagrams of one session together (UDP GSO for a run of one size,
      // sendmmsg otherwise), both ways.
      received += (await burstThrough(lab, target, 4000)).received;
    }
    // Every echo the client got went up and came down through the router.
    const st = await udpStatus(router.ipc);
    assert.equal(st.created, 2);
    assert.ok(st.datagrams_up >= received && st.datagrams_up <= 8000, JSON.stringify(st));
    assert.ok(
      st.datagrams_down >= received && st.datagrams_down <= st.datagrams_up,
      JSON.stringify(st),
    );
  } finally {
    await lab.destroy();
    if (router) await Deno.remove(router.dir, { recursive: true });
  }
});

Deno.test("UDP sessions in connections.list / connections.close; an open session keeps its decision across a reload; close_removed closes a removed outbound's", async () => {
  const lab = await Lab.create();
  let router: Started | null = null;
  try {
    const a = lab.addrs;
    await lab.applyTproxy();
    const toA = ep(a.extra4[0]!, 7004), toB = ep(a.extra4[1]!, 7004), toC = ep(a.extra4[2]!, 7004);
    await echoServer(lab, [toA, toB, toC]);
    const base = {
      log: { level: "info" },
      inbounds: [inbound({ sniff: false, udp_timeout: "5m" })],
      route: {
        rules: [{ ip_cidr: [`${a.extra4[1]}/32`, `${a.extra4[2]}/32`], outbound: "second" }],
        final: "direct",
        default_mark: 255,
      },
    };
    router = await startRouter(lab, {
      ...base,
      outbounds: [{ type: "direct", tag: "direct" }, { type: "direct", tag: "second" }],
    });
    const r = await multi(lab, [toA, toB, toC], "listed");
    assert.equal(r.replies.length, 3, JSON.stringify(r));
    const c = await IpcClient.connect(router.ipc);
    try {
      const list = await c.connectionsList();
      const udp = list.connections.filter((x) => x.network === "udp");
      assert.deepEqual(
        udp.map((x) => `${x.dst} ${x.outbound}`).sort(),
        [
          `${toA} direct`,
          `${toB} second`,
          `${toC} second`,
        ].sort(),
      );
      // One client socket sent to all three: one source port, three sessions.
      assert.equal(new Set(udp.map((x) => x.src.split(":").pop())).size, 1, JSON.stringify(udp));
      for (const x of udp) {
        assert.equal(x.inbound, "tp");
        assert.ok(x.bytes_up > 0 && x.bytes_down > 0, JSON.stringify(x));
        assert.ok(Date.parse(x.started_at) <= Date.now());
      }
      // By id: that session alone goes (its socket with it).
      const one = udp.find((x) => x.dst === toA)!;
      assert.deepEqual(await c.connectionsClose({ id: one.id }), { closed: 1 });
      let st = await udpStatus(router.ipc);
      assert.equal(st.sessions, 2);
      assert.equal(st.closed, 1);
      // A session open across a reload keeps its decision; a new one follows the new rules.
      const echo = await startBurstEcho(lab, ep(a.extra4[3]!, 7005));
      const slowTo = ep(a.extra4[3]!, 7005);
      const ipcPath = router.ipc;
      const rules = (to: string[]) => ({
        ...base,
        route: {
          ...base.route,
          rules: [{ ip_cidr: to.map((x) => `${x}/32`), outbound: "second" }],
        },
        outbounds: [{ type: "direct", tag: "direct" }, { type: "direct", tag: "second" }],
        ipc: { path: ipcPath },
      });
      await Deno.writeTextFile(
        router.configPath,
        JSON.stringify(rules([a.extra4[1]!, a.extra4[2]!, a.extra4[3]!])),
      );
      await c.reload({ path: router.configPath });
      const longLived = lab.spawn("client", [
        "python3",
        peerPath("udp_burst.py"),
        "send",
        "--target",
        slowTo,
        "--count",
        "600",
        "--burst",
        "2",
      ]);
      await until("the long-lived session", async () => {
        const l = await c.connectionsList();
        return l.connections.some((x) => x.dst === slowTo) ? true : null;
      });
      // Its destination now goes direct for new sessions; the open one stays on "second".
      await Deno.writeTextFile(
        router.configPath,
        JSON.stringify(rules([a.extra4[1]!, a.extra4[2]!])),
      );
      await c.reload({ path: router.configPath });
      const fresh = await multi(lab, [slowTo], "after-reload");
      assert.equal(fresh.replies.length, 1);
      await longLived.status;
      const done = JSON.parse(longLived.lines.at(-1)!) as { received: number; corrupt: number };
      assert.equal(done.corrupt, 0);
      assert.ok(done.received >= 300, JSON.stringify(done));
      const toSlow = (await c.connectionsList()).connections.filter((x) => x.dst === slowTo);
      assert.deepEqual(toSlow.map((x) => x.outbound).sort(), ["direct", "second"]);
      await echo.kill();

      // A reload that removes "second" and closes what used it.
      await Deno.writeTextFile(
        router.configPath,
        JSON.stringify({
          ...base,
          route: { final: "direct", default_mark: 255 },
          outbounds: [{ type: "direct", tag: "direct" }],
          ipc: { path: router.ipc },
        }),
      );
      const rl = await c.reload({ path: router.configPath, close_removed: true });
      assert.equal(rl.closed, 3, JSON.stringify(rl)); // toB, toC and the long-lived one
      st = await udpStatus(router.ipc);
      assert.equal(st.sessions, 1, "the fresh direct session stays");
      assert.equal(st.closed, 4);
      assert.deepEqual(
        (await c.connectionsList()).connections.filter((x) => x.network === "udp").map((x) =>
          `${x.dst} ${x.outbound}`
        ),
        [`${slowTo} direct`],
      );
    } finally {
      c.close();
    }
  } finally {
    await lab.destroy();
    if (router) await Deno.remove(router.dir, { recursive: true });
  }
});
