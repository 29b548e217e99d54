import assert from "node:assert/strict";
import {
  checkRealityKey,
  fillTemplate,
  renderXrayConfig,
  validateEgressSettings,
  validateIngressSettings,
} from "./render.ts";
import { runXrayConfigCommand } from "../cli/xray_config.ts";

const dir = new URL("./examples/", import.meta.url);
const ingress = JSON.parse(Deno.readTextFileSync(new URL("ingress.settings.json", dir)));
const egress = JSON.parse(Deno.readTextFileSync(new URL("egress.settings.json", dir)));

// deno-lint-ignore no-explicit-any
type J = Record<string, any>;

Deno.test("renderXrayConfig(ingress) builds a VLESS + XHTTP + REALITY inbound and freedom outbound", () => {
  const c = renderXrayConfig("ingress", ingress) as J;
  const ib = c.inbounds[0];
  assert.equal(ib.protocol, "vless");
  assert.equal(ib.port, 443);
  assert.deepEqual(ib.settings, {
    clients: [{ id: "51c5b094-8216-4700-bef9-dbaeb602dcdc" }],
    decryption: "none",
  });
  assert.equal(ib.streamSettings.network, "xhttp");
  assert.deepEqual(ib.streamSettings.xhttpSettings, { path: "/xh", mode: "auto" });
  assert.equal(ib.streamSettings.security, "reality");
  assert.deepEqual(ib.streamSettings.realitySettings, {
    show: false,
    dest: "www.example.com:443",
    xver: 0,
    serverNames: ["www.example.com"],
    privateKey: "mzkeYUe8mhN9T9HAEIyFDX3rNl3jcKg93aYZwK9pon0",
    shortIds: ["", "6ba85179e30d4fc2"],
  });
  assert.equal(c.outbounds[0].protocol, "freedom");
  assert.ok(!JSON.stringify(c).includes("{{"));
});

Deno.test("renderXrayConfig(egress) builds the SOCKS inbound on 127.0.0.1:37101 and a VLESS REALITY outbound", () => {
  const c = renderXrayConfig("egress", egress) as J;
  assert.deepEqual(c.inbounds[0], {
    tag: "socks-in",
    listen: "127.0.0.1",
    port: 37101,
    protocol: "socks",
    settings: { auth: "noauth", udp: true, ip: "127.0.0.1" },
  });
  assert.equal(c.policy.levels["0"].handshake, 30);
  const ob = c.outbounds[0];
  assert.deepEqual(ob.settings.vnext[0], {
    address: "203.0.113.10",
    port: 443,
    users: [{ id: "51c5b094-8216-4700-bef9-dbaeb602dcdc", encryption: "none" }],
  });
  assert.deepEqual(ob.streamSettings.realitySettings, {
    serverName: "www.example.com",
    fingerprint: "chrome",
    publicKey: "M_lnUWbCY82CqSMErJZSgE0ZCnN3DYlEyym3mTYUi2U",
    shortId: "6ba85179e30d4fc2",
    spiderX: "/",
  });
});

Deno.test("validateIngressSettings() names the bad field", () => {
  const bad = (patch: J, re: RegExp) =>
    assert.throws(() => validateIngressSettings({ ...ingress, ...patch }), re);
  bad({ uuid: "not-a-uuid" }, /^TypeError: uuid: "not-a-uuid": want a UUID/);
  bad({ port: 70000 }, /port: 70000: want a port/);
  bad({ listen: "example.com" }, /listen: "example.com": not an IP/);
  bad({ extra: 1 }, /extra: unknown field/);
  bad({ reality: { ...ingress.reality, short_ids: ["", "abc"] } }, /reality.short_ids\[1\]: "abc"/);
  bad(
    { reality: { ...ingress.reality, short_ids: ["0123456789abcdef01"] } },
    /reality.short_ids\[0\]/,
  );
  bad(
    { reality: { ...ingress.reality, server_names: ["ok.com", "bad_name"] } },
    /reality.server_names\[1\]/,
  );
  bad(
    { reality: { ...ingress.reality, private_key: "short" } },
    /reality.private_key: "short": want 43/,
  );
  bad(
    { reality: { ...ingress.reality, dest: "www.example.com" } },
    /reality.dest: .*want host:port/,
  );
  bad({ xhttp: { path: "/x", mode: "h3" } }, /xhttp.mode: "h3"/);
  bad({ xhttp: { path: "x" } }, /xhttp.path: "x"/);
  assert.throws(() => validateIngressSettings([]), /want an object/);
});

Deno.test("validateEgressSettings() names the bad field and applies defaults", () => {
  assert.throws(
    () =>
      validateEgressSettings({
        ...egress,
        reality: { ...egress.reality, fingerprint: "netscape" },
      }),
    /reality.fingerprint: "netscape"/,
  );
  assert.throws(
    () => validateEgressSettings({ ...egress, server: "bad host" }),
    /server: "bad host"/,
  );
  assert.throws(() => validateEgressSettings({ ...egress, uuid: undefined }), /uuid: required/);
  const { socks_port: _p, socks_listen: _l, ...rest } = egress;
  const s = validateEgressSettings(rest);
  assert.equal(s.socksPort, 37101);
  assert.equal(s.socksListen, "127.0.0.1");
});

Deno.test("checkRealityKey() rejects a non-canonical 43-character key", () => {
  // Last character must leave the 2 spare bits zero: "1" (0b110101) does not.
  const k = "M_lnUWbCY82CqSMErJZSgE0ZCnN3DYlEyym3mTYUi21";
  assert.throws(() => checkRealityKey(k, "reality.public_key"), /not a canonical 32-byte key/);
});

Deno.test("fillTemplate() refuses unknown and partial placeholders", () => {
  assert.throws(() => fillTemplate({ a: "{{nope}}" }, {}), /no value for \{\{nope\}\}/);
  assert.throws(() => fillTemplate(["x{{a}}"], { a: 1 }), /partial placeholder/);
  assert.deepEqual(fillTemplate({ a: ["{{n}}"] }, { n: 5 }), { a: [5] });
});

Deno.test("runXrayConfigCommand() prints the config, and exits 1/2 on bad settings/flags", async () => {
  const out: string[] = [], err: string[] = [];
  const io = {
    readTextFile: (p: string) =>
      p === "good.json" ? Promise.resolve(JSON.stringify(egress)) : Promise.resolve('{"uuid":1}'),
    stdout: (t: string) => out.push(t),
    stderr: (t: string) => err.push(t),
  };
  assert.equal(await runXrayConfigCommand(["--side", "egress", "--settings", "good.json"], io), 0);
  assert.equal(JSON.parse(out[0]!).inbounds[0].port, 37101);
  assert.equal(await runXrayConfigCommand(["--side", "ingress", "--settings", "bad.json"], io), 1);
  assert.match(err[0]!, /bad.json: reality: want an object/);
  assert.equal(await runXrayConfigCommand(["--side", "middle", "--settings", "x"], io), 2);
  assert.match(err[1]!, /--side: "middle"/);
  assert.equal(await runXrayConfigCommand(["--help"], io), 0);
  assert.match(out[1]!, /Usage: router xray-config/);
});
