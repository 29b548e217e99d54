/**
 * Privileged end-to-end test of the Slim Node: three namespaces (slim, A,
 * B), real `slim run` inside the slim namespace, `wireguard-go` peers in A
 * and B, forwarding decided by our nft table. Needs root, ip, nft, wg,
 * wireguard-go, curl, ping and python3.
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import {
  addNamespaces,
  canRunPrivileged,
  deleteNamespaces,
  exec,
  nsExec,
  nsSh,
  sh,
  SlimApi,
  SlimProcess,
  uid,
  vethPair,
  watchCmdlines,
  wgClient,
} from "./slim_netns.ts";

const MAIN = new URL("../../slim/main.ts", import.meta.url).pathname;
const PROGRAMS = ["ip", "nft", "wg", "wireguard-go", "curl", "ping", "python3"];

const TCP_SERVER = `
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(8); s.settimeout(120)
while True:
    c, _ = s.accept(); c.sendall(b"pong\\n"); c.close()
`;
const TCP_CLIENT = `
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
sys.exit(0 if c.recv(16) == b"pong\\n" else 1)
`;

async function ping(ns: string, ip: string, count = 1): Promise<boolean> {
  return (await nsExec(ns, "ping", ["-n", "-q", "-c", String(count), "-W", "2", ip])).code === 0;
}

async function tcp(ns: string, ip: string, port: number): Promise<boolean> {
  return (await nsExec(ns, "python3", ["-c", TCP_CLIENT, ip, String(port)], { timeoutMs: 10_000 }))
    .code === 0;
}

/** Pings until it answers (tunnels need a handshake first); bounded. */
async function pingEventually(ns: string, ip: string, tries = 5): Promise<boolean> {
  for (let i = 0; i < tries; i++) if (await ping(ns, ip)) return true;
  return false;
}

async function otherCounter(ns: string): Promise<number> {
  const out = await nsSh(ns, "nft", ["list", "chain", "inet", "other_t", "counting"]);
  const m = /counter packets (\d+)/.exec(out);
  return m ? Number(m[1]) : -1;
}

