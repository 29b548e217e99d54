import assert from "node:assert/strict";
import { networkOf, normalizeCidr, renderWgConf } from "./kernel_linux.ts";
import {
  parseCidr,
  parseHostPort,
  parseKey,
  parsePortSpec,
  parseTag,
  peerInterface,
} from "./validate.ts";

Deno.test("parseTag() keeps wg-peer-{tag} within 15 characters", () => {
  assert.equal(peerInterface(parseTag("tag", "abc-123")).length, 15);
  for (const bad of ["abcdefgh", "", "-a", "a-", "A", "a_b", "a.b", 7]) {
    assert.throws(() => parseTag("tag", bad), /^ValidationError: tag: /, String(bad));
  }
});

Deno.test("parseKey() accepts 32-byte base64 keys only", () => {
  parseKey("k", "fop46ZtOc1AWheBRdBg4ppivSJ7yWStTNNFU1I7grhQ=");
  for (const bad of ["", "abc", "fop46ZtOc1AWheBRdBg4ppivSJ7yWStTNNFU1I7grhR=", "x".repeat(44)]) {
    assert.throws(() => parseKey("k", bad), /^ValidationError: k: /);
  }
});

Deno.test("parseCidr() checks address and prefix, adding a host prefix when missing", () => {
  assert.equal(parseCidr("c", "10.0.0.1/24"), "10.0.0.1/24");
  assert.equal(parseCidr("c", "fd00::1"), "fd00::1/128");
  assert.throws(() => parseCidr("c", "10.0.0.0/33"), /c: "10.0.0.0\/33": prefix out of range/);
  assert.throws(() => parseCidr("c", "300.0.0.1/8"), /not an IP address/);
  assert.throws(() => parseCidr("c", "10.0.0.1/"), /prefix out of range/);
});

Deno.test("parseHostPort() takes IPv4, [IPv6] and names with a port", () => {
  for (const ok of ["192.0.2.1:51820", "[2001:db8::1]:1", "vpn.example.com:443"]) {
    assert.equal(parseHostPort("e", ok), ok);
  }
  for (const bad of ["192.0.2.1", "2001:db8::1:80", "[x]:1", "a b:1", "host:0", "host:65536"]) {
    assert.throws(() => parseHostPort("e", bad), /^ValidationError: e: /, bad);
  }
});

Deno.test("parsePortSpec() takes a port or an ordered range", () => {
  assert.equal(parsePortSpec("p", 443), 443);
  assert.equal(parsePortSpec("p", "80"), 80);
  assert.deepEqual(parsePortSpec("p", "1000-2000"), { from: 1000, to: 2000 });
  for (const bad of [0, 65536, "2000-1000", "a", 1.5]) {
    assert.throws(() => parsePortSpec("p", bad), /^ValidationError: p: /);
  }
});

Deno.test("networkOf() clears host bits; normalizeCidr() compresses IPv6", () => {
  assert.equal(networkOf("10.1.2.3/20"), "10.1.0.0/20");
  assert.equal(networkOf("10.1.2.3/32"), "10.1.2.3/32");
  assert.equal(networkOf("fd00::1:2/112"), "fd00::1:0/112");
  assert.equal(normalizeCidr("fd00:0:0::1/64"), "fd00::1/64");
});

Deno.test("renderWgConf() renders every field the peer has", () => {
  const text = renderWgConf({
    tag: "a",
    privateKey: "PRIV",
    publicKey: "PUB",
    peerPublicKey: "REMOTE",
    preSharedKey: "PSK",
    listenPort: 51820,
    address: ["10.0.0.1/24"],
    allowedIps: ["10.0.0.2/32", "fd00::2/128"],
    endpoint: "192.0.2.1:51820",
    persistentKeepalive: 25,
    mtu: 1420,
    enabled: true,
    createdAt: "",
  });
  assert.equal(
    text,
    "[Interface]\nPrivateKey = PRIV\nListenPort = 51820\n\n[Peer]\nPublicKey = REMOTE\n" +
      "PresharedKey = PSK\nAllowedIPs = 10.0.0.2/32, fd00::2/128\nEndpoint = 192.0.2.1:51820\n" +
      "PersistentKeepalive = 25\n",
  );
});
