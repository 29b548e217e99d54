import assert from "node:assert/strict";
import { ErrnoError } from "../ffi/errno.ts";
import { defaultReactor } from "../ffi/reactor.ts";
import { PipePool } from "../ffi/pipe_pool.ts";
import type { FdStream } from "../ffi/stream.ts";
import { drain, openFds, pair, randomBytes, sha256, TestServer } from "../ffi/_test_util.ts";
import { relay, type RelayOptions } from "./relay.ts";

/** client ⇄ [a | relay | b] ⇄ remote */
interface Flow {
  client: FdStream;
  a: FdStream;
  b: FdStream;
  remote: FdStream;
}

async function flow(front: TestServer, back: TestServer): Promise<Flow> {
  const [client, a] = await pair(front);
  const [b, remote] = await pair(back);
  return { client, a, b, remote };
}

async function sendAndFinish(s: FdStream, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length; off += 1 << 20) {
    await s.writeAll(data.subarray(off, Math.min(data.length, off + (1 << 20))));
  }
  s.shutdownWrite();
}

for (const mode of ["splice", "copy"] as const) {
  Deno.test(`relay() (${mode}) moves 16 MiB each way concurrently, intact`, async () => {
    const front = new TestServer();
    const back = new TestServer();
    const f = await flow(front, back);
    const size = 16 << 20;
    const upData = randomBytes(size, 1);
    const downData = randomBytes(size, 2);
    const counters = { up: 0, down: 0 };
    const opts: RelayOptions = { idleTimeoutMs: 30_000, counters, mode };
    const [res, , , atRemote, atClient] = await Promise.all([
      relay(f.a, f.b, opts),
      sendAndFinish(f.client, upData),
      sendAndFinish(f.remote, downData),
      drain(f.remote),
      drain(f.client),
    ]);
    assert.equal(res.reason, "eof");
    assert.equal(res.up, size);
    assert.equal(res.down, size);
    assert.deepEqual(counters, { up: size, down: size });
    assert.equal(atRemote.bytes, size);
    assert.equal(atClient.bytes, size);
    assert.equal(atRemote.hash, await sha256(upData));
    assert.equal(atClient.hash, await sha256(downData));
    assert.ok(f.a.closed && f.b.closed, "relay closed both of its streams");
    f.client.close();
    f.remote.close();
    front.close();
    back.close();
    await defaultReactor().idle();
  });
}

Deno.test("relay() onDown sees every byte b→a before it is delivered, and nothing a→b", async () => {
  const front = new TestServer();
  const back = new TestServer();
  const f = await flow(front, back);
  const size = 3 << 20;
  const upData = randomBytes(size, 3);
  const downData = randomBytes(size, 4);
  const seen: Uint8Array[] = [];
  let seenBytes = 0;
  const [res, , , atRemote, atClient] = await Promise.all([
    // Splice otherwise: only the observed direction copies.
    relay(f.a, f.b, {
      idleTimeoutMs: 30_000,
      onDown: (chunk) => {
        seen.push(chunk.slice());
        seenBytes += chunk.length;
      },
    }),
    sendAndFinish(f.client, upData),
    sendAndFinish(f.remote, downData),
    drain(f.remote),
    drain(f.client),
  ]);
  assert.equal(res.reason, "eof");
  assert.deepEqual([res.up, res.down], [size, size]);
  assert.equal(seenBytes, size, "observed exactly the bytes relayed down");
  const joined = new Uint8Array(size);
  let at = 0;
  for (const c of seen) joined.set(c, (at += c.length) - c.length);
  assert.equal(await sha256(joined), await sha256(downData), "in order, unchanged");
  assert.equal(atClient.hash, await sha256(downData));
  assert.equal(atRemote.hash, await sha256(upData));
  f.client.close();
  f.remote.close();
  front.close();
  back.close();
  await defaultReactor().idle();
});

Deno.test("relay() half-close: EOF one way is forwarded, the other way keeps flowing", async () => {
  const front = new TestServer();
  const back = new TestServer();
  const f = await flow(front, back);
  const done = relay(f.a, f.b, { idleTimeoutMs: 30_000 });
  await f.client.writeAll(new TextEncoder().encode("request"));
  f.client.shutdownWrite();
  // The remote sees the request and then EOF, while its side is still open.
  const req = await drain(f.remote);
  assert.equal(req.bytes, 7);
  const reply = randomBytes(300_000, 3);
  await sendAndFinish(f.remote, reply);
  const got = await drain(f.client);
  assert.equal(got.hash, await sha256(reply));
  const res = await done;
  assert.deepEqual([res.reason, res.up, res.down], ["eof", 7, 300_000]);
  f.client.close();
  f.remote.close();
  front.close();
  back.close();
  await defaultReactor().idle();
});

Deno.test("relay() closes both sides when the flow is idle", async () => {
  const front = new TestServer();
  const back = new TestServer();
  const f = await flow(front, back);
  const done = relay(f.a, f.b, { idleTimeoutMs: 80 });
  await f.client.writeAll(new Uint8Array([1, 2]));
  const buf = new Uint8Array(8);
  assert.equal(await f.remote.read(buf), 2);
  const res = await done;
  assert.equal(res.reason, "idle");
  assert.equal(res.up, 2);
  // Both peers now see EOF.
  assert.equal(await f.client.read(buf), 0);
  assert.equal(await f.remote.read(buf), 0);
  f.client.close();
  f.remote.close();
  front.close();
  back.close();
  await defaultReactor().idle();
});

