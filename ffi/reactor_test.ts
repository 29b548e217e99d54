import assert from "node:assert/strict";
import { ClosedError } from "./errno.ts";
import { defaultReactor, Reactor } from "./reactor.ts";
import { LOOP4, pair, TestServer } from "./_test_util.ts";
import { AF_INET } from "./sockaddr.ts";
import {
  bind,
  close,
  connect,
  getsockname,
  recv,
  send,
  SOCK_DGRAM,
  socket,
  WOULD_BLOCK,
} from "./socket.ts";

Deno.test("Reactor.readable() resolves when the peer writes", async () => {
  const reactor = new Reactor();
  const server = new TestServer(undefined, reactor);
  const [c, s] = await pair(server);
  const buf = new Uint8Array(8);
  assert.equal(s.tryRead(buf), -1);
  const ready = reactor.readable(s.fd);
  await c.writeAll(new Uint8Array([1, 2, 3]));
  await ready;
  assert.equal(s.tryRead(buf), 3);
  c.close();
  s.close();
  server.close();
  reactor.close();
  await reactor.idle();
});

Deno.test("Reactor.unregister() rejects a pending wait with ClosedError", async () => {
  const reactor = new Reactor();
  const server = new TestServer(undefined, reactor);
  const [c, s] = await pair(server);
  const p = reactor.readable(s.fd);
  await new Promise((r) => setTimeout(r, 5)); // let the loop park
  s.close();
  await assert.rejects(p, ClosedError);
  await reactor.idle();
  assert.equal(reactor.stats().waiters, 0);
  assert.ok(reactor.stats().wakeups >= 1, "the parked epoll_wait was woken by the eventfd");
  c.close();
  server.close();
  reactor.close();
});

Deno.test("Reactor.close() rejects every waiter and wakes the parked poll", async () => {
  const reactor = new Reactor();
  const server = new TestServer(undefined, reactor);
  const [c, s] = await pair(server);
  const waits = [reactor.readable(s.fd), reactor.readable(c.fd), reactor.writable(s.fd)];
  waits[2]!.catch(() => {}); // may resolve (writable): readiness can be reported early
  await new Promise((r) => setTimeout(r, 5));
  assert.ok(reactor.stats().waiters >= 2);
  reactor.close();
  for (const w of waits.slice(0, 2)) await assert.rejects(w, ClosedError);
  await reactor.idle();
  assert.throws(() => reactor.register(99999), ClosedError);
  // Owners still close their fds; unregister on a closed reactor is a no-op.
  c.close();
  s.close();
  server.close();
});

Deno.test("Reactor.cancel() rejects the wait with the given reason", async () => {
  const reactor = new Reactor();
  const server = new TestServer(undefined, reactor);
  const [c, s] = await pair(server);
  const p = reactor.readable(s.fd);
  const reason = new Error("stop");
  assert.equal(reactor.cancel(s.fd, "read", reason), true);
  await assert.rejects(p, (e) => e === reason);
  assert.equal(reactor.cancel(s.fd, "read", reason), false);
  c.close();
  s.close();
  server.close();
  reactor.close();
  await reactor.idle();
});

Deno.test("Reactor keeps timers running under sustained traffic", async () => {
  const reactor = defaultReactor();
  const server = new TestServer();
  const [c, s] = await pair(server);
  let fired = false;
  setTimeout(() => fired = true, 0);
  const echo = (async () => {
    const b = new Uint8Array(16);
    for (;;) {
      const n = await s.read(b);
      if (n === 0) return;
      await s.writeAll(b.subarray(0, n));
    }
  })();
  const b = new Uint8Array(16);
  let roundTrips = 0;
  for (let i = 0; i < 20_000 && !fired; i++) {
    await c.writeAll(b.subarray(0, 1));
    await c.read(b);
    roundTrips++;
  }
  assert.ok(fired, `timer starved for ${roundTrips} round trips`);
  c.shutdownWrite();
  await echo;
  c.close();
  s.close();
  server.close();
  await reactor.idle();
});

Deno.test("a process whose reactor has nothing to wait for exits by itself", async () => {
  const script = `
    import { pair, TestServer } from ${
    JSON.stringify(new URL("./_test_util.ts", import.meta.url).href)
  };
    const server = new TestServer();
    const [c, s] = await pair(server);
    const p = s.read(new Uint8Array(4));
    await c.writeAll(new Uint8Array([7]));
    console.log(await p);
    c.close(); s.close(); server.close();
  `;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", "--quiet", script],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const killer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  const out = await child.output();
  clearTimeout(killer);
  assert.equal(new TextDecoder().decode(out.stderr), "");
  assert.equal(out.code, 0, "exited normally (not killed by the 20 s guard)");
  assert.equal(new TextDecoder().decode(out.stdout).trim(), "1");
});

