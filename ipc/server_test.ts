import assert from "node:assert/strict";
import { fakeHandlers, RawConn, tempSocketPath } from "./_fake_handlers.ts";
import { IpcClient } from "./client.ts";
import { findGroupId } from "./group.ts";
import { IpcError } from "./protocol.ts";
import { IpcServer, type IpcServerOptions } from "./server.ts";

async function withServer(
  opts: Partial<IpcServerOptions>,
  f: (server: IpcServer, path: string) => Promise<void>,
): Promise<void> {
  const { dir, path } = await tempSocketPath();
  const server = new IpcServer({ path, handlers: fakeHandlers().handlers, ...opts });
  try {
    await server.start();
    await f(server, path);
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("IpcServer answers ping and status round trips with the request id", async () => {
  await withServer({}, async (_s, path) => {
    const raw = await RawConn.open(path);
    await raw.send('{"id":1,"method":"ping"}\n{"id":"two","method":"status"}\n');
    const replies = [await raw.reply(), await raw.reply()];
    const byId = new Map(replies.map((r) => [r!.id, r!]));
    assert.deepEqual(byId.get(1), { id: 1, result: { pong: true } });
    const status = byId.get("two")!.result as { pid: number; outbounds: unknown[] };
    assert.equal(status.pid, 4242);
    assert.equal(status.outbounds.length, 3);
    await raw.close();
  });
});

Deno.test("IpcServer answers malformed JSON with parse_error and keeps the connection usable", async () => {
  await withServer({}, async (_s, path) => {
    const raw = await RawConn.open(path);
    await raw.send('{"id":1,"method":\n');
    const bad = await raw.reply();
    assert.equal(bad!.id, null);
    assert.equal((bad!.error as { code: string }).code, "parse_error");
    await raw.send('{"id":2,"method":"ping"}\n');
    assert.deepEqual(await raw.reply(), { id: 2, result: { pong: true } });
    await raw.close();
  });
});

Deno.test("IpcServer answers an unknown method with method_not_found and stays usable", async () => {
  await withServer({}, async (_s, path) => {
    const raw = await RawConn.open(path);
    await raw.send('{"id":9,"method":"restart"}\n');
    const r = await raw.reply();
    assert.equal(r!.id, 9);
    assert.equal((r!.error as { code: string }).code, "method_not_found");
    assert.match((r!.error as { message: string }).message, /restart/);
    await raw.send('{"id":10,"method":"ping"}\n');
    assert.deepEqual(await raw.reply(), { id: 10, result: { pong: true } });
    await raw.close();
  });
});

Deno.test("IpcServer reports invalid params naming the field", async () => {
  await withServer({}, async (_s, path) => {
    const raw = await RawConn.open(path);
    await raw.send('{"id":1,"method":"route.test","params":{"dst":"1.2.3.4"}}\n');
    const r = await raw.reply();
    assert.deepEqual(r!.error, {
      code: "invalid_params",
      message: 'params.dst: "1.2.3.4": expected IP:PORT',
    });
    await raw.close();
  });
});

Deno.test("IpcServer passes a handler's IpcError code through and maps other errors to internal", async () => {
  const { handlers } = fakeHandlers({
    stats: () => {
      throw new Error("counter store broken");
    },
  });
  await withServer({ handlers }, async (_s, path) => {
    const raw = await RawConn.open(path);
    await raw.send('{"id":1,"method":"reload","params":{"path":"/etc/bad.json"}}\n');
    const r1 = await raw.reply();
    assert.equal((r1!.error as { code: string }).code, "config_invalid");
    assert.match((r1!.error as { message: string }).message, /route\.rules\[3\]\.ip_cidr\[0\]/);
    await raw.send('{"id":2,"method":"stats"}\n');
    assert.deepEqual(await raw.reply(), {
      id: 2,
      error: { code: "internal", message: "counter store broken" },
    });
    await raw.close();
  });
});

Deno.test("IpcServer answers an over-long line with line_too_long and then closes the connection", async () => {
  await withServer({ maxLineBytes: 1024 }, async (server, path) => {
    const raw = await RawConn.open(path);
    const big = JSON.stringify({
      id: 1,
      method: "reload",
      params: { config: { x: "y".repeat(4096) } },
    });
    await raw.send('{"id":0,"method":"ping"}\n' + big + "\n");
    assert.deepEqual(await raw.reply(), { id: 0, result: { pong: true } });
    const r = await raw.reply();
    assert.equal(r!.id, null);
    assert.equal((r!.error as { code: string }).code, "line_too_long");
    assert.equal(await raw.reply(), null, "connection closed after line_too_long");
    await raw.close();
    // The server itself keeps serving others.
    const other = await IpcClient.connect(path);
    assert.deepEqual(await other.ping(), { pong: true });
    await other.close();
    assert.equal(server.clientCount <= 1, true);
  });
});

Deno.test("IpcServer accepts a line of up to maxLineBytes (inline config reload)", async () => {
  await withServer({ maxLineBytes: 1 << 20 }, async (_s, path) => {
    const client = await IpcClient.connect(path);
    const config = { route: { rules: Array.from({ length: 5000 }, (_, i) => ({ port: [i] })) } };
    const r = await client.reload({ config });
    assert.equal(r.rules, 3);
    await client.close();
  });
});

Deno.test("IpcServer serves many concurrent clients with pipelined requests", async () => {
  await withServer({ maxClients: 16 }, async (_s, path) => {
    const clients = await Promise.all(Array.from({ length: 12 }, () => IpcClient.connect(path)));
    const results = await Promise.all(
      clients.flatMap((c, i) =>
        Array.from(
          { length: 25 },
          (_, j) =>
            c.routeTest({ dst: `10.0.${i}.${j}:${j === 0 ? 53 : 443}` }).then((r) => ({ r, j })),
        )
      ),
    );
    assert.equal(results.length, 300);
    for (const { r, j } of results) {
      assert.equal(r.outbound, j === 0 ? "block" : "xray-jp");
      assert.equal(r.rule, j === 0 ? 1 : 2);
    }
    await Promise.all(clients.map((c) => c.close()));
  });
});

Deno.test("IpcServer replies out of order when a later request finishes first", async () => {
  let releaseSlow!: () => void;
  const slowGate = new Promise<void>((r) => releaseSlow = r);
  const { handlers } = fakeHandlers({
    status: async () => {
      await slowGate;
      return fakeHandlers().handlers.status();
    },
  });
  await withServer({ handlers }, async (_s, path) => {
    const raw = await RawConn.open(path);
    await raw.send('{"id":1,"method":"status"}\n{"id":2,"method":"ping"}\n');
    assert.deepEqual(await raw.reply(), { id: 2, result: { pong: true } });
    releaseSlow();
    assert.equal((await raw.reply())!.id, 1);
    await raw.close();
  });
});

Deno.test("IpcServer refuses clients beyond maxClients with an error reply", async () => {
  await withServer({ maxClients: 1 }, async (_s, path) => {
    const first = await IpcClient.connect(path);
    assert.deepEqual(await first.ping(), { pong: true });
    const raw = await RawConn.open(path);
    const r = await raw.reply();
    assert.equal(r!.id, null);
    assert.match((r!.error as { message: string }).message, /too many IPC clients/);
    assert.equal(await raw.reply(), null);
    await raw.close();
    assert.deepEqual(await first.ping(), { pong: true });
    await first.close();
  });
});

Deno.test("IpcServer creates the socket with mode 0600 by default", async () => {
  await withServer({}, async (_s, path) => {
    const st = await Deno.stat(path);
    assert.equal(st.isSocket, true);
    assert.equal(st.mode! & 0o777, 0o600);
  });
});

Deno.test("IpcServer sets the group and mode 0660 when a group is configured", async () => {
  const text = await Deno.readTextFile("/etc/group");
  const gid = findGroupId(text, "daemon");
  assert.ok(gid !== null, "test needs a 'daemon' group in /etc/group");
  await withServer({ group: "daemon" }, async (_s, path) => {
    const st = await Deno.stat(path);
    assert.equal(st.gid, gid);
    assert.equal(st.mode! & 0o777, 0o660);
  });
  await withServer({ group: gid, mode: 0o640 }, async (_s, path) => {
    const st = await Deno.stat(path);
    assert.equal(st.gid, gid);
    assert.equal(st.mode! & 0o777, 0o640);
  });
});

Deno.test("IpcServer.start() fails naming an unknown group", async () => {
  const { dir, path } = await tempSocketPath();
  try {
    const server = new IpcServer({
      path,
      group: "no-such-group-xyz",
      handlers: fakeHandlers().handlers,
    });
    await assert.rejects(() => server.start(), /no-such-group-xyz/);
    await assert.rejects(() => Deno.lstat(path), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("findGroupId() reads gids from /etc/group text", () => {
  const text = "# comment\nroot:x:0:\nvpn-router:x:998:alice,bob\nbroken:x:abc:\n";
  assert.equal(findGroupId(text, "vpn-router"), 998);
  assert.equal(findGroupId(text, "root"), 0);
  assert.equal(findGroupId(text, "broken"), null);
  assert.equal(findGroupId(text, "vpn"), null);
});

Deno.test("IpcServer replaces a stale socket file nobody answers on", async () => {
  const { dir, path } = await tempSocketPath();
  try {
    // A socket bound by a process that exited without unlinking it.
    const py = await new Deno.Command("python3", {
      args: ["-c", "import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])", path],
    }).output();
    assert.equal(py.code, 0, new TextDecoder().decode(py.stderr));
    assert.equal((await Deno.lstat(path)).isSocket, true);
    const server = await IpcServer.listen({ path, handlers: fakeHandlers().handlers });
    try {
      const c = await IpcClient.connect(path);
      assert.deepEqual(await c.ping(), { pong: true });
      await c.close();
    } finally {
      await server.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("IpcServer refuses to start when another server answers on the socket", async () => {
  await withServer({}, async (_s, path) => {
    const second = new IpcServer({ path, handlers: fakeHandlers().handlers });
    await assert.rejects(() => second.start(), /another process is listening/);
    // The live server's socket is untouched and still answers.
    const c = await IpcClient.connect(path);
    assert.deepEqual(await c.ping(), { pong: true });
    await c.close();
  });
});

Deno.test("IpcServer refuses to replace a path that is not a socket", async () => {
  const { dir, path } = await tempSocketPath();
  try {
    await Deno.writeTextFile(path, "precious");
    const server = new IpcServer({ path, handlers: fakeHandlers().handlers });
    await assert.rejects(() => server.start(), /is not a socket/);
    assert.equal(await Deno.readTextFile(path), "precious");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("IpcServer.close() removes the socket file and fails pending client calls", async () => {
  const { dir, path } = await tempSocketPath();
  try {
    const { handlers } = fakeHandlers({ stats: () => new Promise(() => {}) });
    const server = await IpcServer.listen({ path, handlers });
    const c = await IpcClient.connect(path);
    const pending = assert.rejects(
      c.stats(),
      (e) => e instanceof IpcError && e.code === "connection_closed",
    );
    assert.deepEqual(await c.ping(), { pong: true });
    await server.close();
    await pending;
    await assert.rejects(() => Deno.lstat(path), Deno.errors.NotFound);
    await c.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("IpcServer creates a missing socket directory", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ipc-test-" });
  try {
    const path = `${dir}/run/vpn-router/router.sock`;
    const server = await IpcServer.listen({ path, handlers: fakeHandlers().handlers });
    assert.equal((await Deno.stat(path)).isSocket, true);
    await server.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("new IpcServer() rejects bad options", () => {
  const handlers = fakeHandlers().handlers;
  assert.throws(() => new IpcServer({ path: "/tmp/x.sock", mode: 0o1777, handlers }), /ipc\.mode/);
  assert.throws(
    () => new IpcServer({ path: "/tmp/x.sock", maxClients: 0, handlers }),
    /maxClients/,
  );
  assert.throws(() => new IpcServer({ path: "/" + "x".repeat(120), handlers }), /ipc\.path/);
});

Deno.test("IpcServer takeover: replace takes a live path; the old server, closing, leaves the new socket alone", async () => {
  const { dir, path } = await tempSocketPath();
  try {
    const old = await IpcServer.listen({ path, handlers: fakeHandlers().handlers });
    const held = await IpcClient.connect(path);
    // A successor asks, the old server stops listening (the path is free) but keeps its clients.
    await old.stopListening();
    await assert.rejects(() => Deno.lstat(path), Deno.errors.NotFound);
    assert.deepEqual(await held.ping(), { pong: true }, "connected clients are still served");
    // Once no socket refers to the old path's inode, the new socket gets its number (tmpfs):
    // closing the old server later must not take the new socket for its own.
    await held.close();
    for (let i = 0; i < 100 && old.clientCount > 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    const next = await IpcServer.listen({ path, handlers: fakeHandlers().handlers, replace: true });
    try {
      await old.close();
      assert.equal(
        (await Deno.lstat(path)).isSocket,
        true,
        "the successor's socket is still there",
      );
      const c = await IpcClient.connect(path);
      assert.deepEqual(await c.ping(), { pong: true });
      await c.close();
      // replace also takes a path another server still answers on.
      const third = await IpcServer.listen({
        path,
        handlers: fakeHandlers().handlers,
        replace: true,
      });
      await third.close();
    } finally {
      await next.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