Deno.test({
  name: "slim relays only allowed WireGuard peers, survives a restart, leaks no keys",
  ignore: !canRunPrivileged(PROGRAMS),
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const id = uid(4);
    const S = `slimS-${id}`, A = `slimA-${id}`, B = `slimB-${id}`;
    const tagA = `a${id}`, tagB = `b${id}`;
    const wgA = `wgc${id}a`, wgB = `wgc${id}b`;
    const dir = await Deno.makeTempDir({ prefix: "slim-netns-" });
    let slim: SlimProcess | null = null;
    let server: Deno.ChildProcess | null = null;
    const slimKeys: string[] = [];
    const watcher = watchCmdlines(() => slimKeys);
    try {
      // --- topology: A -- S -- B over veth underlays, no interface in the root namespace
      await addNamespaces([S, A, B]);
      await vethPair({ ns: S, dev: "ua", cidr: "172.31.1.1/30" }, {
        ns: A,
        dev: "ua",
        cidr: "172.31.1.2/30",
      });
      await vethPair({ ns: S, dev: "ub", cidr: "172.31.2.1/30" }, {
        ns: B,
        dev: "ub",
        cidr: "172.31.2.2/30",
      });
      await sh("ip", ["-n", A, "route", "add", "172.31.2.0/30", "via", "172.31.1.1"]);
      await sh("ip", ["-n", B, "route", "add", "172.31.1.0/30", "via", "172.31.2.1"]);
      // The box's own forwarding between its underlays, and someone else's nft table.
      await nsSh(S, "sysctl", ["-q", "-w", "net.ipv4.conf.ua.forwarding=1"]);
      await nsSh(S, "sysctl", ["-q", "-w", "net.ipv4.conf.ub.forwarding=1"]);
      await nsSh(S, "nft", ["-f", "-"], {
        stdin: "table inet other_t {\n chain counting {\n  type filter hook forward priority 10; " +
          "policy accept;\n  counter\n }\n}\n",
      });
      assert.ok(await ping(A, "172.31.2.2"), "underlay A->B through S before slim");
      const otherBefore = await otherCounter(S);

      // --- slim config
      const token = `tok-${uid(24)}`;
      await Deno.writeTextFile(`${dir}/token`, token + "\n", { mode: 0o600 });
      await Deno.writeTextFile(`${dir}/auth.hdr`, `authorization: Bearer ${token}\n`, {
        mode: 0o600,
      });
      const port = 18000 + Math.floor(Math.random() * 1000);
      await Deno.writeTextFile(
        `${dir}/slim.json`,
        JSON.stringify({
          listen: "127.0.0.1",
          listen_port: port,
          token_file: "token",
          state_path: "state/slim.db",
          nft_table: "vpn_slim",
          log_level: "debug",
          wireguard: { mode: "auto" },
        }),
      );
      const check = await exec(Deno.execPath(), [
        "run",
        "-A",
        MAIN,
        "check",
        "--config",
        `${dir}/slim.json`,
      ]);
      assert.equal(check.code, 0, check.stderr);
      const api = new SlimApi(S, port, `${dir}/auth.hdr`);
      slim = new SlimProcess(S, MAIN, `${dir}/slim.json`);
      await api.waitReady();
      assert.equal((await api.call("GET", "/api/peers")).status, 200);

      // --- client keys (the test's own) and slim peers
      const keyA = (await sh("wg", ["genkey"])).trim();
      const keyB = (await sh("wg", ["genkey"])).trim();
      const pubA = (await sh("wg", ["pubkey"], { stdin: keyA })).trim();
      const pubB = (await sh("wg", ["pubkey"], { stdin: keyB })).trim();
      const slimKeyA = (await sh("wg", ["genkey"])).trim(); // given through the API
      slimKeys.push(slimKeyA);
      const resA = await api.call("POST", "/api/peers", {
        tag: tagA,
        private_key: slimKeyA,
        peer_public_key: pubA,
        listen_port: 51901,
        address: ["10.77.1.1/24"],
        allowed_ips: ["10.77.1.2/32"],
      });
      assert.equal(resA.status, 201, JSON.stringify(resA.json));
      assert.equal(resA.json.public_key, (await sh("wg", ["pubkey"], { stdin: slimKeyA })).trim());
      const resB = await api.call("POST", "/api/peers", {
        tag: tagB,
        peer_public_key: pubB,
        listen_port: 51902,
        address: ["10.77.2.1/24"],
        allowed_ips: ["10.77.2.2/32"],
      });
      assert.equal(resB.status, 201, JSON.stringify(resB.json));
      // The generated key: read it from the state file to look for it in /proc.
      const db = new DatabaseSync(`${dir}/state/slim.db`, { readOnly: true });
      const row = db.prepare("SELECT private_key FROM peers WHERE tag = ?").get(tagB) as {
        private_key: string;
      };
      db.close();
      slimKeys.push(row.private_key);
      assert.equal((await Deno.stat(`${dir}/state/slim.db`)).mode! & 0o777, 0o600);
      assert.ok(
        !JSON.stringify((await api.call("GET", "/api/peers")).json).includes(row.private_key),
      );

      // --- clients: wireguard-go in A and B dialling slim
      const network = "10.77.0.0/16";
      await wgClient({
        ns: A,
        dev: wgA,
        privateKey: keyA,
        serverPublicKey: resA.json.public_key,
        endpoint: "172.31.1.1:51901",
        address: "10.77.1.2/24",
        network,
      });
      await wgClient({
        ns: B,
        dev: wgB,
        privateKey: keyB,
        serverPublicKey: resB.json.public_key,
        endpoint: "172.31.2.1:51902",
        address: "10.77.2.2/24",
        network,
      });
      assert.ok(await pingEventually(A, "10.77.1.1"), "A reaches slim through its tunnel");
      assert.ok(await pingEventually(B, "10.77.2.1"), "B reaches slim through its tunnel");

      server = new Deno.Command("ip", {
        args: ["netns", "exec", B, "python3", "-c", TCP_SERVER, "10.77.2.2", "7777"],
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).spawn();
      await new Promise((r) => setTimeout(r, 300));

      // --- no rule: no forwarding between peers
      assert.equal(await ping(A, "10.77.2.2"), false, "A->B must be dropped without a rule");
      assert.equal(await tcp(A, "10.77.2.2", 7777), false, "TCP A->B dropped without a rule");

      // --- rule A<->B: ping and TCP both ways
      const rule = await api.call("POST", "/api/forwarding/rules", {
        from: tagA,
        to: tagB,
        bidirectional: true,
      });
      assert.equal(rule.status, 201, JSON.stringify(rule.json));
      assert.ok(await pingEventually(A, "10.77.2.2"), "A->B with the rule");
      assert.ok(await pingEventually(B, "10.77.1.2"), "B->A with the rule");
      assert.ok(await tcp(A, "10.77.2.2", 7777), "TCP A->B with the rule");
      const peers = (await api.call("GET", "/api/peers")).json as {
        tag: string;
        status: { latest_handshake: string | null; rx_bytes: number; up: boolean };
      }[];
      for (const p of peers) {
        assert.ok(p.status.up, p.tag);
        assert.ok(p.status.latest_handshake !== null, `${p.tag} handshake`);
        assert.ok(p.status.rx_bytes > 0, `${p.tag} rx`);
      }
      // Someone else's table is still there and still counts forwarded packets.
      assert.ok((await otherCounter(S)) > otherBefore, "other table counter counts");
      assert.ok(await ping(A, "172.31.2.2"), "underlay forwarding unaffected");

      // --- deleting the rule stops forwarding; a peer in use cannot be deleted
      assert.equal((await api.call("DELETE", `/api/peers/${tagB}`)).status, 409);
      assert.equal((await api.call("DELETE", `/api/forwarding/rules/${rule.json.id}`)).status, 200);
      assert.equal(await ping(A, "10.77.2.2"), false, "A->B dropped after the rule is deleted");
      const rule2 = await api.call("POST", "/api/forwarding/rules", {
        from: tagA,
        to: tagB,
        bidirectional: true,
      });
      assert.equal(rule2.status, 201);
      assert.ok(await pingEventually(A, "10.77.2.2"));

      // --- kill slim, wipe its kernel state as a reboot would, start it again
      await slim.kill("SIGKILL");
      slim = null;
      for (const tag of [tagA, tagB]) await sh("ip", ["-n", S, "link", "del", `wg-peer-${tag}`]);
      await nsSh(S, "nft", ["delete", "table", "inet", "vpn_slim"]);
      assert.equal(
        await ping(A, "10.77.2.2"),
        false,
        "nothing forwards while slim's state is gone",
      );
      const otherMid = await otherCounter(S);
      slim = new SlimProcess(S, MAIN, `${dir}/slim.json`);
      await api.waitReady();
      const health = await api.call("GET", "/api/health");
      assert.equal(health.json.status, "ok", JSON.stringify(health.json));
      assert.equal(health.json.peers, 2);
      assert.equal(health.json.rules, 1);
      // The clients still hold sessions of the old interfaces; WireGuard
      // re-handshakes ~15 s after traffic goes unanswered (REKEY_TIMEOUT +
      // KEEPALIVE_TIMEOUT), so give both tunnels up to ~30 s.
      const [backA, backB] = await Promise.all([
        pingEventually(A, "10.77.1.1", 15),
        pingEventually(B, "10.77.2.1", 15),
      ]);
      assert.ok(backA && backB, `tunnels back after restart: A=${backA} B=${backB}`);
      assert.ok(await pingEventually(A, "10.77.2.2"), "A->B forwarding is back after restart");
      assert.ok(await tcp(A, "10.77.2.2", 7777), "TCP A->B is back after restart");
      assert.ok((await otherCounter(S)) > otherMid, "other table untouched by the restart");
      const tables = await nsSh(S, "nft", ["list", "tables"]);
      assert.match(tables, /table inet other_t/);
      assert.match(tables, /table inet vpn_slim/);

      // --- disconnect brings the interface down and stops A->B
      const dis = await api.call("POST", `/api/peers/${tagB}/disconnect`);
      assert.equal(dis.status, 200);
      assert.equal(dis.json.status.up, false);
      assert.equal(await ping(A, "10.77.2.2"), false);
      assert.equal((await api.call("POST", `/api/peers/${tagB}/connect`)).status, 200);

      // --- keys never on a command line
      const hits = await watcher.stop();
      assert.deepEqual(hits, [], "private keys seen in /proc/*/cmdline");
    } catch (e) {
      if (slim) console.error(slim.log.slice(-4000));
      throw e;
    } finally {
      await watcher.stop();
      if (slim) await slim.kill("SIGTERM");
      if (server) {
        try {
          server.kill("SIGKILL");
        } catch { /* gone */ }
        await server.status;
      }
      await deleteNamespaces([A, B, S]);
      await Deno.remove(dir, { recursive: true });
    }
  },
});
