import assert from "node:assert/strict";
import { fixtureBytes } from "./_test_util.ts";
import { type PeekSource, type SniffClock, sniffStream, sniffTcpBytes } from "./sniff.ts";

/** A clock whose time moves only when the test says so. */
class FakeClock implements SniffClock {
  t = 1000;
  #timers = new Map<number, { at: number; fn: () => void }>();
  #next = 1;
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.#next++;
    this.#timers.set(id, { at: this.t + ms, fn });
    return id;
  }
  clearTimeout(id: unknown): void {
    this.#timers.delete(id as number);
  }
  get pending(): number {
    return this.#timers.size;
  }
  advance(ms: number): void {
    this.t += ms;
    for (const [id, tm] of [...this.#timers]) {
      if (tm.at <= this.t) {
        this.#timers.delete(id);
        tm.fn();
      }
    }
  }
}

/** A source whose peeks are answered by the test, one at a time. */
class FakeSource implements PeekSource {
  calls = 0;
  peekNow?: () => Uint8Array | null;
  #waiters: ((v: Uint8Array | null) => void)[] = [];
  #rejecters: ((e: Error) => void)[] = [];
  peek(): Promise<Uint8Array | null> {
    this.calls++;
    return new Promise((resolve, reject) => {
      this.#waiters.push(resolve);
      this.#rejecters.push(reject);
    });
  }
  give(v: Uint8Array | null): void {
    this.#rejecters.shift();
    this.#waiters.shift()!(v);
  }
  fail(e: Error): void {
    this.#waiters.shift();
    this.#rejecters.shift()!(e);
  }
}

/** Lets queued promise callbacks run. */
const tick = () => new Promise((r) => setTimeout(r, 0));
const enc = new TextEncoder();

Deno.test("sniffStream() finds the SNI of a ClientHello arriving in two segments", async () => {
  const clock = new FakeClock();
  const src = new FakeSource();
  const hello = fixtureBytes("tls", "chromium.bin");
  const p = sniffStream(src, { maxBytes: 16384, timeoutMs: 300, clock });
  await tick();
  clock.advance(5);
  src.give(hello.subarray(0, 700));
  await tick();
  clock.advance(7);
  src.give(hello);
  assert.deepEqual(await p, {
    status: "found",
    protocol: "tls",
    domain: "www.example.org",
    waitedMs: 12,
  });
  assert.equal(src.calls, 2);
  assert.equal(clock.pending, 0, "timer cleared");
});

Deno.test("sniffStream() gives up after timeoutMs when the client sends nothing (server speaks first)", async () => {
  const clock = new FakeClock();
  const src = new FakeSource();
  const p = sniffStream(src, { maxBytes: 4096, timeoutMs: 300, clock });
  await tick();
  clock.advance(299);
  await tick();
  clock.advance(1);
  assert.deepEqual(await p, { status: "need_more", waitedMs: 300 });
});

Deno.test("sniffStream() still sniffs bytes that arrived just as the timer fired", async () => {
  // A stalled process sees the timer and the data at once; the timer's
  // callback may run first. The last look at the buffer must not lose them.
  const clock = new FakeClock();
  const src = new FakeSource();
  let buffered: Uint8Array | null = null;
  src.peekNow = () => buffered;
  const p = sniffStream(src, { maxBytes: 4096, timeoutMs: 300, clock });
  await tick();
  buffered = enc.encode("GET / HTTP/1.1\r\nHost: late.example\r\n\r\n");
  clock.advance(300);
  const r = await p;
  assert.equal(r.status, "found");
  assert.equal(r.status === "found" && r.domain, "late.example");

  // Aborting is not a timeout: no last look.
  const ac = new AbortController();
  const q = sniffStream(src, { maxBytes: 4096, timeoutMs: 300, clock, signal: ac.signal });
  await tick();
  ac.abort();
  assert.equal((await q).status, "need_more");

  // Without new bytes the timeout stands.
  buffered = null;
  const t = sniffStream(src, { maxBytes: 4096, timeoutMs: 300, clock });
  await tick();
  clock.advance(300);
  assert.deepEqual(await t, { status: "need_more", waitedMs: 300 });
});

