import assert from "node:assert/strict";
import { createLogger } from "../core/log.ts";
import { FakeKernel } from "./kernel_fake.ts";
import { parsePeerInput } from "./model.ts";
import { SlimService } from "./service.ts";
import { Store } from "./store.ts";

const PUB = "fop46ZtOc1AWheBRdBg4ppivSJ7yWStTNNFU1I7grhQ=";

function service(store: Store, kernel: FakeKernel) {
  return new SlimService({
    store,
    kernel,
    logger: createLogger({ level: "error", write: () => {} }),
    table: "vpn_slim",
    peersOnly: true,
    defaultMtu: 1420,
    defaultKeepalive: null,
    listenPortRange: [51820, 51900],
    maxPeers: 10,
    maxRules: 10,
    pruneUnknownInterfaces: true,
  });
}

function peer(tag: string, n: number) {
  return parsePeerInput({
    tag,
    peer_public_key: PUB,
    address: [`10.200.${n}.1/24`],
    allowed_ips: [`10.200.${n}.2/32`],
  });
}

async function withStateFile(fn: (path: string) => Promise<void>) {
  const dir = await Deno.makeTempDir();
  try {
    await fn(`${dir}/state/slim.db`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("SlimService.reconcile() rebuilds interfaces and the table from a reopened store", async () => {
  await withStateFile(async (path) => {
    const s1 = new Store(path);
    const k1 = new FakeKernel();
    const svc1 = service(s1, k1);
    await svc1.addPeer(peer("a", 1));
    await svc1.addPeer(peer("b", 2));
    await svc1.setConnected("b", false);
    await svc1.addRule({
      from: "a",
      to: "b",
      bidirectional: true,
      protocol: null,
      ports: [],
      comment: null,
    });
    s1.close();
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);

    // A fresh kernel (after a reboot) with a stray interface of ours.
    const k2 = new FakeKernel();
    k2.interfaces.set("wg-peer-old", structuredClone(k1.interfaces.get("wg-peer-a")!));
    const s2 = new Store(path);
    const report = await service(s2, k2).reconcile();
    assert.deepEqual(report.peersApplied, ["a", "b"]);
    assert.deepEqual(report.pruned, ["wg-peer-old"]);
    assert.deepEqual(report.rulesApplied, [1]);
    assert.deepEqual(report.problems, []);
    assert.deepEqual([...k2.interfaces.keys()].sort(), ["wg-peer-a", "wg-peer-b"]);
    assert.equal(k2.interfaces.get("wg-peer-b")?.live.up, false);
    assert.equal(
      k2.interfaces.get("wg-peer-a")?.peer.privateKey,
      k1.interfaces.get("wg-peer-a")?.peer.privateKey,
    );
    assert.equal(k2.ruleset, k1.ruleset);
    s2.close();
  });
});

Deno.test("SlimService.reconcile() reports a peer and a rule that fail, applying the rest", async () => {
  const store = new Store(":memory:");
  const k1 = new FakeKernel();
  const svc = service(store, k1);
  await svc.addPeer(peer("a", 1));
  await svc.addPeer(peer("b", 2));
  await svc.addPeer(peer("c", 3));
  const rule = { bidirectional: false, protocol: null, ports: [], comment: null };
  await svc.addRule({ ...rule, from: "a", to: "b" });
  await svc.addRule({ ...rule, from: "a", to: "c" });

  const k2 = new FakeKernel();
  k2.failPeers.add("b");
  k2.failRuleset = (s) => s.includes(`oifname "wg-peer-c"`);
  const svc2 = service(store, k2);
  const report = await svc2.reconcile();
  assert.deepEqual(report.peersApplied, ["a", "c"]);
  assert.deepEqual(report.rulesApplied, [1]);
  assert.deepEqual(report.problems.map((p) => `${p.kind}:${p.id}`), ["peer:b", "rule:2"]);
  assert.match(k2.ruleset!, /oifname "wg-peer-b"/);
  assert.doesNotMatch(k2.ruleset!, /oifname "wg-peer-c"/);
  const health = svc2.health();
  assert.equal(health.status, "degraded");
  const peers = await svc2.listPeers();
  assert.match(peers.find((p) => p.tag === "b")!.status.error!, /cannot create wg-peer-b/);
  assert.match(svc2.listRules().find((r) => r.id === 2)!.status.error!, /nft rejected/);
  // Once the peer applies again its problem is gone.
  k2.failPeers.clear();
  await svc2.setConnected("b", true);
  assert.deepEqual(svc2.health().problems.map((p) => p.id), ["2"]);
});

Deno.test("SlimService serialises concurrent changes (no duplicate listen ports)", async () => {
  const store = new Store(":memory:");
  const svc = service(store, new FakeKernel());
  const made = await Promise.all(["a", "b", "c", "d"].map((t, i) => svc.addPeer(peer(t, i + 1))));
  assert.deepEqual(made.map((p) => p.listen_port).sort(), [51820, 51821, 51822, 51823]);
});
