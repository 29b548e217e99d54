/**
 * The SOCKS5 client against real servers on loopback: Debian's `microsocks`
 * and `danted` (dante-server), through the FFI sockets of `ffi/stream.ts`.
 * Every wait is bounded; servers are killed in `finally`.
 */

import assert from "node:assert/strict";
import dgram from "node:dgram";
import type { Endpoint } from "../core/types.ts";
import { parseIp } from "../core/ip.ts";
import { connectTcp, type FdStream } from "../ffi/stream.ts";
import type { Outbound } from "../outbound/outbound.ts";
import {
  createSocks5Outbound,
  Socks5Error,
  type Socks5OutboundConfig,
  Socks5UnavailableError,
} from "../outbound/socks5.ts";
import {
  decodeUdpDatagram,
  encodeUdpDatagram,
  socks5UdpAssociate,
} from "../outbound/socks5_udp.ts";
import { danteArgv, danteConfig, microsocksArgv } from "./_peers.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const BANNER = "READY\n";
const V4 = parseIp("127.0.0.1")!;
const V6 = parseIp("::1")!;

/** Polls `cond` every 20 ms for at most `ms`. */
async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 5000) {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** TCP echo server on 127.0.0.1 and [::1] (same port); greets each client with BANNER. */
function startEcho(): { port: number; close: () => Promise<void> } {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = freePort();
    let l6: Deno.Listener | null = null;
    const l4 = Deno.listen({ hostname: "127.0.0.1", port });
    try {
      l6 = Deno.listen({ hostname: "::1", port });
    } catch {
      l4.close();
      continue;
    }
    const conns = new Set<Deno.Conn>();
    const serve = async (l: Deno.Listener) => {
      try {
        for await (const c of l) {
          conns.add(c);
          (async () => {
            try {
              await c.write(enc.encode(BANNER));
              const buf = new Uint8Array(16 * 1024);
              for (;;) {
                const n = await c.read(buf);
                if (n === null) break;
                await c.write(buf.subarray(0, n));
              }
            } catch { /* peer reset */ }
            conns.delete(c);
            try {
              c.close();
            } catch { /* closed */ }
          })();
        }
      } catch { /* listener closed */ }
    };
    const loops = [serve(l4), serve(l6)];
    return {
      port,
      close: async () => {
        l4.close();
        l6!.close();
        for (const c of conns) {
          try {
            c.close();
          } catch { /* closed */ }
        }
        await Promise.all(loops);
      },
    };
  }
  throw new Error("no port free on both 127.0.0.1 and ::1");
}

interface Server {
  port: number;
  stop: () => Promise<void>;
}

async function waitListening(port: number) {
  await until(`port ${port} listening`, async () => {
    try {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      c.close();
      return true;
    } catch {
      return false;
    }
  });
}

/** Runs `argv` (output discarded) and waits until `port` accepts connections. */
async function spawn(argv: string[], port: number): Promise<Server> {
  const [cmd, ...args] = argv;
  const child = new Deno.Command(cmd!, { args, stdout: "null", stderr: "null" }).spawn();
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    // SIGTERM lets danted's mother reap its children; SIGKILL if it lingers.
    try {
      child.kill("SIGTERM");
    } catch { /* already exited */ }
    const t = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* exited meanwhile */ }
    }, 2000);
    await child.status;
    clearTimeout(t);
  };
  try {
    await waitListening(port);
  } catch (e) {
    await stop();
    throw e;
  }
  return { port, stop };
}

function startMicrosocks(port = freePort(), auth?: [string, string]): Promise<Server> {
  return spawn(microsocksArgv(port, auth), port);
}