Deno.test("sniffStream() answers not_this at once for a client-first non-TLS, non-HTTP protocol", async () => {
  const clock = new FakeClock();
  const src = new FakeSource();
  const p = sniffStream(src, { maxBytes: 4096, timeoutMs: 300, clock });
  await tick();
  src.give(enc.encode("SSH-2.0-OpenSSH_9.2p1\r\n"));
  assert.deepEqual(await p, { status: "not_this", waitedMs: 0 });
});

Deno.test("sniffStream() finds HTTP Host", async () => {
  const src = new FakeSource();
  const p = sniffStream(src, { maxBytes: 4096, timeoutMs: 300, clock: new FakeClock() });
  await tick();
  src.give(fixtureBytes("http", "curl_get.bin"));
  assert.deepEqual(await p, {
    status: "found",
    protocol: "http",
    domain: "www.example.org",
    waitedMs: 0,
  });
});

Deno.test("sniffStream() stops at maxBytes", async () => {
  const src = new FakeSource();
  const p = sniffStream(src, { maxBytes: 64, timeoutMs: 300, clock: new FakeClock() });
  await tick();
  src.give(
    enc.encode("GET / HTTP/1.1\r\nX-Pad: " + "a".repeat(100) + "\r\nHost: late.example\r\n\r\n"),
  );
  assert.deepEqual(await p, { status: "need_more", waitedMs: 0 });
  assert.equal(src.calls, 1);
});

Deno.test("sniffStream() ends at EOF and on abort", async () => {
  const src = new FakeSource();
  const p = sniffStream(src, { maxBytes: 64, timeoutMs: 300, clock: new FakeClock() });
  await tick();
  src.give(new Uint8Array([0x16]));
  await tick();
  src.give(null);
  assert.equal((await p).status, "need_more");

  const ac = new AbortController();
  const q = sniffStream(new FakeSource(), {
    maxBytes: 64,
    timeoutMs: 300,
    clock: new FakeClock(),
    signal: ac.signal,
  });
  ac.abort();
  assert.equal((await q).status, "need_more");
  const pre = await sniffStream(new FakeSource(), {
    maxBytes: 64,
    timeoutMs: 300,
    signal: AbortSignal.abort(),
  });
  assert.equal(pre.status, "need_more");
});

Deno.test("sniffStream() rejects when peek() rejects", async () => {
  const src = new FakeSource();
  const p = sniffStream(src, { maxBytes: 64, timeoutMs: 300, clock: new FakeClock() });
  await tick();
  src.fail(new Error("ECONNRESET"));
  await assert.rejects(p, /ECONNRESET/);
});

Deno.test("sniffStream() does not spin on a source that returns without new bytes", async () => {
  let calls = 0;
  const src: PeekSource = {
    peek: () => {
      calls++;
      return Promise.resolve(new Uint8Array([0x16, 0x03]));
    },
  };
  const r = await sniffStream(src, { maxBytes: 64, timeoutMs: 300, clock: new FakeClock() });
  assert.equal(r.status, "need_more");
  assert.ok(calls <= 3, `${calls} calls`);
});

Deno.test("sniffStream() works with the real clock", async () => {
  const src: PeekSource = { peek: () => new Promise(() => {}) };
  const r = await sniffStream(src, { maxBytes: 64, timeoutMs: 20 });
  assert.equal(r.status, "need_more");
  assert.ok(r.waitedMs >= 0);
});

Deno.test("sniffTcpBytes() needs both sniffers to refuse before saying not_this", () => {
  assert.deepEqual(sniffTcpBytes(enc.encode("G")), { status: "need_more" });
  assert.deepEqual(sniffTcpBytes(new Uint8Array([0x16])), { status: "need_more" });
  assert.deepEqual(sniffTcpBytes(enc.encode("X")), { status: "not_this" });
});
