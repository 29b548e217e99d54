import assert from "node:assert/strict";
import { fromHex, toHex } from "./_test_util.ts";
import { deriveClientInitialMaterial, hkdfExpandLabel, QUIC_V1, QUIC_V2 } from "./quic_crypto.ts";

const dcid = fromHex("8394c8f03e515708");

Deno.test("deriveClientInitialMaterial() matches RFC 9001 A.1 for QUIC v1", async () => {
  const m = await deriveClientInitialMaterial(QUIC_V1, dcid);
  assert.equal(
    toHex(m.clientSecret),
    "c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea",
  );
  assert.equal(toHex(m.key), "1f369613dd76d5467730efcbe3b1a22d");
  assert.equal(toHex(m.iv), "fa044b2f42a3fd3b46fb255c");
  assert.equal(toHex(m.hp), "9f50449e04a0e810283a1e9933adedd2");
});

Deno.test("deriveClientInitialMaterial() matches RFC 9369 A.1 for QUIC v2", async () => {
  const m = await deriveClientInitialMaterial(QUIC_V2, dcid);
  assert.equal(
    toHex(m.clientSecret),
    "14ec9d6eb9fd7af83bf5a668bc17a7e283766aade7ecd0891f70f9ff7f4bf47b",
  );
  assert.equal(toHex(m.key), "8b1a0bc121284290a29e0971b5cd045d");
  assert.equal(toHex(m.iv), "91f73e2351d8fa91660e909f");
  assert.equal(toHex(m.hp), "45b95e15235d6f45a6b19cbcb0294ba9");
});

Deno.test("hkdfExpandLabel() refuses lengths beyond one HMAC block", async () => {
  await assert.rejects(() => hkdfExpandLabel(new Uint8Array(32), "x", 33), RangeError);
});
