import assert from "node:assert/strict";
import { parseWgDump } from "./wg_dump.ts";

const PRIV = "cIRiHggAAYEAznYoPwYAUTTbdcarkc7YOcNq6DDGzWU=";

Deno.test("parseWgDump() reads peers and never keeps the private key", () => {
  const text = `${PRIV}\tQ4gVj8CPCjAh6zOxs5C59/bLRorAfYvl65h6i7Vu0wU=\t51999\toff\n` +
    `iZvZo4a1XG9obYr3bnEmjoDRotskw0OLIjrHnqOP6Uo=\t(none)\t10.0.0.2:51820\t10.9.9.2/32,fd00::2/128\t1700000000\t1234\t5678\t25\n`;
  const d = parseWgDump(text);
  assert.equal(d.listenPort, 51999);
  assert.deepEqual(d.peers, [{
    publicKey: "iZvZo4a1XG9obYr3bnEmjoDRotskw0OLIjrHnqOP6Uo=",
    endpoint: "10.0.0.2:51820",
    allowedIps: ["10.9.9.2/32", "fd00::2/128"],
    latestHandshake: 1700000000,
    rxBytes: 1234,
    txBytes: 5678,
    persistentKeepalive: 25,
  }]);
  assert.ok(!JSON.stringify(d).includes(PRIV));
});

Deno.test("parseWgDump() maps (none), 0 and off to null", () => {
  const d = parseWgDump(
    `${PRIV}\tpub\t1\toff\nk\t(none)\t(none)\t(none)\t0\t0\t0\toff\n`,
  );
  assert.deepEqual(d.peers[0], {
    publicKey: "k",
    endpoint: null,
    allowedIps: [],
    latestHandshake: null,
    rxBytes: 0,
    txBytes: 0,
    persistentKeepalive: null,
  });
});

Deno.test("parseWgDump() rejects a truncated peer line", () => {
  assert.throws(() => parseWgDump(`${PRIV}\tpub\t1\toff\nk\t(none)\n`), /peer line 1 has 2 fields/);
  assert.throws(() => parseWgDump(""), /no interface line/);
});