async function startDante(): Promise<Server & { dir: string }> {
  const port = freePort();
  const dir = await Deno.makeTempDir({ prefix: "danted-" });
  await Deno.writeTextFile(`${dir}/danted.conf`, danteConfig(port, ["127.0.0.1"]));
  const s = await spawn(danteArgv(`${dir}/danted.conf`, `${dir}/pid`), port);
  return {
    ...s,
    dir,
    stop: async () => {
      await s.stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

function config(port: number, extra: Partial<Socks5OutboundConfig> = {}): Socks5OutboundConfig {
  return {
    tag: "peer",
    kind: "socks",
    server: "127.0.0.1",
    serverPort: port,
    domainStrategy: "sniffed",
    connectTimeoutMs: 2000,
    ...extra,
  };
}

async function readN(s: FdStream, n: number): Promise<string> {
  const buf = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const r = await s.read(buf.subarray(got));
    if (r === 0) throw new Error(`EOF after ${got}/${n} bytes`);
    got += r;
  }
  return dec.decode(buf);
}

/** Expects the echo server's banner (sent right after connect, so it rides with the SOCKS reply), then an echo. */
async function assertEcho(s: FdStream, msg: string) {
  try {
    assert.equal(await readN(s, BANNER.length), BANNER);
    await s.writeAll(enc.encode(msg));
    assert.equal(await readN(s, msg.length), msg);
  } finally {
    s.close();
  }
}

const opts = { sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name: "SOCKS5 via microsocks: CONNECT by IPv4, IPv6 and domain reaches the echo server",
  ...opts,
  fn: async () => {
    const echo = startEcho();
    const ms = await startMicrosocks();
    const ob = createSocks5Outbound(config(ms.port));
    const asOutbound: Outbound = ob; // fits the router's Outbound interface
    try {
      await assertEcho(await asOutbound.dialTcp({ addr: V4, port: echo.port }, undefined), "v4");
      await assertEcho(await ob.dialTcp({ addr: V6, port: echo.port }, undefined), "v6");
      // A bogus IP with a sniffed domain: only the domain can reach the server.
      const bogus: Endpoint = { addr: parseIp("192.0.2.1")!, port: echo.port };
      await assertEcho(await ob.dialTcp(bogus, "localhost"), "domain");
      assert.equal(ob.stats().failures, 0);
    } finally {
      ob.close();
      await ms.stop();
      await echo.close();
    }
  },
});

Deno.test({
  name: "SOCKS5 via microsocks: username/password accepted, wrong or missing rejected",
  ...opts,
  fn: async () => {
    const echo = startEcho();
    const ms = await startMicrosocks(freePort(), ["alice", "s3cret"]);
    const dst = { addr: V4, port: echo.port };
    try {
      const good = createSocks5Outbound(config(ms.port, { username: "alice", password: "s3cret" }));
      await assertEcho(await good.dialTcp(dst, undefined), "auth");
      const bad = createSocks5Outbound(config(ms.port, { username: "alice", password: "nope" }));
      await assert.rejects(bad.dialTcp(dst, undefined), (e: unknown) => {
        assert.ok(e instanceof Socks5Error);
        assert.match(e.message, /username\/password rejected/);
        return true;
      });
      const none = createSocks5Outbound(config(ms.port));
      await assert.rejects(none.dialTcp(dst, undefined), /requires authentication/);
    } finally {
      await ms.stop();
      await echo.close();
    }
  },
});

Deno.test({
  name: "SOCKS5 via microsocks and dante: a refused destination maps to rep=5",
  ...opts,
  fn: async () => {
    const ms = await startMicrosocks();
    const dante = await startDante();
    const closed = { addr: V4, port: freePort() };
    try {
      for (const server of [ms, dante]) {
        const ob = createSocks5Outbound(config(server.port));
        await assert.rejects(ob.dialTcp(closed, undefined), (e: unknown) => {
          assert.ok(e instanceof Socks5Error, String(e));
          assert.equal(e.rep, 5);
          assert.equal(
            e.message,
            `SOCKS5 server 127.0.0.1:${server.port}: connection refused by destination (rep=5)`,
          );
          return true;
        });
      }
    } finally {
      await ms.stop();
      await dante.stop();
    }
  },
});

Deno.test({
  name: "SOCKS5 via dante: CONNECT by IPv4 reaches the echo server",
  ...opts,
  fn: async () => {
    const echo = startEcho();
    const dante = await startDante();
    const ob = createSocks5Outbound(config(dante.port));
    try {
      await assertEcho(await ob.dialTcp({ addr: V4, port: echo.port }, undefined), "dante");
    } finally {
      ob.close();
      await dante.stop();
      await echo.close();
    }
  },
});

Deno.test({
  name: "SOCKS5 pool: flows use warm connections, refill, fail fast while down, recover",
  ...opts,
  fn: async () => {
    const echo = startEcho();
    let ms = await startMicrosocks();
    const port = ms.port;
    const ob = createSocks5Outbound(config(port, { pool: { size: 4, maxIdleMs: 60_000 } }));
    const dst = { addr: V4, port: echo.port };
    try {
      await until("pool warm", () => ob.stats().pool!.idle === 4);
      for (let i = 0; i < 8; i++) {
        await assertEcho(await ob.dialTcp(dst, undefined), `flow-${i}`);
        await until("refill", () => ob.stats().pool!.idle === 4);
      }
      assert.equal(ob.stats().pool!.hits, 8);
      assert.equal(ob.stats().pool!.opened, 12);

      await ms.stop(); // idle pooled connections see EOF; new connects are refused
      await assert.rejects(ob.dialTcp(dst, undefined), (e: unknown) => {
        assert.ok(e instanceof Socks5Error, String(e));
        assert.match(e.message, /cannot connect: .*ECONNREFUSED/);
        return true;
      });
      assert.equal(ob.stats().pool!.state, "down");
      assert.ok(ob.stats().pool!.discarded >= 4);
      const t0 = performance.now();
      await assert.rejects(ob.dialTcp(dst, undefined), Socks5UnavailableError);
      assert.ok(performance.now() - t0 < 2000); // did not wait for a connect timeout
      assert.equal(ob.stats().pool!.failFast, 1);
      assert.equal(ob.health().state, "down");

      ms = await startMicrosocks(port);
      await until(
        "pool recovers",
        () => ob.stats().pool!.state === "up" && ob.stats().pool!.idle === 4,
        15_000,
      );
      await assertEcho(await ob.dialTcp(dst, undefined), "after-restart");
      assert.equal(ob.health().state, "up");
    } finally {
      ob.close();
      await ms.stop();
      await echo.close();
    }
  },
});

Deno.test({
  name: "SOCKS5 UDP ASSOCIATE via dante: a datagram round-trips to a UDP echo server",
  ...opts,
  fn: async () => {
    const dante = await startDante();
    const echoSock = dgram.createSocket("udp4");
    const client = dgram.createSocket("udp4");
    let control: FdStream | null = null;
    try {
      echoSock.on("message", (msg, rinfo) => echoSock.send(msg, rinfo.port, rinfo.address));
      await new Promise<void>((r) => echoSock.bind(0, "127.0.0.1", r));
      await new Promise<void>((r) => client.bind(0, "127.0.0.1", r));
      const echoPort = echoSock.address().port;
      const server = { addr: V4, port: dante.port };
      control = await connectTcp(server, { timeoutMs: 2000 });
      const assoc = await socks5UdpAssociate(control, {
        server,
        timeoutMs: 2000,
        clientHint: { addr: V4, port: client.address().port },
      }, `127.0.0.1:${dante.port}`);
      const reply = new Promise<Uint8Array>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error("no UDP reply within 3 s")), 3000);
        client.once("message", (msg) => {
          clearTimeout(t);
          resolve(new Uint8Array(msg));
        });
      });
      const packet = encodeUdpDatagram(
        { address: { kind: "ip", addr: V4 }, port: echoPort },
        enc.encode("udp-ping"),
      );
      client.send(packet, assoc.relay.port, "127.0.0.1");
      const got = decodeUdpDatagram(await reply);
      assert.ok(got.ok, JSON.stringify(got));
      assert.equal(dec.decode(got.data), "udp-ping");
      assert.deepEqual(got.source, { address: { kind: "ip", addr: V4 }, port: echoPort });
      assoc.close();
      await assoc.ended;
    } finally {
      control?.close();
      client.close();
      echoSock.close();
      await dante.stop();
    }
  },
});
