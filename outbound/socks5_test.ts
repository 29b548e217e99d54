import assert from "node:assert/strict";
import { connectTarget, Socks5Error, Socks5Outbound, type Socks5OutboundConfig } from "./socks5.ts";
import { type FakeReply, FakeStream } from "./_fake_stream.ts";
import type { DialOptions } from "./socks5.ts";
import type { Endpoint } from "../core/types.ts";

const b = (...xs: number[]) => new Uint8Array(xs);
const OK_REPLY = b(5, 0, 0, 1, 0, 0, 0, 0, 0, 0);
const base: Socks5OutboundConfig = {
  tag: "xray-jp",
  kind: "xray",
  server: "127.0.0.1",
  serverPort: 37101,
  domainStrategy: "sniffed",
  connectTimeoutMs: 1000,
};
const dst: Endpoint = { addr: b(93, 184, 216, 34), port: 443 };

function dialer(script: () => FakeReply[]) {
  const calls: { dst: Endpoint; opts: DialOptions }[] = [];
  const streams: FakeStream[] = [];
  const connect = (d: Endpoint, opts: DialOptions) => {
    calls.push({ dst: d, opts });
    const s = new FakeStream(script());
    streams.push(s);
    return Promise.resolve(s);
  };
  return { calls, streams, connect };
}

Deno.test("Socks5Outbound.dialTcp() sends the sniffed domain and returns the stream after the reply", async () => {
  const d = dialer(() => [b(5, 0), b(5, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x48)]);
  const ob = new Socks5Outbound({ ...base, defaultMark: 255 }, { connect: d.connect });
  const s = await ob.dialTcp(dst, "example.com");
  assert.deepEqual(d.calls[0]!.dst, { addr: b(127, 0, 0, 1), port: 37101 });
  assert.equal(d.calls[0]!.opts.mark, 255);
  assert.deepEqual(
    s.writes[1],
    b(5, 1, 0, 3, 11, ...new TextEncoder().encode("example.com"), 1, 187),
  );
  const buf = new Uint8Array(8);
  assert.equal(await s.read(buf), 1); // the byte after the reply is not lost
  assert.equal(buf[0], 0x48);
});

Deno.test("Socks5Outbound.dialTcp() sends the IP with domain strategy ip and prefers routing_mark", async () => {
  const d = dialer(() => [b(5, 0), OK_REPLY]);
  const ob = new Socks5Outbound(
    { ...base, domainStrategy: "ip", routingMark: 7, defaultMark: 255, tos: 0x10 },
    { connect: d.connect },
  );
  const s = await ob.dialTcp(dst, "example.com");
  assert.deepEqual(s.writes[1], b(5, 1, 0, 1, 93, 184, 216, 34, 1, 187));
  assert.equal(d.calls[0]!.opts.mark, 7);
  assert.equal(d.calls[0]!.opts.tos, 0x10);
});

Deno.test("Socks5Outbound.dialTcp() maps a refused destination to Socks5Error rep=5 and closes", async () => {
  const d = dialer(() => [b(5, 0), b(5, 5, 0, 1, 0, 0, 0, 0, 0, 0)]);
  const ob = new Socks5Outbound(base, { connect: d.connect });
  await assert.rejects(ob.dialTcp(dst, undefined), (e: unknown) => {
    assert.ok(e instanceof Socks5Error);
    assert.equal(e.rep, 5);
    assert.equal(
      e.message,
      "SOCKS5 server 127.0.0.1:37101: connection refused by destination (rep=5)",
    );
    return true;
  });
  assert.ok(d.streams[0]!.closed);
  assert.equal(ob.stats().failures, 1);
});

Deno.test("Socks5Outbound.dialTcp() times out a silent server", async () => {
  const d = dialer(() => ["hang"]);
  const ob = new Socks5Outbound({ ...base, connectTimeoutMs: 30 }, { connect: d.connect });
  await assert.rejects(ob.dialTcp(dst, undefined), /greeting: timed out after 30 ms/);
  assert.ok(d.streams[0]!.closed);
});

