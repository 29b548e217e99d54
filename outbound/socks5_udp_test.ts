import assert from "node:assert/strict";
import {
  decodeUdpDatagram,
  encodeUdpDatagram,
  relayEndpoint,
  socks5UdpAssociate,
} from "./socks5_udp.ts";
import { FakeStream } from "./_fake_stream.ts";

const b = (...xs: number[]) => new Uint8Array(xs);

Deno.test("encodeUdpDatagram() prefixes RSV, FRAG=0, ATYP, address and port", () => {
  assert.deepEqual(
    encodeUdpDatagram({ address: { kind: "ip", addr: b(1, 2, 3, 4) }, port: 53 }, b(0xde, 0xad)),
    b(0, 0, 0, 1, 1, 2, 3, 4, 0, 53, 0xde, 0xad),
  );
  assert.throws(
    () =>
      encodeUdpDatagram(
        { address: { kind: "ip", addr: b(1, 2, 3, 4) }, port: 1 },
        new Uint8Array(65500),
      ),
    /too large/,
  );
});

Deno.test("decodeUdpDatagram() round-trips IPv6 and domain sources", () => {
  const v6 = new Uint8Array(16).fill(0x20);
  const enc = encodeUdpDatagram({ address: { kind: "ip", addr: v6 }, port: 4433 }, b(1, 2, 3));
  const d = decodeUdpDatagram(enc);
  assert.ok(d.ok);
  assert.deepEqual(d.source, { address: { kind: "ip", addr: v6 }, port: 4433 });
  assert.deepEqual(d.data, b(1, 2, 3));
  const dn = decodeUdpDatagram(
    encodeUdpDatagram({ address: { kind: "domain", host: "q.io" }, port: 9 }, b()),
  );
  assert.ok(dn.ok);
  assert.deepEqual(dn.source.address, { kind: "domain", host: "q.io" });
  assert.equal(dn.data.length, 0);
});

Deno.test("decodeUdpDatagram() drops fragments, bad RSV, unknown ATYP and short input", () => {
  assert.deepEqual(decodeUdpDatagram(b(0, 0, 1, 1, 1, 2, 3, 4, 0, 53, 9)), {
    ok: false,
    reason: "fragmented",
  });
  assert.deepEqual(decodeUdpDatagram(b(0, 1, 0, 1, 1, 2, 3, 4, 0, 53)), {
    ok: false,
    reason: "reserved",
  });
  assert.deepEqual(decodeUdpDatagram(b(0, 0, 0, 9, 1, 2)), { ok: false, reason: "atyp" });
  assert.deepEqual(decodeUdpDatagram(b(0, 0, 0, 1, 1, 2)), { ok: false, reason: "short" });
  assert.deepEqual(decodeUdpDatagram(b(0, 0)), { ok: false, reason: "short" });
});

Deno.test("relayEndpoint() uses the server address when BND.ADDR is unspecified", () => {
  const server = { addr: b(10, 0, 0, 5), port: 1080 };
  assert.deepEqual(
    relayEndpoint({ address: { kind: "ip", addr: b(0, 0, 0, 0) }, port: 5000 }, server, "s"),
    {
      addr: b(10, 0, 0, 5),
      port: 5000,
    },
  );
  assert.deepEqual(
    relayEndpoint({ address: { kind: "ip", addr: b(10, 0, 0, 6) }, port: 5000 }, server, "s").addr,
    b(10, 0, 0, 6),
  );
  assert.throws(
    () => relayEndpoint({ address: { kind: "domain", host: "x" }, port: 1 }, server, "s"),
    /domain relay/,
  );
});

Deno.test("socks5UdpAssociate() returns the relay and ends when the control connection closes", async () => {
  const s = new FakeStream([b(5, 0), b(5, 0, 0, 1, 127, 0, 0, 1, 0x13, 0x88)]);
  const a = await socks5UdpAssociate(s, {
    server: { addr: b(127, 0, 0, 1), port: 1080 },
    timeoutMs: 500,
  }, "s");
  assert.deepEqual(a.relay, { addr: b(127, 0, 0, 1), port: 5000 });
  assert.deepEqual(s.writes[1], b(5, 3, 0, 1, 0, 0, 0, 0, 0, 0));
  s.end();
  await a.ended;
  a.close();
  assert.ok(s.closed);
});
