import assert from "node:assert/strict";
import { loadSlimConfig, parseSlimConfig, readToken } from "./config.ts";

Deno.test("parseSlimConfig() fills defaults for an empty object", () => {
  const c = parseSlimConfig({}, "/etc/slim");
  assert.equal(c.listen, "127.0.0.1");
  assert.equal(c.listenPort, 8001);
  assert.equal(c.nftTable, "vpn_slim");
  assert.equal(c.tokenFile, "/etc/vpn-router/slim.token");
  assert.equal(c.wireguard.mode, "auto");
  assert.deepEqual(c.wireguard.listenPortRange, [51820, 52819]);
  assert.equal(c.wireguard.persistentKeepalive, 25);
});

Deno.test("parseSlimConfig() resolves relative paths against the config directory", () => {
  const c = parseSlimConfig({ token_file: "token", state_path: "/var/x.db" }, "/etc/slim");
  assert.equal(c.tokenFile, "/etc/slim/token");
  assert.equal(c.statePath, "/var/x.db");
  assert.equal(
    parseSlimConfig({ wireguard: { persistent_keepalive_interval: 0 } }, "/").wireguard
      .persistentKeepalive,
    null,
  );
});

Deno.test("parseSlimConfig() rejects bad values naming the field", () => {
  const cases: [unknown, RegExp][] = [
    [{ listen: "localhost" }, /^listen: "localhost": not an IP address/],
    [{ listen_port: 0 }, /^listen_port: 0 is out of range/],
    [{ nft_table: "bad-name" }, /^nft_table: /],
    [{ extra: 1 }, /^extra: unknown field/],
    [{ wireguard: { mtu: 99999 } }, /^wireguard\.mtu: 99999 is out of range 1280\.\.9000/],
    [{ wireguard: { mode: "fast" } }, /^wireguard\.mode: "fast"/],
    [{ wireguard: { listen_port_range: [9, 1] } }, /^wireguard\.listen_port_range: /],
    [{ wireguard: { colour: 1 } }, /^wireguard\.colour: unknown field/],
    [{ log_level: "loud" }, /^log_level: /],
    [{ max_body_bytes: 10 }, /^max_body_bytes: /],
    [[], /^config: expected an object/],
  ];
  for (const [raw, re] of cases) {
    assert.throws(() => parseSlimConfig(raw, "/"), (e: Error) => re.test(e.message), String(re));
  }
});

Deno.test("loadSlimConfig() names the file on a JSON syntax error", async () => {
  const f = await Deno.makeTempFile({ suffix: ".json" });
  try {
    await Deno.writeTextFile(f, "{ nope");
    await assert.rejects(loadSlimConfig(f), (e: Error) => e.message.includes(f));
    await Deno.writeTextFile(f, JSON.stringify({ listen_port: "x" }));
    await assert.rejects(loadSlimConfig(f), /^ValidationError: listen_port: expected an integer/);
  } finally {
    await Deno.remove(f);
  }
});

Deno.test("readToken() takes the first line and rejects short tokens; warns on loose mode", async () => {
  const f = await Deno.makeTempFile();
  try {
    await Deno.writeTextFile(f, "0123456789abcdefXYZ\nsecond line\n");
    await Deno.chmod(f, 0o600);
    const warnings: string[] = [];
    assert.equal(await readToken(f, (m) => warnings.push(m)), "0123456789abcdefXYZ");
    assert.equal(warnings.length, 0);
    await Deno.chmod(f, 0o644);
    await readToken(f, (m) => warnings.push(m));
    assert.match(warnings[0]!, /readable by group\/others/);
    await Deno.writeTextFile(f, "short\n");
    await assert.rejects(readToken(f, () => {}), /^ValidationError: token_file: /);
  } finally {
    await Deno.remove(f);
  }
});
