import assert from "node:assert/strict";
import { ErrnoError } from "./errno.ts";
import { defaultReactor } from "./reactor.ts";
import {
  getsockoptInt,
  IP_TOS,
  IPV6_TCLASS,
  SO_MARK,
  SOL_IP,
  SOL_IPV6,
  SOL_SOCKET,
  WOULD_BLOCK,
} from "./socket.ts";
import { connectTcp, type FdStream } from "./stream.ts";
import { LOOP4, LOOP6, pair, TestServer } from "./_test_util.ts";

function closeAll(...xs: { close(): void }[]) {
  for (const x of xs) x.close();
}

Deno.test("FdStream reads, writes and sees EOF after shutdownWrite()", async () => {
  const server = new TestServer();
  const [c, s] = await pair(server);
  await c.writeAll(new TextEncoder().encode("hello"));
  c.shutdownWrite();
  const buf = new Uint8Array(64);
  let text = "";
  for (;;) {
    const n = await s.read(buf);
    if (n === 0) break;
    text += new TextDecoder().decode(buf.subarray(0, n));
  }
  assert.equal(text, "hello");
  // The other direction still works after the half-close.
  await s.writeAll(new Uint8Array([9]));
  assert.equal(await c.read(buf), 1);
  assert.equal(buf[0], 9);
  closeAll(c, s, server);
  await defaultReactor().idle();
});

Deno.test("FdStream.peek() leaves bytes for the next read()", async () => {
  const server = new TestServer();
  const [c, s] = await pair(server);
  await c.writeAll(new Uint8Array([1, 2, 3]));
  const buf = new Uint8Array(8);
  assert.equal(await s.peek(buf), 3);
  assert.equal(s.tryPeek(buf), 3);
  assert.equal(await s.read(buf), 3);
  assert.deepEqual([...buf.subarray(0, 3)], [1, 2, 3]);
  assert.equal(s.tryRead(buf), WOULD_BLOCK);
  closeAll(c, s, server);
});

Deno.test("FdStream.waitReadable() returns false after the timeout and true on data", async () => {
  const server = new TestServer();
  const [c, s] = await pair(server);
  assert.equal(await s.waitReadable(20), false);
  const p = s.waitReadable(5000);
  await c.writeAll(new Uint8Array([1]));
  assert.equal(await p, true);
  closeAll(c, s, server);
  await defaultReactor().idle();
});

Deno.test("FdStream addresses work over IPv6 loopback", async () => {
  const server = new TestServer(LOOP6);
  const [c, s] = await pair(server);
  assert.deepEqual(c.remoteAddress(), server.endpoint);
  assert.deepEqual(s.localAddress(), server.endpoint);
  assert.deepEqual(s.remoteAddress(), c.localAddress());
  assert.equal(s.remoteAddress().addr.length, 16);
  closeAll(c, s, server);
});

Deno.test("connectTcp() rejects with ECONNREFUSED when nobody listens", async () => {
  const server = new TestServer();
  const dst = server.endpoint;
  server.close();
  await assert.rejects(
    connectTcp(dst, { timeoutMs: 5000 }),
    (e) => e instanceof ErrnoError && e.code === "ECONNREFUSED" && e.syscall === "connect",
  );
  await defaultReactor().idle();
});

/** A listener whose accept queue is full, so further SYNs are dropped. */
async function fullServer(): Promise<{ server: TestServer; held: FdStream[] }> {
  const server = new TestServer();
  const held: FdStream[] = [];
  // The listener never accepts: a few connects fill its queue (backlog 1024
  // is clamped by somaxconn but we only need it full, so use a tiny one).
  const { listen } = await import("./socket.ts");
  listen(server.fd, 0);
  for (let i = 0; i < 4; i++) {
    try {
      held.push(await connectTcp(server.endpoint, { timeoutMs: 200 }));
    } catch {
      break;
    }
  }
  return { server, held };
}

Deno.test("connectTcp() rejects with a TimeoutError after timeoutMs", async () => {
  const { server, held } = await fullServer();
  await assert.rejects(
    connectTcp(server.endpoint, { timeoutMs: 100 }),
    (e) => e instanceof Error && e.name === "TimeoutError",
  );
  closeAll(...held, server);
  await defaultReactor().idle();
});

Deno.test("connectTcp() rejects with the signal's reason when aborted", async () => {
  const { server, held } = await fullServer();
  const ac = new AbortController();
  const p = connectTcp(server.endpoint, { timeoutMs: 10_000, signal: ac.signal });
  const reason = new Error("user abort");
  setTimeout(() => ac.abort(reason), 10);
  await assert.rejects(p, (e) => e === reason);
  closeAll(...held, server);
  await defaultReactor().idle();
});

Deno.test("connectTcp() applies mark, TOS and source address", async () => {
  const server = new TestServer();
  const src = new Uint8Array([127, 0, 0, 2]);
  const [c, s] = await Promise.all([
    connectTcp(server.endpoint, { timeoutMs: 5000, mark: 0x42, tos: 0xb8, bindAddress: src }),
    server.accept(),
  ]);
  assert.equal(getsockoptInt(c.fd, SOL_SOCKET, SO_MARK), 0x42);
  assert.equal(getsockoptInt(c.fd, SOL_IP, IP_TOS), 0xb8);
  assert.deepEqual(s.remoteAddress().addr, src);
  closeAll(c, s);
  const server6 = new TestServer(LOOP6);
  const c6 = await connectTcp(server6.endpoint, { timeoutMs: 5000, tos: 0x20 });
  assert.equal(getsockoptInt(c6.fd, SOL_IPV6, IPV6_TCLASS), 0x20);
  closeAll(c6, server6, server);
  await assert.rejects(
    connectTcp(server6.endpoint, { timeoutMs: 5000, bindAddress: LOOP4 }),
    /family mismatch/,
  );
});

Deno.test("resetAndClose() makes the peer's read fail with ECONNRESET", async () => {
  const server = new TestServer();
  const [c, s] = await pair(server);
  c.resetAndClose();
  await assert.rejects(
    s.read(new Uint8Array(8)),
    (e) => e instanceof ErrnoError && e.code === "ECONNRESET",
  );
  assert.equal(c.closed, true);
  c.close(); // idempotent
  closeAll(s, server);
  await defaultReactor().idle();
});

Deno.test("close() rejects a pending read with ClosedError", async () => {
  const server = new TestServer();
  const [c, s] = await pair(server);
  const p = s.read(new Uint8Array(8));
  s.close();
  await assert.rejects(p, (e) => e instanceof Error && e.name === "ClosedError");
  closeAll(c, server);
  await defaultReactor().idle();
});
