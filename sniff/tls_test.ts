import assert from "node:assert/strict";
import { fixtureBytes, manifest, mutate, randomBytes, rng } from "./_test_util.ts";
import { sniffClientHelloMessage, sniffTls } from "./tls.ts";

const enc = new TextEncoder();

function u16(n: number): number[] {
  return [n >> 8, n & 0xff];
}

/** Builds a server_name extension with one entry. */
function sniExt(name: string | Uint8Array, nameType = 0): Uint8Array {
  const n = typeof name === "string" ? enc.encode(name) : name;
  return new Uint8Array([
    0,
    0,
    ...u16(n.length + 5),
    ...u16(n.length + 3),
    nameType,
    ...u16(n.length),
    ...n,
  ]);
}

/** Builds a ClientHello handshake message (header included) with `exts`. */
function helloMessage(exts: Uint8Array[] | null): Uint8Array {
  const extBytes = exts ? exts.flatMap((e) => [...e]) : [];
  const body = [
    0x03,
    0x03,
    ...new Array(32).fill(7), // version, random
    0, // session id
    ...u16(2),
    0x13,
    0x01, // cipher suites
    1,
    0, // compression
    ...(exts ? [...u16(extBytes.length), ...extBytes] : []),
  ];
  return new Uint8Array([
    1,
    body.length >> 16,
    (body.length >> 8) & 0xff,
    body.length & 0xff,
    ...body,
  ]);
}

/** Frames a handshake message as TLS records of at most `frag` bytes each. */
function records(msg: Uint8Array, frag = 16384): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < msg.length; i += frag) {
    const part = msg.subarray(i, i + frag);
    out.push(0x16, 0x03, 0x01, ...u16(part.length), ...part);
  }
  return new Uint8Array(out);
}

const tlsFixtures = manifest("tls");

Deno.test("sniffTls() gives each real client's fixture its expected result", () => {
  assert.ok(tlsFixtures.length >= 10);
  for (const f of tlsFixtures) {
    const r = sniffTls(fixtureBytes("tls", f.file));
    assert.equal(r.status, f.expect.status, f.file);
    if (r.status === "found") {
      assert.equal(r.protocol, "tls");
      assert.equal(r.domain, f.expect.domain ?? undefined, f.file);
    }
  }
});

Deno.test("sniffTls() returns need_more at every truncation of every complete hello", () => {
  for (const f of tlsFixtures) {
    if (f.expect.status !== "found" || f.file.startsWith("oversized")) continue;
    const b = fixtureBytes("tls", f.file);
    for (let n = 0; n < b.length; n++) {
      assert.deepEqual(sniffTls(b.subarray(0, n)), { status: "need_more" }, `${f.file}[0,${n})`);
    }
  }
});

Deno.test("sniffTls() reads a real hello re-framed into records of any size", () => {
  const msg = fixtureBytes("tls", "chromium.bin").subarray(5);
  for (const frag of [1, 2, 3, 4, 5, 100, 512, 1000]) {
    assert.deepEqual(
      sniffTls(records(msg, frag)),
      { status: "found", protocol: "tls", domain: "www.example.org" },
      `fragment ${frag}`,
    );
  }
});

Deno.test("sniffTls() ignores bytes after the ClientHello", () => {
  const b = fixtureBytes("tls", "curl.bin");
  const more = new Uint8Array(b.length + 10);
  more.set(b);
  assert.equal((sniffTls(more) as { domain?: string }).domain, "curl.example.com");
});

Deno.test("sniffTls() rejects other protocols and other record types at once", () => {
  const cases: [string, Uint8Array][] = [
    ["http", enc.encode("GET / HTTP/1.1\r\n")],
    ["ssh", enc.encode("SSH-2.0-OpenSSH_9.2\r\n")],
    ["application data", new Uint8Array([0x17, 0x03, 0x03, 0x00, 0x10])],
    ["SSLv2-style byte", new Uint8Array([0x80])],
    ["bad major version", new Uint8Array([0x16, 0x02])],
    ["bad minor version", new Uint8Array([0x16, 0x03, 0x09])],
    ["server hello", records(new Uint8Array([2, 0, 0, 1, 0]))],
    ["empty record", new Uint8Array([0x16, 0x03, 0x01, 0x00, 0x00])],
    ["record over 2^14", new Uint8Array([0x16, 0x03, 0x01, 0x40, 0x01, 0x01])],
  ];
  for (const [name, b] of cases) assert.deepEqual(sniffTls(b), { status: "not_this" }, name);
});

