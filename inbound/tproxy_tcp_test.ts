import assert from "node:assert/strict";
import { createLogger } from "../core/log.ts";
import { parseIp } from "../core/ip.ts";
import { ErrnoError } from "../ffi/errno.ts";
import { defaultReactor } from "../ffi/reactor.ts";
import {
  AF_INET,
  close,
  connect,
  getNofileLimit,
  getsockoptInt,
  IP6T_SO_ORIGINAL_DST,
  setNofileLimit,
  SO_ORIGINAL_DST,
  SOCK_STREAM,
  socket,
  SOL_IP,
  SOL_IPV6,
  SOL_TCP,
  TCP_NODELAY,
} from "../ffi/socket.ts";
import { connectTcp } from "../ffi/stream.ts";
import { LOOP4, LOOP6 } from "../ffi/_test_util.ts";
import { originalDstQuery, TcpListener } from "./tproxy_tcp.ts";

async function roundTrip(l: TcpListener, dstAddr: Uint8Array) {
  const port = l.addresses[0]!.port;
  const [client, conn] = await Promise.all([
    connectTcp({ addr: dstAddr, port }, { timeoutMs: 5000 }),
    l.accept(),
  ]);
  assert.ok(conn);
  return { client, conn };
}

for (const [listen, addr] of [["127.0.0.1", LOOP4], ["::1", LOOP6]] as const) {
  Deno.test(`TcpListener (tproxy, ${listen}) reports source, destination and mark`, async () => {
    const l = TcpListener.open({ mode: "tproxy", listen, port: 0 });
    const { client, conn } = await roundTrip(l, addr);
    assert.deepEqual(conn.destination, { addr, port: l.addresses[0]!.port });
    assert.deepEqual(conn.source, client.localAddress());
    assert.equal(conn.mark, 0);
    await client.writeAll(new Uint8Array([5]));
    const b = new Uint8Array(1);
    assert.equal(await conn.stream.read(b), 1);
    client.close();
    conn.stream.close();
    await l.close();
    await defaultReactor().idle();
  });
}

Deno.test("TcpListener on '::' serves IPv4 and IPv6 clients from one socket", async () => {
  const l = TcpListener.open({ mode: "tproxy", listen: "::", port: 0 });
  assert.equal(l.addresses.length, 1);
  for (const addr of [LOOP4, LOOP6]) {
    const { client, conn } = await roundTrip(l, addr);
    assert.equal(conn.destination.addr.length, addr.length, "v4-mapped normalised to 4 bytes");
    assert.deepEqual(conn.destination.addr, addr);
    assert.deepEqual(conn.source, client.localAddress());
    client.close();
    conn.stream.close();
  }
  await l.close();
  await defaultReactor().idle();
});

Deno.test("TcpListener reports the SYN's mark when tcp_fwmark_accept is on", async () => {
  const path = "/proc/sys/net/ipv4/tcp_fwmark_accept";
  const old = Deno.readTextFileSync(path).trim();
  Deno.writeTextFileSync(path, "1");
  try {
    const l = TcpListener.open({ mode: "tproxy", listen: "127.0.0.1", port: 0 });
    const [client, conn] = await Promise.all([
      connectTcp(l.addresses[0]!, { timeoutMs: 5000, mark: 0x1234 }),
      l.accept(),
    ]);
    assert.equal(conn?.mark, 0x1234);
    client.close();
    conn?.stream.close();
    await l.close();
  } finally {
    Deno.writeTextFileSync(path, old);
  }
  await defaultReactor().idle();
});

Deno.test("originalDstQuery() asks SOL_IP for IPv4 clients and SOL_IPV6 for IPv6 clients", () => {
  assert.deepEqual(originalDstQuery({ addr: LOOP4, port: 1 }), {
    level: SOL_IP,
    opt: SO_ORIGINAL_DST,
    len: 16,
  });
  assert.deepEqual(originalDstQuery({ addr: parseIp("2001:db8::1")!, port: 1 }), {
    level: SOL_IPV6,
    opt: IP6T_SO_ORIGINAL_DST,
    len: 28,
  });
});

