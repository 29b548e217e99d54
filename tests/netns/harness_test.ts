// Privileged: needs root (netns, nft). Traffic stays inside the namespaces created here.
import assert from "node:assert/strict";
import { Lab } from "./harness.ts";
import { runCommand } from "../../cli/tproxy_rules.ts";

async function namespaces(): Promise<string[]> {
  const r = await runCommand(["ip", "netns", "list"]);
  return r.stdout.split("\n").map((l) => l.split(" ")[0] ?? "").filter((x) => x !== "");
}

Deno.test("Lab forwards TCP from client to every server address, v4 and v6, and destroy() removes its namespaces", async () => {
  const lab = await Lab.create();
  try {
    assert.ok(Object.values(lab.ns).every((n) => n.length <= 15));
    const before = await namespaces();
    for (const n of Object.values(lab.ns)) assert.ok(before.includes(n), `${n} exists`);
    await lab.tcpServer("server", "0.0.0.0", 8080, "hash");
    await lab.tcpServer("server", "::", 8086, "echo");
    const targets4 = [lab.addrs.server4, ...lab.addrs.extra4].map((a) => `${a}:8080`);
    const targets6 = [lab.addrs.server6, ...lab.addrs.extra6].map((a) => `[${a}]:8086`);
    for (const [i, t] of targets4.entries()) {
      const r = await lab.tcpClient("client", t, { bytes: 100_000 + i, seed: i + 1 });
      assert.equal(r.ok, true, `${t}: ${r.error}`);
      const reply = JSON.parse(r.text ?? "{}") as { bytes: number; sha256: string };
      assert.equal(reply.bytes, 100_000 + i);
      assert.equal(reply.sha256, r.sentSha256, `${t}: server hashed what the client sent`);
      assert.equal(r.local, `${lab.addrs.client4}:${r.local?.split(":")[1]}`);
    }
    for (const t of targets6) {
      const r = await lab.tcpClient("client", t, { bytes: 200_000, seed: 7 });
      assert.equal(r.ok, true, `${t}: ${r.error}`);
      assert.equal(r.received, 200_000);
      assert.equal(r.receivedSha256, r.sentSha256, `${t}: echo returns the same bytes`);
    }
  } finally {
    await lab.destroy();
    await lab.destroy(); // idempotent
  }
  const after = await namespaces();
  for (const n of Object.values(lab.ns)) assert.ok(!after.includes(n), `${n} deleted`);
});

Deno.test("applyTproxy() steers TCP and UDP, v4 and v6, to a transparent listener that sees the original destination", async () => {
  const lab = await Lab.create();
  try {
    const opts = await lab.applyTproxy({ port: 7893 });
    // Applying twice yields the same state (one ip rule, same ruleset). `nft -s`
    // leaves out counter values: stray IPv6 ND packets may count in between.
    const list = ["nft", "-s", "list", "table", "inet", "vpn_router"];
    const ruleset1 = await lab.runOk("router", list);
    await lab.applyTproxy({ port: 7893 });
    const ruleset2 = await lab.runOk("router", list);
    assert.equal(ruleset2, ruleset1);
    const rules = await lab.runOk("router", ["ip", "rule", "show"]);
    assert.equal(
      rules.split("\n").filter((l) => l.includes("fwmark 0x1/0x1 lookup 100")).length,
      1,
    );

    await lab.transparentListener("127.0.0.1:7893", "tcp");
    await lab.transparentListener("[::1]:7893", "tcp");
    await lab.transparentListener("127.0.0.1:7893", "udp");
    await lab.transparentListener("[::1]:7893", "udp");
    // No server listens on these: only the TPROXY listener can answer.
    const v4 = `${lab.addrs.extra4[2]}:443`, v6 = `[${lab.addrs.extra6[1]}]:8443`;
    for (const t of [v4, v6]) {
      const r = await lab.tcpClient("client", t, { bytes: 10 });
      assert.equal(r.ok, true, `${t}: ${r.error}`);
      const seen = JSON.parse(r.text ?? "{}") as { local: string; peer: string };
      assert.equal(seen.local, t, "listener's getsockname() is the original destination");
      assert.equal(seen.peer, r.local, "listener sees the real client address");
    }
    for (const t of [`${lab.addrs.extra4[0]}:53`, `[${lab.addrs.extra6[3]}]:5353`]) {
      const r = await lab.udpClient("client", t, "hello");
      assert.equal(r.ok, true, `${t}: ${r.error}`);
      assert.equal(r.from, t, "reply comes from the original destination");
      assert.equal((JSON.parse(r.text ?? "{}") as { local: string }).local, t);
    }
    for (const c of ["tproxy_tcp4", "tproxy_tcp6", "tproxy_udp4", "tproxy_udp6"]) {
      const n = await lab.nftCounter("router", "vpn_router", c);
      assert.ok(n.packets >= 1, `${c} counted`);
    }

    // Remove: plain forwarding again, and remove when absent still succeeds.
    await lab.removeTproxy(opts);
    await lab.removeTproxy(opts);
    const gone = await lab.run("router", ["nft", "list", "table", "inet", "vpn_router"]);
    assert.notEqual(gone.code, 0);
    const rulesAfter = await lab.runOk("router", ["ip", "rule", "show"]);
    assert.ok(!rulesAfter.includes("lookup 100"));
    await lab.tcpServer("server", lab.addrs.extra4[2]!, 443, "hash");
    const r = await lab.tcpClient("client", v4, { bytes: 1000 });
    assert.equal(r.ok, true, r.error);
    assert.equal((JSON.parse(r.text ?? "{}") as { sha256: string }).sha256, r.sentSha256);
  } finally {
    await lab.destroy();
  }
});