Deno.test("sniffTls() rejects a non-handshake record in the middle of a fragmented hello", () => {
  const msg = helloMessage([sniExt("a.example")]);
  const two = records(msg, 20);
  const bad = two.slice();
  bad[5 + 20] = 0x15; // second record becomes an alert
  assert.deepEqual(sniffTls(bad), { status: "not_this" });
});

Deno.test("sniffTls() bounds the handshake size", () => {
  const msg = helloMessage([
    sniExt("big.example"),
    new Uint8Array([0xff, 0x01, ...u16(3000), ...new Array(3000).fill(0)]),
  ]);
  assert.equal((sniffTls(records(msg)) as { domain?: string }).domain, "big.example");
  assert.deepEqual(sniffTls(records(msg), { maxHandshakeBytes: 1000 }), {
    status: "found",
    protocol: "tls",
    domain: undefined,
  });
});

Deno.test("sniffTls() yields found without a domain for invalid or missing names", () => {
  const cases: [string, Uint8Array[] | null][] = [
    ["no extensions (TLS 1.2 style)", null],
    ["no SNI", [new Uint8Array([0x00, 0x0a, 0, 4, 0, 2, 0, 0x1d])]],
    ["IP literal", [sniExt("192.0.2.1")]],
    ["name too long", [sniExt(("a".repeat(60) + ".").repeat(5) + "com")]],
    ["control character", [sniExt("a\x01b.example")]],
    ["UTF-8", [sniExt("bücher.example")]],
    ["empty name", [sniExt("")]],
    ["non host_name type only", [sniExt("a.example", 1)]],
  ];
  for (const [name, exts] of cases) {
    assert.deepEqual(
      sniffTls(records(helloMessage(exts))),
      { status: "found", protocol: "tls", domain: undefined },
      name,
    );
  }
});

Deno.test("sniffTls() normalises the name: case, trailing dot", () => {
  assert.equal(
    (sniffTls(records(helloMessage([sniExt("WWW.Example.ORG.")]))) as { domain?: string }).domain,
    "www.example.org",
  );
});

Deno.test("sniffTls() rejects structurally malformed hellos", () => {
  const good = helloMessage([sniExt("a.example")]);
  // server_name list length disagreeing with the extension length
  const badList = good.slice();
  const at = badList.length - "a.example".length - 5;
  badList[at + 1]! += 1;
  assert.deepEqual(sniffTls(records(badList)), { status: "not_this" });
  // session id longer than 32
  const badSid = good.slice();
  badSid[4 + 34] = 33;
  assert.deepEqual(sniffTls(records(badSid)), { status: "not_this" });
  // odd cipher suite length
  const badCs = good.slice();
  badCs[4 + 35 + 1] = 3;
  assert.deepEqual(sniffTls(records(badCs)), { status: "not_this" });
});

Deno.test("sniffClientHelloMessage() reads a bare handshake message and returns need_more on every prefix", () => {
  const msg = fixtureBytes("tls", "chromium.bin").subarray(5);
  assert.deepEqual(sniffClientHelloMessage(msg, "quic"), {
    status: "found",
    protocol: "quic",
    domain: "www.example.org",
  });
  for (let n = 0; n < msg.length; n++) {
    assert.deepEqual(sniffClientHelloMessage(msg.subarray(0, n), "quic"), { status: "need_more" });
  }
  assert.deepEqual(sniffClientHelloMessage(new Uint8Array([2]), "quic"), { status: "not_this" });
});

Deno.test("sniffTls() never throws on random or mutated input and never invents another name", () => {
  const rand = rng(0x5eed);
  const seeds = tlsFixtures.map((f) => fixtureBytes("tls", f.file));
  for (let i = 0; i < 4000; i++) {
    const input = i % 4 === 0 ? randomBytes(rand, 600) : mutate(seeds[i % seeds.length]!, rand);
    const r = sniffTls(input);
    assert.ok(["found", "need_more", "not_this"].includes(r.status));
  }
  // A mutation confined to the random field keeps the name.
  const b = fixtureBytes("tls", "openssl_sni.bin");
  for (let i = 0; i < 200; i++) {
    const m = b.slice();
    m[11 + Math.floor(rand() * 32)] = Math.floor(rand() * 256);
    assert.equal((sniffTls(m) as { domain?: string }).domain, "example.com");
  }
});
