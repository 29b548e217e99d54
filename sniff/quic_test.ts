import assert from "node:assert/strict";
import {
  fixtureBytes,
  fromHex,
  manifest,
  mutate,
  quicDatagrams,
  randomBytes,
  rng,
} from "./_test_util.ts";
import { QuicSniffer, readVarint } from "./quic.ts";
import {
  deriveClientInitialMaterial,
  headerMask,
  QUIC_V1,
  QUIC_V2,
  type QuicVersionParams,
} from "./quic_crypto.ts";
import type { SniffResult } from "./result.ts";

const rfc9001 = fromHex(
  Deno.readTextFileSync(
    new URL("../tests/fixtures/quic/rfc9001_client_initial.hex", import.meta.url),
  ),
);
const rfc9369 = fromHex(
  Deno.readTextFileSync(
    new URL("../tests/fixtures/quic/rfc9369_client_initial.hex", import.meta.url),
  ),
);
const chromium = quicDatagrams("chromium.hex");
const gtls = quicDatagrams("gtlsclient_v1.hex");

async function sniffAll(datagrams: Uint8Array[], s = new QuicSniffer()): Promise<SniffResult> {
  let r: SniffResult = { status: "need_more" };
  for (const d of datagrams) {
    r = await s.push(d);
    if (r.status !== "need_more") break;
  }
  return r;
}

const exampleOrg = { status: "found", protocol: "quic", domain: "www.example.org" };

Deno.test("QuicSniffer decrypts the RFC 9001 A.2 client Initial (v1)", async () => {
  assert.deepEqual(await new QuicSniffer().push(rfc9001), {
    status: "found",
    protocol: "quic",
    domain: "example.com",
  });
});

Deno.test("QuicSniffer decrypts the RFC 9369 A.2 client Initial (v2)", async () => {
  assert.deepEqual(await new QuicSniffer().push(rfc9369), {
    status: "found",
    protocol: "quic",
    domain: "example.com",
  });
});

Deno.test("QuicSniffer gives each real client's capture its expected result", async () => {
  const entries = manifest("quic");
  assert.ok(entries.length >= 4);
  for (const f of entries) {
    const r = await sniffAll(quicDatagrams(f.file));
    assert.equal(r.status, f.expect.status, f.file);
    if (r.status === "found") assert.equal(r.domain, f.expect.domain ?? undefined, f.file);
  }
});

Deno.test("QuicSniffer needs Chromium's second Initial to complete the post-quantum ClientHello", async () => {
  const s = new QuicSniffer();
  assert.deepEqual(await s.push(chromium[0]!), { status: "need_more" });
  assert.deepEqual(await s.push(chromium[1]!), exampleOrg);
  assert.deepEqual(s.result, exampleOrg);
  assert.deepEqual(await s.push(new Uint8Array([1, 2, 3])), exampleOrg); // final stays final
});

Deno.test("QuicSniffer reassembles CRYPTO by offset when datagrams arrive out of order", async () => {
  const s = new QuicSniffer();
  assert.deepEqual(await s.push(chromium[1]!), { status: "need_more" });
  assert.deepEqual(await s.push(chromium[0]!), exampleOrg);
});

Deno.test("QuicSniffer reads coalesced Initials and skips other long-header packets", async () => {
  const [d0, d1] = [chromium[0]!, chromium[1]!];
  const dcid = d0.subarray(6, 6 + d0[5]!);
  // A Handshake packet (v1 type 2) with 20 opaque bytes, placed first.
  const hs = new Uint8Array([
    0xe0,
    0,
    0,
    0,
    1,
    dcid.length,
    ...dcid,
    0,
    20,
    ...new Array(20).fill(9),
  ]);
  const dgram = new Uint8Array(hs.length + d0.length + d1.length + 8); // + trailing zero padding
  dgram.set(hs);
  dgram.set(d0, hs.length);
  dgram.set(d1, hs.length + d0.length);
  assert.deepEqual(await new QuicSniffer().push(dgram), exampleOrg);
});

Deno.test("QuicSniffer processes pushes in order even when not awaited", async () => {
  const s = new QuicSniffer();
  const [a, b] = [s.push(chromium[0]!), s.push(chromium[1]!)];
  assert.deepEqual(await a, { status: "need_more" });
  assert.deepEqual(await b, exampleOrg);
});

Deno.test("QuicSniffer copies the datagram, so the caller may reuse its buffer", async () => {
  const s = new QuicSniffer();
  const buf = chromium[0]!.slice();
  const p = s.push(buf);
  buf.fill(0);
  assert.deepEqual(await p, { status: "need_more" });
  assert.deepEqual(await s.push(chromium[1]!), exampleOrg);
});

Deno.test("QuicSniffer follows only the first connection ID", async () => {
  const s = new QuicSniffer();
  assert.equal((await s.push(chromium[0]!)).status, "need_more");
  assert.equal((await s.push(gtls[0]!)).status, "need_more"); // other DCID: ignored
  assert.deepEqual(await s.push(chromium[1]!), exampleOrg);
});

