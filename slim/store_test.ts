import assert from "node:assert/strict";
import type { PeerRecord } from "./model.ts";
import { Store } from "./store.ts";

const peer = (tag: string, port: number): PeerRecord => ({
  tag,
  privateKey: "priv",
  publicKey: "pub",
  peerPublicKey: "peer",
  preSharedKey: null,
  listenPort: port,
  address: ["10.0.0.1/24"],
  allowedIps: ["10.0.0.2/32"],
  endpoint: null,
  persistentKeepalive: 25,
  mtu: 1420,
  enabled: true,
  createdAt: "2026-01-01T00:00:00.000Z",
});
const rule = { bidirectional: false, protocol: null, ports: [], comment: null };

Deno.test("Store keeps peers and rules across reopen, file mode 0600", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/slim.db`;
    const s = new Store(path);
    s.transaction(() => s.insertPeer(peer("a", 1)));
    s.transaction(() => s.insertPeer(peer("b", 2)));
    s.transaction(() =>
      s.insertRule({
        ...rule,
        from: "a",
        to: "b",
        protocol: "tcp",
        ports: [80, { from: 1, to: 9 }],
      }, "t")
    );
    s.close();
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
    const s2 = new Store(path);
    assert.deepEqual(s2.listPeers(), [peer("a", 1), peer("b", 2)]);
    assert.deepEqual(s2.listRules()[0]?.ports, [80, { from: 1, to: 9 }]);
    s2.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Store.transaction() rolls back everything when one statement fails", () => {
  const s = new Store(":memory:");
  assert.throws(() =>
    s.transaction(() => {
      s.insertPeer(peer("a", 1));
      s.insertPeer(peer("b", 1)); // same listen port: UNIQUE fails
    })
  );
  assert.deepEqual(s.listPeers(), []);
});

Deno.test("Store refuses a rule to a missing peer and deleting a peer a rule uses", () => {
  const s = new Store(":memory:");
  s.insertPeer(peer("a", 1));
  assert.throws(() => s.insertRule({ ...rule, from: "a", to: "zz" }, "t"), /FOREIGN KEY/);
  s.insertPeer(peer("b", 2));
  s.insertRule({ ...rule, from: "a", to: "b" }, "t");
  assert.throws(() => s.deletePeer("b"), /FOREIGN KEY/);
  assert.equal(s.rulesOfPeer("b").length, 1);
});