Deno.test("relay() propagates a reset from the client to the remote", async () => {
  const front = new TestServer();
  const back = new TestServer();
  const f = await flow(front, back);
  const done = relay(f.a, f.b, { idleTimeoutMs: 30_000 });
  await f.client.writeAll(new Uint8Array([1]));
  await f.remote.read(new Uint8Array(1));
  f.client.resetAndClose();
  const res = await done;
  assert.equal(res.reason, "error");
  assert.equal(res.error?.side, "a");
  assert.equal(res.error?.code, "ECONNRESET");
  await assert.rejects(
    f.remote.read(new Uint8Array(8)),
    (e) => e instanceof ErrnoError && e.code === "ECONNRESET",
  );
  f.remote.close();
  front.close();
  back.close();
  await defaultReactor().idle();
});

Deno.test("relay() ends with reason aborted when the signal fires", async () => {
  const front = new TestServer();
  const back = new TestServer();
  const f = await flow(front, back);
  const ac = new AbortController();
  const done = relay(f.a, f.b, { idleTimeoutMs: 30_000, signal: ac.signal });
  setTimeout(() => ac.abort(), 10);
  const res = await done;
  assert.equal(res.reason, "aborted");
  assert.equal(await f.client.read(new Uint8Array(1)), 0);
  f.client.close();
  f.remote.close();
  front.close();
  back.close();
  await defaultReactor().idle();
});

Deno.test("relay() leaks no fds over 10,000 flows", async () => {
  const front = new TestServer();
  const back = new TestServer();
  const pool = new PipePool({ maxIdle: 32 });
  const before = openFds();
  const total = 10_000, parallel = 16;
  let next = 0, ok = 0;
  const worker = async () => {
    while (next < total) {
      const i = next++;
      const f = await flow(front, back);
      const done = relay(f.a, f.b, { idleTimeoutMs: 30_000, pipePool: pool });
      const msg = new Uint8Array([i & 0xff, (i >> 8) & 0xff]);
      await sendAndFinish(f.client, msg);
      const req = await drain(f.remote);
      await sendAndFinish(f.remote, msg);
      const rep = await drain(f.client);
      const res = await done;
      if (req.bytes === 2 && rep.bytes === 2 && res.reason === "eof") ok++;
      f.client.close();
      f.remote.close();
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  assert.equal(ok, total);
  pool.drain();
  assert.equal(openFds(), before, "fd count back to where it started");
  assert.ok(pool.created <= 2 * parallel, `pipes were reused (${pool.created} created)`);
  front.close();
  back.close();
  await defaultReactor().idle();
});

Deno.test("relay() (splice) holds no pipe while the flow is idle", async () => {
  const front = new TestServer();
  const back = new TestServer();
  const pool = new PipePool({ maxIdle: 8 });
  const f = await flow(front, back);
  const done = relay(f.a, f.b, { idleTimeoutMs: 30_000, pipePool: pool });
  const buf = new Uint8Array(16);
  // One request/response: each direction takes a pipe while bytes move...
  await f.client.writeAll(new Uint8Array([1, 2, 3]));
  assert.equal(await f.remote.read(buf), 3);
  await f.remote.writeAll(new Uint8Array([4, 5]));
  assert.equal(await f.client.read(buf), 2);
  // ...and gave it back before waiting for more: an idle flow holds none.
  assert.ok(pool.created >= 1);
  assert.equal(pool.idle, pool.created, `${pool.created} created, ${pool.idle} idle`);
  f.client.shutdownWrite();
  f.remote.shutdownWrite();
  const res = await done;
  assert.equal(res.reason, "eof");
  assert.deepEqual([res.up, res.down], [3, 2]);
  pool.drain();
  f.client.close();
  f.remote.close();
  front.close();
  back.close();
  await defaultReactor().idle();
});

Deno.test("relay() ends flows of one idle timeout on a shared sweep, each after its own silence", async () => {
  const front = new TestServer();
  const back = new TestServer();
  const f1 = await flow(front, back);
  const f2 = await flow(front, back);
  const d1 = relay(f1.a, f1.b, { idleTimeoutMs: 300 });
  const d2 = relay(f2.a, f2.b, { idleTimeoutMs: 300 });
  // Keep flow 2 busy for a while: it must outlive the quiet flow 1.
  let busy = true;
  const pinger = (async () => {
    const buf = new Uint8Array(4);
    while (busy) {
      await f2.client.writeAll(new Uint8Array([9]));
      await f2.remote.read(buf);
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  const r1 = await d1;
  assert.equal(r1.reason, "idle");
  assert.ok(!f2.a.closed, "the busy flow is still open when the quiet one went idle");
  busy = false;
  await pinger;
  const r2 = await d2;
  assert.equal(r2.reason, "idle");
  for (const f of [f1, f2]) {
    f.client.close();
    f.remote.close();
  }
  front.close();
  back.close();
  await defaultReactor().idle();
});