Deno.test("QuicSniffer rejects non-QUIC first datagrams", async () => {
  const dns = fromHex("12340100000100000000000003777777076578616d706c65036f72670000010001");
  const cases: [string, Uint8Array][] = [
    ["DNS query", dns],
    ["empty", new Uint8Array()],
    ["short header", new Uint8Array(1200).fill(0x40)],
    ["unknown version", Uint8Array.from(rfc9001, (b, i) => (i === 4 ? 0x55 : b))],
    ["version negotiation", new Uint8Array([0x80, 0, 0, 0, 0, 0, 0, 0, 0, 1])],
    ["wrong key (DCID flipped)", Uint8Array.from(rfc9001, (b, i) => (i === 6 ? b ^ 1 : b))],
  ];
  for (const [name, d] of cases) {
    assert.deepEqual(await new QuicSniffer().push(d), { status: "not_this" }, name);
  }
});

Deno.test("QuicSniffer bounds datagrams, CRYPTO bytes and handshake size", async () => {
  // The same first half over and over never completes: found without a name at the bound.
  const s = new QuicSniffer({ maxDatagrams: 3 });
  assert.equal((await s.push(chromium[0]!)).status, "need_more");
  assert.equal((await s.push(chromium[0]!)).status, "need_more");
  assert.deepEqual(await s.push(chromium[0]!), {
    status: "found",
    protocol: "quic",
    domain: undefined,
  });
  // Nothing ever decrypted: not_this at the bound.
  const t = new QuicSniffer({ maxDatagrams: 2 });
  const zeroRtt = new Uint8Array([0xd0, 0, 0, 0, 1, 0, 0, 4, 1, 2, 3, 4]);
  assert.equal((await t.push(zeroRtt)).status, "need_more");
  assert.deepEqual(await t.push(zeroRtt), { status: "not_this" });

  const noName = { status: "found", protocol: "quic", domain: undefined };
  assert.deepEqual(await sniffAll(chromium, new QuicSniffer({ maxCryptoBytes: 600 })), noName);
  assert.deepEqual(await sniffAll(chromium, new QuicSniffer({ maxHandshakeBytes: 500 })), noName);
});

Deno.test("QuicSniffer never rejects on truncated datagrams and never reports another name", async () => {
  for (const d of [rfc9001, chromium[0]!]) {
    for (let n = 0; n < d.length; n++) {
      const r = await new QuicSniffer().push(d.subarray(0, n));
      assert.ok(r.status === "not_this" || r.status === "need_more", `${n}: ${r.status}`);
    }
  }
});

Deno.test("QuicSniffer never rejects on random or mutated datagrams", async () => {
  const rand = rng(0x9001);
  const seeds = [rfc9001, rfc9369, ...chromium.slice(0, 2), ...gtls];
  for (let i = 0; i < 300; i++) {
    const s = new QuicSniffer({ maxDatagrams: 3 });
    const input = i % 5 === 0 ? randomBytes(rand, 1500) : mutate(seeds[i % seeds.length]!, rand);
    const r = await s.push(input);
    assert.ok(["found", "need_more", "not_this"].includes(r.status));
    if (r.status === "found" && r.domain !== undefined) {
      assert.ok(["example.com", "www.example.org", "localhost"].includes(r.domain), r.domain);
    }
  }
});

Deno.test("readVarint() decodes 1-, 2-, 4- and 8-byte integers and stops at the end", () => {
  assert.deepEqual(readVarint(fromHex("25"), 0), [37, 1]);
  assert.deepEqual(readVarint(fromHex("7bbd"), 0), [15293, 2]);
  assert.deepEqual(readVarint(fromHex("9d7f3e7d"), 0), [494878333, 4]);
  assert.deepEqual(readVarint(fromHex("c2197c5eff14e88c"), 0), [151288809941952652, 8]);
  assert.equal(readVarint(fromHex("7b"), 0), null);
  assert.equal(readVarint(new Uint8Array(), 0), null);
});

