import assert from "node:assert/strict";
import {
  decodeAddressPort,
  encodeAddress,
  encodeGreeting,
  encodeRequest,
  encodeUserPass,
  readReply,
  replyMessage,
  Socks5Error,
  socks5Greet,
  withDeadline,
} from "./socks5_wire.ts";
import { FakeStream } from "./_fake_stream.ts";

const b = (...xs: number[]) => new Uint8Array(xs);

Deno.test("encodeGreeting() lists the offered methods", () => {
  assert.deepEqual(encodeGreeting([0]), b(5, 1, 0));
  assert.deepEqual(encodeGreeting([0, 2]), b(5, 2, 0, 2));
  assert.throws(() => encodeGreeting([]), RangeError);
});

Deno.test("encodeUserPass() encodes RFC 1929 and rejects empty or >255-byte fields", () => {
  assert.deepEqual(encodeUserPass("ab", "c"), b(1, 2, 97, 98, 1, 99));
  assert.throws(() => encodeUserPass("", "x"), /username: 0 bytes/);
  assert.throws(() => encodeUserPass("u", "p".repeat(256)), /password: 256 bytes/);
  // 128 two-byte characters = 256 bytes: the limit is in bytes, not characters.
  assert.throws(() => encodeUserPass("é".repeat(128), "p"), /username: 256 bytes/);
  assert.equal(encodeUserPass("u".repeat(255), "p".repeat(255)).length, 3 + 510);
});

Deno.test("encodeRequest() encodes IPv4, IPv6 and domain targets", () => {
  assert.deepEqual(
    encodeRequest(1, { address: { kind: "ip", addr: b(10, 0, 0, 1) }, port: 443 }),
    b(5, 1, 0, 1, 10, 0, 0, 1, 1, 187),
  );
  const v6 = new Uint8Array(16);
  v6[15] = 1;
  const r6 = encodeRequest(1, { address: { kind: "ip", addr: v6 }, port: 80 });
  assert.equal(r6.length, 4 + 16 + 2);
  assert.equal(r6[3], 4);
  assert.deepEqual(r6.subarray(20), b(0, 80));
  assert.deepEqual(
    encodeRequest(1, { address: { kind: "domain", host: "a.io" }, port: 80 }),
    b(5, 1, 0, 3, 4, 97, 46, 105, 111, 0, 80),
  );
  assert.throws(() => encodeAddress({ kind: "domain", host: "x".repeat(256) }), /256 bytes/);
  assert.throws(() => encodeAddress({ kind: "ip", addr: b(1, 2, 3) }), RangeError);
  assert.throws(() =>
    encodeRequest(1, { address: { kind: "ip", addr: b(1, 2, 3, 4) }, port: 70000 })
  );
});

Deno.test("decodeAddressPort() round-trips and says when more bytes are needed", () => {
  const enc = encodeRequest(1, { address: { kind: "domain", host: "example.com" }, port: 8080 });
  const d = decodeAddressPort(enc, 3);
  assert.ok(d);
  assert.deepEqual(d.target, { address: { kind: "domain", host: "example.com" }, port: 8080 });
  assert.equal(d.end, enc.length);
  assert.equal(decodeAddressPort(enc.subarray(0, enc.length - 1), 3), null);
  assert.throws(() => decodeAddressPort(b(9, 1, 2), 0), /unknown ATYP 9/);
});

Deno.test("readReply() reads exactly the reply and leaves following bytes unread", async () => {
  const s = new FakeStream([], b(5, 0, 0, 1, 127, 0, 0, 1, 0x1f, 0x90, 0xaa, 0xbb));
  const bound = await readReply(s, "srv");
  assert.deepEqual(bound, { address: { kind: "ip", addr: b(127, 0, 0, 1) }, port: 8080 });
  assert.deepEqual(s.unread(), b(0xaa, 0xbb));
});

Deno.test("readReply() handles a domain BND.ADDR without over-reading", async () => {
  const s = new FakeStream([], b(5, 0, 0, 3, 1, 120, 0, 1, 7));
  const bound = await readReply(s, "srv");
  assert.deepEqual(bound, { address: { kind: "domain", host: "x" }, port: 1 });
  assert.deepEqual(s.unread(), b(7));
});

Deno.test("readReply() maps every REP code to a Socks5Error naming server and code", async () => {
  for (let rep = 1; rep <= 9; rep++) {
    const s = new FakeStream([], b(5, rep));
    s.end();
    await assert.rejects(readReply(s, "127.0.0.1:1080"), (e: unknown) => {
      assert.ok(e instanceof Socks5Error);
      assert.equal(e.rep, rep);
      assert.equal(
        e.message,
        `SOCKS5 server 127.0.0.1:1080: ${replyMessage(rep)} (rep=${rep})`,
      );
      return true;
    });
  }
  assert.equal(replyMessage(5), "connection refused by destination");
});

Deno.test("readReply() rejects a wrong version, an unknown ATYP and a truncated reply", async () => {
  await assert.rejects(readReply(new FakeStream([], b(4, 0, 0, 1)), "s"), /bad reply version 4/);
  await assert.rejects(readReply(new FakeStream([], b(5, 0, 0, 7)), "s"), /unknown ATYP 7/);
  const t = new FakeStream([], b(5, 0, 0, 1, 1, 2));
  t.end();
  await assert.rejects(readReply(t, "s"), /unexpected EOF/);
});

Deno.test("socks5Greet() authenticates with username/password when the server asks", async () => {
  const s = new FakeStream([b(5, 2), b(1, 0)]);
  await socks5Greet(s, "s", { username: "u", password: "p" });
  assert.deepEqual(s.writes, [b(5, 2, 0, 2), b(1, 1, 117, 1, 112)]);
});

Deno.test("socks5Greet() reports rejected credentials and required auth", async () => {
  await assert.rejects(
    socks5Greet(new FakeStream([b(5, 2), b(1, 1)]), "s", { username: "u", password: "p" }),
    /username\/password rejected/,
  );
  await assert.rejects(
    socks5Greet(new FakeStream([b(5, 0xff)]), "s", undefined),
    /requires authentication/,
  );
  await assert.rejects(
    socks5Greet(new FakeStream([b(5, 2)]), "s", undefined),
    /unoffered method 2/,
  );
});

Deno.test("withDeadline() closes the stream and rejects with TimeoutError when the server hangs", async () => {
  const s = new FakeStream(["hang"]);
  await assert.rejects(
    withDeadline(s, 20, "greeting", () => socks5Greet(s, "s", undefined)),
    (e: Error) => e.name === "TimeoutError" && /greeting: timed out after 20 ms/.test(e.message),
  );
  assert.ok(s.closed);
});

Deno.test("withDeadline() rejects with the abort reason when the signal fires", async () => {
  const s = new FakeStream(["hang"]);
  const ac = new AbortController();
  const p = withDeadline(s, 10_000, "x", () => socks5Greet(s, "s", undefined), ac.signal);
  ac.abort(new Error("flow gone"));
  await assert.rejects(p, /flow gone/);
  assert.ok(s.closed);
});