Deno.test("Socks5Outbound.dialTcp() wraps connect errors naming the server", async () => {
  const ob = new Socks5Outbound(base, {
    connect: () => Promise.reject(new Error("connect: ECONNREFUSED (errno 111)")),
  });
  await assert.rejects(
    ob.dialTcp(dst, undefined),
    /SOCKS5 server 127.0.0.1:37101: cannot connect: connect: ECONNREFUSED/,
  );
});

Deno.test("Socks5Outbound with a pool sends only CONNECT on a warmed connection", async () => {
  const d = dialer(() => [b(5, 0), OK_REPLY]);
  const ob = new Socks5Outbound({ ...base, pool: { size: 2 } }, { connect: d.connect });
  try {
    for (let i = 0; i < 100 && ob.stats().pool!.idle < 2; i++) {
      await new Promise((r) => setTimeout(r, 5));
    }
    const s = await ob.dialTcp(dst, undefined);
    assert.equal(s.writes.length, 2); // greeting happened before the flow
    assert.equal(ob.stats().pool!.hits, 1);
  } finally {
    ob.close();
  }
});

Deno.test("Socks5Outbound retries once on a fresh connection when a pooled one died", async () => {
  let n = 0;
  // First pooled connection dies right after the greeting (EOF on CONNECT).
  const d = dialer(() => (n++ === 0 ? [b(5, 0), "eof"] : [b(5, 0), OK_REPLY]));
  const ob = new Socks5Outbound({ ...base, pool: { size: 1 } }, { connect: d.connect });
  try {
    for (let i = 0; i < 100 && ob.stats().pool!.idle < 1; i++) {
      await new Promise((r) => setTimeout(r, 5));
    }
    const s = await ob.dialTcp(dst, undefined);
    assert.ok(d.streams[0]!.closed);
    assert.notEqual(s, d.streams[0]);
    assert.equal(s.closed, false);
  } finally {
    ob.close();
  }
});

Deno.test("Socks5Outbound constructor names the bad field", () => {
  const connect = () => Promise.reject(new Error("unused"));
  assert.throws(
    () => new Socks5Outbound({ ...base, server: "localhost" }, { connect }),
    /outbound xray-jp: server: "localhost": not an IP address/,
  );
  assert.throws(
    () => new Socks5Outbound({ ...base, serverPort: 0 }, { connect }),
    /server_port: 0/,
  );
  assert.throws(
    () => new Socks5Outbound({ ...base, username: "u" }, { connect }),
    /password: username and password go together/,
  );
  assert.throws(
    () => new Socks5Outbound({ ...base, username: "u", password: "" }, { connect }),
    /outbound xray-jp: password: 0 bytes/,
  );
  assert.throws(
    () => new Socks5Outbound({ ...base, pool: { size: 1000 } }, { connect }),
    /pool.size: 1000/,
  );
});

Deno.test("connectTarget() falls back to the IP for an unencodable domain", () => {
  assert.deepEqual(connectTarget("sniffed", dst, "x".repeat(300)).address, {
    kind: "ip",
    addr: dst.addr,
  });
  assert.deepEqual(connectTarget("sniffed", dst, undefined).address, {
    kind: "ip",
    addr: dst.addr,
  });
});

Deno.test("Socks5Outbound.health() turns down after a failed dial and up after a good one", async () => {
  let refuse = true;
  const ob = new Socks5Outbound(base, {
    connect: () =>
      refuse
        ? Promise.reject(new Error("connect: ECONNREFUSED"))
        : Promise.resolve(new FakeStream([b(5, 0), OK_REPLY])),
  });
  assert.equal(ob.health().state, "unknown");
  await assert.rejects(ob.dialTcp(dst, undefined));
  assert.equal(ob.health().state, "down");
  assert.match(ob.health().lastError ?? "", /ECONNREFUSED/);
  refuse = false;
  await ob.dialTcp(dst, undefined);
  assert.equal(ob.health().state, "up");
});
