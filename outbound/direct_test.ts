import assert from "node:assert/strict";
import type { Endpoint } from "../core/types.ts";
import { defaultReactor } from "../ffi/reactor.ts";
import {
  getsockoptBytes,
  getsockoptInt,
  SO_BINDTODEVICE,
  SO_MARK,
  SOL_SOCKET,
} from "../ffi/socket.ts";
import type { ConnectOptions, FdStream } from "../ffi/stream.ts";
import { LOOP4, LOOP6, TestServer } from "../ffi/_test_util.ts";
import { DirectOutbound } from "./direct.ts";

function recorder() {
  const calls: { dst: Endpoint; opts: ConnectOptions }[] = [];
  const connect = (dst: Endpoint, opts: ConnectOptions) => {
    calls.push({ dst, opts });
    return Promise.resolve({} as FdStream);
  };
  return { calls, connect };
}

Deno.test("DirectOutbound uses default_mark unless routing_mark is set", async () => {
  const r1 = recorder();
  await new DirectOutbound({ tag: "d", connect_timeout_ms: 100 }, {
    default_mark: 255,
    connect: r1.connect,
  }).dialTcp({ addr: LOOP4, port: 1 });
  assert.equal(r1.calls[0]!.opts.mark, 255);
  const r2 = recorder();
  const wg = new DirectOutbound({ tag: "wg", connect_timeout_ms: 100, routing_mark: 200 }, {
    default_mark: 255,
    connect: r2.connect,
  });
  await wg.dialTcp({ addr: LOOP4, port: 1 });
  assert.equal(r2.calls[0]!.opts.mark, 200);
  assert.equal(wg.mark, 200);
});

Deno.test("DirectOutbound picks the bind address of the destination's family", async () => {
  const r = recorder();
  const d = new DirectOutbound({
    tag: "d",
    connect_timeout_ms: 100,
    inet4_bind_address: "192.0.2.1",
    inet6_bind_address: "2001:db8::1",
    bind_interface: "eth0",
    tos: 0x10,
  }, { connect: r.connect });
  await d.dialTcp({ addr: LOOP4, port: 1 });
  await d.dialTcp({ addr: LOOP6, port: 1 });
  assert.deepEqual(r.calls[0]!.opts.bindAddress, new Uint8Array([192, 0, 2, 1]));
  assert.equal(r.calls[1]!.opts.bindAddress?.length, 16);
  assert.equal(r.calls[0]!.opts.bindInterface, "eth0");
  assert.equal(r.calls[0]!.opts.tos, 0x10);
  assert.equal(r.calls[0]!.opts.timeoutMs, 100);
  assert.equal(r.calls[0]!.opts.mark, undefined);
});

Deno.test("DirectOutbound rejects bad config, naming the field", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ connect_timeout_ms: 0 }, /"x": connect_timeout_ms: 0/],
    [{ connect_timeout_ms: 1, inet4_bind_address: "::1" }, /inet4_bind_address: "::1"/],
    [{ connect_timeout_ms: 1, inet6_bind_address: "1.2.3.4" }, /inet6_bind_address/],
    [{ connect_timeout_ms: 1, routing_mark: -1 }, /routing_mark: -1/],
    [{ connect_timeout_ms: 1, tos: 256 }, /tos: 256/],
    [{ connect_timeout_ms: 1, bind_interface: "a/b" }, /bind_interface: "a\/b"/],
  ];
  for (const [extra, re] of cases) {
    assert.throws(
      () => new DirectOutbound({ tag: "x", ...extra } as never),
      re,
      JSON.stringify(extra),
    );
  }
});

Deno.test("DirectOutbound.dialTcp() connects with mark and interface on the real socket", async () => {
  const server = new TestServer();
  const d = new DirectOutbound({ tag: "d", connect_timeout_ms: 5000, bind_interface: "lo" }, {
    default_mark: 0xff,
  });
  const [c, s] = await Promise.all([d.dialTcp(server.endpoint), server.accept()]);
  assert.equal(getsockoptInt(c.fd, SOL_SOCKET, SO_MARK), 0xff);
  const dev = getsockoptBytes(c.fd, SOL_SOCKET, SO_BINDTODEVICE, 16);
  assert.equal(new TextDecoder().decode(dev).replace(/\0.*$/, ""), "lo");
  c.close();
  s.close();
  server.close();
  await defaultReactor().idle();
});