/** Connects from the router ns with SO_MARK `mark` (like the router's outbound sockets). */
async function markedConnect(lab: Lab, to: string, port: number, mark: number): Promise<boolean> {
  const py = [
    "import socket",
    "s = socket.socket()",
    `s.setsockopt(socket.SOL_SOCKET, 36, ${mark})`,
    "s.settimeout(3)",
    `s.connect(("${to}", ${port}))`,
    "s.sendall(b'x')",
    "print('ok' if s.recv(16) else 'eof')",
  ].join("\n");
  const r = await lab.run("router", ["python3", "-c", py]);
  return r.stdout.trim() === "ok";
}

Deno.test("tcp_fwmark_accept=1 is safe with our guard rules and fails without them", async () => {
  const lab = await Lab.create();
  try {
    await lab.applyTproxy({ network: "tcp", family: "ipv4" });
    const fwa = await lab.runOk("router", ["sysctl", "-n", "net.ipv4.tcp_fwmark_accept"]);
    assert.equal(fwa.trim(), "1", "--sysctl sets it");
    const listener = await lab.transparentListener("127.0.0.1:7893", "tcp");
    const t = `${lab.addrs.extra4[1]}:80`;
    const ok = await lab.tcpClient("client", t, { timeoutMs: 3000 });
    assert.equal(ok.ok, true, ok.error);
    const seen = JSON.parse(ok.text ?? "{}") as { mark: number };
    assert.equal(seen.mark, 1, "the accepted socket inherited the SYN's mark");
    assert.ok(listener.lines.length >= 2);
    // The router's own sockets carry default_mark 0xff (bit 0 set): the
    // skip goto keeps them away from `fwmark 0x1/0x1 lookup 100`.
    await lab.tcpServer("server", lab.addrs.extra4[2]!, 9000, "echo");
    assert.equal(await markedConnect(lab, lab.addrs.extra4[2]!, 9000, 0xff), true);

    // Regression: without the `iif lo` guard the SYN-ACK is routed by the
    // fwmark rule into `local default dev lo` and never leaves.
    await lab.runOk("router", ["ip", "-4", "rule", "del", "pref", "99"]);
    const broken = await lab.tcpClient("client", t, { timeoutMs: 3000 });
    assert.equal(broken.ok, false, "SYN-ACK is routed into local default dev lo");
    // And without the skip goto, the router's 0xff sockets are looped into lo too.
    await lab.runOk("router", ["ip", "-4", "rule", "del", "pref", "98"]);
    assert.equal(await markedConnect(lab, lab.addrs.extra4[2]!, 9000, 0xff), false);
  } finally {
    await lab.destroy();
  }
});

Deno.test("Lab.cleanupStale() keeps fresh lab namespaces", async () => {
  const lab = await Lab.create();
  try {
    const removed = await Lab.cleanupStale("vr", 10 * 60_000);
    for (const n of Object.values(lab.ns)) assert.ok(!removed.includes(n));
    assert.ok((await namespaces()).includes(lab.ns.router));
  } finally {
    await lab.destroy();
  }
});