Deno.test("TcpListener.open() rejects bad input, naming the field", () => {
  assert.throws(
    () => TcpListener.open({ mode: "tproxy", listen: "nope", port: 1 }),
    /listen: "nope"/,
  );
  assert.throws(
    () => TcpListener.open({ mode: "tproxy", listen: "::", port: 70000 }),
    /listen_port: 70000/,
  );
});

Deno.test("TcpListener.open() fails with EADDRINUSE on a taken port", async () => {
  const l = TcpListener.open({ mode: "tproxy", listen: "127.0.0.1", port: 0 });
  assert.throws(
    () => TcpListener.open({ mode: "tproxy", listen: "127.0.0.1", port: l.addresses[0]!.port }),
    (e) => e instanceof ErrnoError && e.code === "EADDRINUSE",
  );
  await l.close();
});

Deno.test("TcpListener.close() ends the iterator and pending accept()", async () => {
  const l = TcpListener.open({ mode: "tproxy", listen: "127.0.0.1", port: 0 });
  const seen: number[] = [];
  const iter = (async () => {
    for await (const c of l) {
      seen.push(c.source.port);
      c.stream.close();
    }
  })();
  const pending = l.accept();
  await new Promise((r) => setTimeout(r, 10));
  await l.close();
  await iter;
  assert.equal(await pending, null);
  assert.deepEqual(seen, []);
  assert.equal(await l.accept(), null);
  await defaultReactor().idle();
});

Deno.test("TcpListener survives EMFILE: backs off, warns, then accepts", async () => {
  const lines: string[] = [];
  const logger = createLogger({ level: "warn", write: (s) => lines.push(s) });
  const l = TcpListener.open({
    mode: "tproxy",
    listen: "127.0.0.1",
    port: 0,
    logger,
    maxBackoffMs: 20,
  });
  // Client sockets exist before the fd table is filled; they connect after
  // (connect needs no new fd; the kernel completes the handshake).
  const clients: number[] = [];
  for (let i = 0; i < 3; i++) clients.push(socket(AF_INET, SOCK_STREAM));
  const limit = getNofileLimit();
  const dummies: number[] = [];
  let full = false;
  let highest = 0;
  for (const e of Deno.readDirSync("/proc/self/fd")) highest = Math.max(highest, Number(e.name));
  setNofileLimit(highest + 8, limit.hard);
  try {
    for (let i = 0; i <= highest + 8; i++) {
      try {
        dummies.push(socket(AF_INET, SOCK_STREAM));
      } catch (e) {
        assert.ok(e instanceof ErrnoError && e.code === "EMFILE");
        full = true;
        break;
      }
    }
    assert.ok(full, "the fd table is full");
    for (const fd of clients) connect(fd, l.addresses[0]!);
    const first = l.accept();
    for (let i = 0; i < 200 && l.resourceErrors < 2; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(l.resourceErrors >= 2, "accept hit EMFILE and retried");
    for (const fd of dummies.splice(0)) close(fd);
    setNofileLimit(limit.soft, limit.hard);
    const accepted = [await first, await l.accept(), await l.accept()];
    assert.equal(accepted.filter((c) => c !== null).length, 3);
    for (const c of accepted) c?.stream.close();
  } finally {
    for (const fd of dummies) close(fd);
    setNofileLimit(limit.soft, limit.hard);
  }
  assert.ok(lines.some((s) => s.includes("WARN") && s.includes("EMFILE")), lines.join("\n"));
  for (const fd of clients) close(fd);
  await l.close();
  await defaultReactor().idle();
});

Deno.test("TcpListener: accepted and dialled sockets have TCP_NODELAY set", async () => {
  const l = TcpListener.open({ mode: "tproxy", listen: "127.0.0.1", port: 0 });
  const { client, conn } = await roundTrip(l, LOOP4);
  assert.equal(getsockoptInt(conn.stream.fd, SOL_TCP, TCP_NODELAY), 1, "accepted (inherited)");
  assert.equal(getsockoptInt(client.fd, SOL_TCP, TCP_NODELAY), 1, "dialled by connectTcp");
  client.close();
  conn.stream.close();
  await l.close();
  await defaultReactor().idle();
});
