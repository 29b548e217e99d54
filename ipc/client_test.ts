import assert from "node:assert/strict";
import { fakeHandlers, tempSocketPath } from "./_fake_handlers.ts";
import { IpcClient } from "./client.ts";
import { IpcError, type IpcErrorCode } from "./protocol.ts";
import { type IpcHandlers, IpcServer, type IpcServerOptions } from "./server.ts";

function hasCode(code: IpcErrorCode, pattern?: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof IpcError, `expected IpcError, got ${e}`);
    assert.equal(e.code, code, e.message);
    if (pattern) assert.match(e.message, pattern);
    return true;
  };
}

async function withServer(
  overrides: Partial<IpcHandlers>,
  opts: Partial<IpcServerOptions>,
  f: (path: string) => Promise<void>,
): Promise<void> {
  const { dir, path } = await tempSocketPath();
  const server = await IpcServer.listen({
    path,
    handlers: fakeHandlers(overrides).handlers,
    ...opts,
  });
  try {
    await f(path);
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("IpcClient.call() returns typed results for every method", async () => {
  await withServer({}, {}, async (path) => {
    await using c = await IpcClient.connect(path);
    assert.deepEqual(await c.call("ping"), { pong: true });
    assert.equal((await c.status()).final, "direct");
    assert.deepEqual(
      await c.call("route.test", { dst: "1.1.1.1:443", domain: "www.netflix.com" }),
      {
        outbound: "wg-us",
        rule: 0,
        rule_text: '{"domain_suffix":["netflix.com"],"outbound":"wg-us"}',
        final: false,
      },
    );
    assert.deepEqual(await c.routeTest({ dst: "1.1.1.1:443" }), {
      outbound: "direct",
      rule: null,
      final: true,
    });
    assert.equal((await c.connectionsList({ limit: 5 })).total, 5);
    assert.deepEqual(await c.connectionsClose({ outbound: "wg-us" }), { closed: 7 });
    assert.equal((await c.outboundsList()).outbounds.length, 3);
    assert.equal((await c.stats()).bytes_down, 20);
    assert.equal((await c.reload({ path: "/etc/ok.json", close_removed: true })).closed, 2);
  });
});

Deno.test("IpcClient rejects with the server's code and message", async () => {
  await withServer({}, {}, async (path) => {
    await using c = await IpcClient.connect(path);
    await assert.rejects(
      c.reload({ path: "/etc/bad.json" }),
      hasCode("config_invalid", /reload: route\.rules\[3\]/),
    );
    await assert.rejects(c.callRaw("nope"), hasCode("method_not_found"));
    await assert.rejects(c.callRaw("route.test", { dst: "x" }), hasCode("invalid_params", /dst/));
    // Still usable afterwards.
    assert.deepEqual(await c.ping(), { pong: true });
  });
});

Deno.test("IpcClient times out a call with no reply and stays usable", async () => {
  await withServer({ stats: () => new Promise(() => {}) }, {}, async (path) => {
    await using c = await IpcClient.connect(path, { timeoutMs: 5000 });
    await assert.rejects(
      c.stats({}, { timeoutMs: 50 }),
      hasCode("timeout", /stats: no reply within 50 ms/),
    );
    assert.deepEqual(await c.ping(), { pong: true });
  });
});

Deno.test("IpcClient.connect() fails with connect_failed naming the path", async () => {
  const { dir, path } = await tempSocketPath();
  try {
    await assert.rejects(IpcClient.connect(path), hasCode("connect_failed", new RegExp(dir)));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("IpcClient refuses locally a request above maxRequestBytes", async () => {
  await withServer({}, {}, async (path) => {
    await using c = await IpcClient.connect(path, { maxRequestBytes: 100 });
    await assert.rejects(
      c.reload({ config: { pad: "x".repeat(200) } }),
      hasCode("line_too_long", /limit is 100/),
    );
    assert.deepEqual(await c.ping(), { pong: true });
  });
});

Deno.test("IpcClient reports the server's line_too_long when the server closes", async () => {
  await withServer({}, { maxLineBytes: 256 }, async (path) => {
    const c = await IpcClient.connect(path);
    await assert.rejects(c.reload({ config: { pad: "x".repeat(1000) } }), hasCode("line_too_long"));
    assert.equal(c.closed, true);
    await assert.rejects(c.ping(), hasCode("line_too_long"));
    await c.close();
  });
});

Deno.test("IpcClient.close() fails pending calls with connection_closed", async () => {
  await withServer({ stats: () => new Promise(() => {}) }, {}, async (path) => {
    const c = await IpcClient.connect(path);
    const pending = assert.rejects(c.stats(), hasCode("connection_closed"));
    await c.ping();
    await c.close();
    await pending;
    await assert.rejects(c.ping(), hasCode("connection_closed"));
  });
});

Deno.test("IpcClient matches concurrent replies by id", async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  const overrides: Partial<IpcHandlers> = {
    status: async () => {
      await gate;
      return fakeHandlers().handlers.status();
    },
  };
  await withServer(overrides, {}, async (path) => {
    await using c = await IpcClient.connect(path);
    const slow = c.status();
    const fast = await Promise.all([c.ping(), c.routeTest({ dst: "9.9.9.9:53" })]);
    assert.deepEqual(fast[0], { pong: true });
    assert.equal(fast[1].outbound, "block");
    release();
    assert.equal((await slow).pid, 4242);
  });
});

Deno.test("IpcClient.call() types require params where the method needs them", () => {
  // Compile-time checks: each line must fail type checking, or `deno check` fails.
  const typeChecks = (c: IpcClient) => {
    // @ts-expect-error reload needs params
    c.call("reload");
    // @ts-expect-error route.test needs dst
    c.call("route.test", {});
    // @ts-expect-error unknown method
    c.call("restart");
    // @ts-expect-error ping takes no params
    c.call("ping", { x: 1 });
  };
  assert.equal(typeof typeChecks, "function");
});