/** Encodes a QUIC varint. */
function varint(n: number): number[] {
  if (n < 0x40) return [n];
  if (n < 0x4000) return [0x40 | (n >> 8), n & 0xff];
  return [0x80 | (n >>> 24), (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
}

/** Builds a protected client Initial carrying `payload` (frames), as a client would. */
async function protectInitial(
  params: QuicVersionParams,
  dcid: Uint8Array,
  pn: number,
  payload: Uint8Array,
): Promise<Uint8Array> {
  const m = await deriveClientInitialMaterial(params, dcid);
  const len = 4 + payload.length + 16;
  const header = new Uint8Array([
    0xc0 | (params.initialType << 4) | 0x03,
    ...[24, 16, 8, 0].map((s) => (params.version >>> s) & 0xff),
    dcid.length,
    ...dcid,
    0, // SCID length
    0, // token length
    0x40 | (len >> 8),
    len & 0xff,
    ...[24, 16, 8, 0].map((s) => (pn >>> s) & 0xff),
  ]);
  const nonce = m.iv.slice();
  for (let i = 0; i < 4; i++) nonce[11 - i]! ^= (pn >>> (8 * i)) & 0xff;
  const key = await crypto.subtle.importKey("raw", m.key.slice(), "AES-GCM", false, ["encrypt"]);
  const ct = new Uint8Array(
    await crypto.subtle.encrypt(
      { name: "AES-GCM", iv: nonce, additionalData: header },
      key,
      payload.slice(),
    ),
  );
  const hp = await crypto.subtle.importKey("raw", m.hp.slice(), "AES-CBC", false, ["encrypt"]);
  const mask = await headerMask(hp, ct.subarray(0, 16)); // sample starts 4 bytes after the PN offset
  header[0]! ^= mask[0]! & 0x0f;
  for (let i = 0; i < 4; i++) header[header.length - 4 + i]! ^= mask[1 + i]!;
  const out = new Uint8Array(header.length + ct.length);
  out.set(header);
  out.set(ct, header.length);
  return out;
}

const hello = fixtureBytes("tls", "curl.bin").subarray(5); // a real ClientHello message
const cryptoFrame = (off: number, data: Uint8Array) => [
  0x06,
  ...varint(off),
  ...varint(data.length),
  ...data,
];
const testDcid = fromHex("0011223344556677");
const curlName = { status: "found", protocol: "quic", domain: "curl.example.com" };

Deno.test("QuicSniffer reassembles split, overlapping, out-of-order CRYPTO frames among other frames", async () => {
  for (const params of [QUIC_V1, QUIC_V2]) {
    const frames = new Uint8Array([
      0x01, // PING
      ...cryptoFrame(300, hello.subarray(300)),
      0x02,
      ...varint(0),
      ...varint(10),
      1,
      ...varint(0),
      ...varint(2),
      ...varint(1), // ACK, 1 range
      0x03,
      0,
      0,
      0,
      0,
      1,
      2,
      3, // ACK_ECN
      ...cryptoFrame(100, hello.subarray(100, 320)), // overlaps the next one
      0x1c,
      ...varint(0),
      ...varint(0),
      3,
      0x61,
      0x62,
      0x63, // CONNECTION_CLOSE "abc"
      ...cryptoFrame(0, hello.subarray(0, 150)),
      ...new Array(50).fill(0), // PADDING
    ]);
    const d = await protectInitial(params, testDcid, 0, frames);
    assert.deepEqual(await new QuicSniffer().push(d), curlName, `version ${params.version}`);
  }
});

Deno.test("QuicSniffer stops reading a packet at a frame not allowed in Initial packets", async () => {
  const stream = [0x08, 0x00, 0x01, 0x41]; // STREAM
  const after = await protectInitial(
    QUIC_V1,
    testDcid,
    0,
    new Uint8Array([...cryptoFrame(0, hello), ...stream]),
  );
  assert.deepEqual(await new QuicSniffer().push(after), curlName);
  const before = await protectInitial(
    QUIC_V1,
    testDcid,
    0,
    new Uint8Array([...stream, ...cryptoFrame(0, hello)]),
  );
  assert.deepEqual(await new QuicSniffer({ maxDatagrams: 1 }).push(before), {
    status: "found",
    protocol: "quic",
    domain: undefined,
  });
});

Deno.test("QuicSniffer rejects a first Initial whose DCID is shorter than 8 bytes", async () => {
  const d = await protectInitial(
    QUIC_V1,
    fromHex("01020304"),
    0,
    new Uint8Array(cryptoFrame(0, hello)),
  );
  assert.deepEqual(await new QuicSniffer().push(d), { status: "not_this" });
});

Deno.test("QuicSniffer ends with no name when CRYPTO data passes the bound", async () => {
  const far = await protectInitial(QUIC_V1, testDcid, 0, new Uint8Array(cryptoFrame(70000, hello)));
  assert.deepEqual(await new QuicSniffer().push(far), {
    status: "found",
    protocol: "quic",
    domain: undefined,
  });
});

Deno.test("QuicSniffer never rejects on crafted, validly encrypted garbage frames", async () => {
  const rand = rng(0xc0ffee);
  const good = new Uint8Array([
    ...cryptoFrame(0, hello.subarray(0, 200)),
    0x01,
    ...cryptoFrame(200, hello.subarray(200)),
  ]);
  for (let i = 0; i < 150; i++) {
    const payload = i % 3 === 0 ? randomBytes(rand, 300) : mutate(good, rand);
    const d = await protectInitial(
      QUIC_V1,
      testDcid,
      i,
      payload.length < 4 ? new Uint8Array(4) : payload,
    );
    const r = await new QuicSniffer({ maxDatagrams: 1 }).push(d);
    assert.ok(r.status === "found", `decrypted packets are QUIC: ${r.status}`);
    // A mutation may hit the name itself; whatever comes out is a valid name.
    if (r.domain !== undefined) assert.match(r.domain, /^[a-z0-9_.-]{1,253}$/);
  }
});
