import assert from "node:assert/strict";
import type { Endpoint } from "../core/types.ts";
import { FakeStream } from "./_fake_stream.ts";
import {
  directVerdict,
  redialProbe,
  socksGreetingProbe,
  socksVerdict,
  tcpConnectProbe,
} from "./health_probe.ts";
import { Socks5UnavailableError } from "./socks5_pool.ts";
import { Socks5Error } from "./socks5_wire.ts";

const server: Endpoint = { addr: new Uint8Array([127, 0, 0, 1]), port: 1080 };
const ctx = () => ({ signal: new AbortController().signal, lastFailed: null });

function errno(code: string): Error {
  return Object.assign(new Error(`connect: ${code}`), { code, name: "ErrnoError" });
}

Deno.test("directVerdict() calls path errors and timeouts down, answers from a host up, aborts neutral", () => {
  for (const c of ["ENETUNREACH", "EHOSTUNREACH", "ETIMEDOUT", "ENODEV"]) {
    assert.equal(directVerdict(errno(c)), "down", c);
  }
  const timeout = Object.assign(new Error("connect timed out"), { name: "TimeoutError" });
  assert.equal(directVerdict(timeout), "down");
  assert.equal(directVerdict(errno("ECONNREFUSED")), "up");
  assert.equal(directVerdict(errno("ECONNRESET")), "up");
  assert.equal(directVerdict(new DOMException("aborted", "AbortError")), "neutral");
  assert.equal(directVerdict(new Error("something else")), "neutral");
});

Deno.test("socksVerdict() calls an unusable server down and a refused destination up", () => {
  assert.equal(
    socksVerdict(new Socks5Error("127.0.0.1:1080", "cannot connect: ECONNREFUSED")),
    "down",
  );
  assert.equal(socksVerdict(new Socks5Error("127.0.0.1:1080", "connection refused", 5)), "up");
  assert.equal(socksVerdict(new Socks5UnavailableError("SOCKS5 server down")), "down");
  assert.equal(
    socksVerdict(Object.assign(new Error("CONNECT timed out"), { name: "TimeoutError" })),
    "neutral",
  );
  assert.equal(socksVerdict(new DOMException("aborted", "AbortError")), "neutral");
});

Deno.test("socksGreetingProbe() greets the server without a CONNECT and closes", async () => {
  const s = new FakeStream([new Uint8Array([5, 0])]);
  let dialled: Endpoint | null = null;
  const probe = socksGreetingProbe({
    server,
    timeoutMs: 1000,
    connect: (dst) => {
      dialled = dst;
      return Promise.resolve(s);
    },
  });
  await probe(ctx());
  assert.equal(dialled, server);
  assert.deepEqual(s.writes, [new Uint8Array([5, 1, 0])], "only the greeting was sent");
  assert.equal(s.closed, true);
});

Deno.test("socksGreetingProbe() sends credentials when configured and fails on rejection", async () => {
  const s = new FakeStream([new Uint8Array([5, 2]), new Uint8Array([1, 1])]);
  const probe = socksGreetingProbe({
    server,
    auth: { username: "u", password: "p" },
    timeoutMs: 1000,
    connect: () => Promise.resolve(s),
  });
  await assert.rejects(probe(ctx()), (e) => e instanceof Socks5Error && /rejected/.test(e.message));
  assert.equal(s.writes.length, 2);
  assert.equal(s.closed, true);
});

Deno.test("socksGreetingProbe() reports a failed connect as an unusable server", async () => {
  const probe = socksGreetingProbe({
    server,
    timeoutMs: 1000,
    connect: () => Promise.reject(errno("ECONNREFUSED")),
  });
  await assert.rejects(probe(ctx()), (e) => {
    assert.ok(e instanceof Socks5Error);
    assert.equal(e.rep, null);
    assert.match(e.message, /127\.0\.0\.1:1080: cannot connect: connect: ECONNREFUSED/);
    return true;
  });
});

Deno.test("tcpConnectProbe() dials the target and closes; redialProbe() dials the last failure", async () => {
  const dialled: number[] = [];
  let closed = 0;
  const dial = (dst: Endpoint) => {
    dialled.push(dst.port);
    return Promise.resolve({ close: () => closed++ });
  };
  await tcpConnectProbe({ addr: new Uint8Array([10, 0, 0, 1]), port: 53 }, dial)(ctx());
  await redialProbe(dial)({ ...ctx(), lastFailed: { addr: new Uint8Array(4), port: 443 } });
  assert.deepEqual(dialled, [53, 443]);
  assert.equal(closed, 2);
  await assert.rejects(redialProbe(dial)(ctx()), /nothing to re-dial/);
});