/** Two loopback UDP sockets, each connected to the other. */
function udpPair(): [number, number] {
  const a = socket(AF_INET, SOCK_DGRAM), b = socket(AF_INET, SOCK_DGRAM);
  bind(a, { addr: LOOP4, port: 0 });
  bind(b, { addr: LOOP4, port: 0 });
  connect(a, getsockname(b));
  connect(b, getsockname(a));
  return [a, b];
}

/** Polls of any kind the reactor made. */
function polls(r: Reactor): number {
  const s = r.stats();
  return s.syncPolls + s.blockPolls + s.parkedPolls;
}

Deno.test("Reactor oneshot: datagrams nobody waits for cost no polls; a wait on a ready fd returns", async () => {
  const counts: Record<string, number> = {};
  for (const oneshot of [false, true]) {
    const reactor = new Reactor();
    const [a, sender] = udpPair();
    const [w, wPeer] = udpPair();
    reactor.register(a, { oneshot });
    reactor.register(w, { oneshot: true });
    const never = reactor.readable(w); // keeps the loop running
    never.catch(() => {});
    const one = new Uint8Array(1);
    try {
      await new Promise((r) => setTimeout(r, 10));
      const before = polls(reactor);
      for (let round = 0; round < 40; round++) {
        send(sender, one);
        await new Promise((r) => setTimeout(r, 2));
      }
      counts[String(oneshot)] = polls(reactor) - before;
      // Whatever came before, a wait now returns: the data is there.
      await reactor.readable(a);
      let got = 0;
      while (recv(a, one) !== WOULD_BLOCK) got++;
      assert.equal(got, 40);
    } finally {
      reactor.close();
      for (const fd of [a, sender, w, wPeer]) close(fd);
    }
    await reactor.idle();
  }
  // Edge-triggered, each of the 40 rounds wakes the loop; oneshot, none does.
  assert.ok(counts["false"]! >= 20, `edge-triggered: ${counts["false"]} polls`);
  assert.ok(counts["true"]! <= 5, `oneshot: ${counts["true"]} polls`);
});

Deno.test("Reactor oneshot: read and write waits on one fd each resolve, the other stays armed", async () => {
  const reactor = new Reactor();
  const [a, b] = udpPair();
  reactor.register(a, { oneshot: true });
  const one = new Uint8Array(1);
  try {
    const rd = reactor.readable(a);
    await reactor.writable(a); // a UDP socket is writable: resolves, a stays armed for reading
    let rdDone = false;
    void rd.then(() => rdDone = true);
    await new Promise((r) => setTimeout(r, 10));
    assert.equal(rdDone, false);
    send(b, one);
    await rd;
    assert.equal(recv(a, one), 1);
  } finally {
    reactor.close();
    close(a);
    close(b);
  }
  await reactor.idle();
});

Deno.test("Reactor: a promise chain woken by an event reaches its next I/O before the loop blocks", async () => {
  for (const spinTurns of [undefined, 4]) {
    const reactor = new Reactor(spinTurns === undefined ? {} : { spinTurns });
    const [a, peer] = udpPair();
    const [w, wPeer] = udpPair();
    reactor.register(a);
    reactor.register(w, { oneshot: true });
    const never = reactor.readable(w); // keeps the loop running after a's waiter is settled
    never.catch(() => {});
    try {
      await new Promise((r) => setTimeout(r, 10)); // the loop is parked
      const woke = reactor.readable(a);
      send(peer, new Uint8Array(1));
      await woke;
      // What a new connection does between its first bytes and its dial:
      // about ten hops of plain promise chain (sniff, rules, outbound).
      const before = reactor.stats().blocks;
      for (let i = 0; i < 10; i++) await undefined;
      const blockedMeanwhile = reactor.stats().blocks - before;
      if (spinTurns === undefined) {
        assert.equal(blockedMeanwhile, 0, "the default turns outlast the chain");
      } else {
        assert.ok(blockedMeanwhile > 0, "with 4 turns the loop blocks mid-chain (the old default)");
      }
    } finally {
      reactor.close();
      for (const fd of [a, peer, w, wPeer]) close(fd);
    }
    await reactor.idle();
  }
});
