// The socket tests need root (raw sockets, IP_TRANSPARENT). Traffic stays on
// loopback. End to end through the router: tests/netns/router_udp_block_test.ts.
import assert from "node:assert/strict";
import type { Endpoint } from "../core/types.ts";
import { LOOP4, LOOP6 } from "./_test_util.ts";
import { parseCmsgs } from "./cmsg.ts";
import {
  IcmpRefuser,
  type IcmpSocketOps,
  IP_PKTINFO,
  IPV6_PKTINFO,
  openIcmpSocket,
  pktinfoCmsg,
} from "./icmp.ts";
import { buildUdpPacket, portUnreachable } from "./icmp_packet.ts";
import { familyOf } from "./sockaddr.ts";
import {
  AF_INET,
  AF_INET6,
  bind,
  close,
  connect,
  getsockname,
  recv,
  sendMsg,
  SOCK_DGRAM,
  socket,
  WOULD_BLOCK,
} from "./socket.ts";

interface Sent {
  fd: number;
  msg: Uint8Array;
  to: Uint8Array;
  source: Uint8Array;
}

class FakeOps implements IcmpSocketOps {
  sent: Sent[] = [];
  opened: { family: number; mark: number }[] = [];
  closed: number[] = [];
  failOpen = false;
  #next = 100;
  open(family: number, mark: number): number {
    if (this.failOpen) throw new Error("EPERM");
    this.opened.push({ family, mark });
    return this.#next++;
  }
  send(fd: number, msg: Uint8Array, to: Uint8Array, source: Uint8Array): boolean {
    this.sent.push({ fd, msg, to, source });
    return true;
  }
  close(fd: number): void {
    this.closed.push(fd);
  }
}

const CLIENT: Endpoint = { addr: Uint8Array.of(10, 0, 0, 2), port: 40000 };
const DST: Endpoint = { addr: Uint8Array.of(192, 0, 2, 1), port: 53 };
const holder = () => ({ refusedAt: -Infinity });

Deno.test("IcmpRefuser sends the port-unreachable message from the original destination to the client", () => {
  const ops = new FakeOps();
  const r = new IcmpRefuser({ ops, mark: 255, now: () => 0 });
  const payload = new TextEncoder().encode("query");
  assert.equal(r.refuse(CLIENT, DST, payload, holder(), 0x20), "sent");
  assert.equal(ops.sent.length, 1);
  const s = ops.sent[0]!;
  assert.deepEqual(s.to, CLIENT.addr);
  assert.deepEqual(s.source, DST.addr);
  assert.deepEqual(s.msg, portUnreachable(CLIENT, DST, payload, { tos: 0x20 }));
  assert.deepEqual(ops.opened, [{ family: AF_INET, mark: 255 }]);
  assert.deepEqual(r.counters(), { sent: 1, rateLimited: 0, errors: 0 });
  r.close();
  assert.deepEqual(ops.closed, [100]);
  assert.equal(r.refuse(CLIENT, DST, payload, holder()), "error", "closed");
});

Deno.test("IcmpRefuser refuses one session at most once per perSessionMs", () => {
  const ops = new FakeOps();
  let t = 0;
  const r = new IcmpRefuser({ ops, now: () => t });
  const s = holder();
  const p = new Uint8Array(1);
  assert.equal(r.refuse(CLIENT, DST, p, s), "sent");
  t = 999;
  assert.equal(r.refuse(CLIENT, DST, p, s), "rate_limited");
  assert.equal(r.refuse(CLIENT, DST, p, holder()), "sent", "another session is not limited");
  t = 1000;
  assert.equal(r.refuse(CLIENT, DST, p, s), "sent");
  assert.deepEqual(r.counters(), { sent: 3, rateLimited: 1, errors: 0 });
});

Deno.test("IcmpRefuser's token bucket allows `burst` at once, then `ratePerSecond`", () => {
  const ops = new FakeOps();
  let t = 0;
  const r = new IcmpRefuser({ ops, now: () => t, ratePerSecond: 100, burst: 3 });
  const p = new Uint8Array(1);
  const results = Array.from({ length: 5 }, () => r.refuse(CLIENT, DST, p, holder()));
  assert.deepEqual(results, ["sent", "sent", "sent", "rate_limited", "rate_limited"]);
  t = 5; // half a token
  assert.equal(r.refuse(CLIENT, DST, p, holder()), "rate_limited");
  t = 10; // one token
  assert.equal(r.refuse(CLIENT, DST, p, holder()), "sent");
  assert.equal(r.refuse(CLIENT, DST, p, holder()), "rate_limited");
  t = 10_000; // refill stops at burst
  const later = Array.from({ length: 4 }, () => r.refuse(CLIENT, DST, p, holder()));
  assert.deepEqual(later, ["sent", "sent", "sent", "rate_limited"]);
  assert.equal(ops.sent.length, 7);
  // A limited refusal does not use up the session's once-a-second slot.
  const s = holder();
  assert.equal(r.refuse(CLIENT, DST, p, s), "rate_limited");
  t += 10;
  assert.equal(r.refuse(CLIENT, DST, p, s), "sent");
});

Deno.test("IcmpRefuser counts a socket that cannot open and retries it after a minute", () => {
  const ops = new FakeOps();
  ops.failOpen = true;
  let t = 0;
  const r = new IcmpRefuser({ ops, now: () => t, ratePerSecond: 1000 });
  const p = new Uint8Array(1);
  assert.equal(r.refuse(CLIENT, DST, p, holder()), "error");
  assert.match(String(r.lastError), /EPERM/);
  ops.failOpen = false;
  t = 59_000;
  assert.equal(r.refuse(CLIENT, DST, p, holder()), "error", "not retried yet");
  t = 60_000;
  assert.equal(r.refuse(CLIENT, DST, p, holder()), "sent");
  assert.deepEqual(r.counters(), { sent: 1, rateLimited: 0, errors: 2 });
});

Deno.test("IcmpRefuser reports a bad pair as an error instead of throwing, and setMark() reopens sockets", () => {
  const ops = new FakeOps();
  const r = new IcmpRefuser({ ops, now: () => 0, mark: 1 });
  const v6: Endpoint = { addr: new Uint8Array(16), port: 1 };
  assert.equal(r.refuse(CLIENT, v6, new Uint8Array(1), holder()), "error");
  assert.match(String(r.lastError), /4-byte to a 16-byte/);
  assert.equal(r.refuse(CLIENT, DST, new Uint8Array(1), holder()), "sent");
  r.setMark(1);
  assert.deepEqual(ops.closed, [], "same mark: kept");
  r.setMark(2);
  assert.deepEqual(ops.closed, [100]);
  assert.equal(r.refuse(CLIENT, DST, new Uint8Array(1), holder()), "sent");
  assert.deepEqual(ops.opened.map((o) => o.mark), [1, 2]);
});

Deno.test("IcmpRefuser rejects bad limits", () => {
  assert.throws(() => new IcmpRefuser({ ratePerSecond: 0 }), /ratePerSecond 0/);
  assert.throws(() => new IcmpRefuser({ burst: 0.5 }), /burst 0.5/);
  assert.throws(() => new IcmpRefuser({ perSessionMs: -1 }), /perSessionMs -1/);
});

Deno.test("pktinfoCmsg() encodes in_pktinfo / in6_pktinfo with the source address", () => {
  const v4 = parseCmsgs(pktinfoCmsg(Uint8Array.of(192, 0, 2, 1)));
  assert.equal(v4.length, 1);
  assert.deepEqual([v4[0]!.level, v4[0]!.type], [0, IP_PKTINFO]);
  assert.deepEqual([...v4[0]!.data], [0, 0, 0, 0, 192, 0, 2, 1, 0, 0, 0, 0]);
  const a6 = new Uint8Array(16).fill(7);
  const v6 = parseCmsgs(pktinfoCmsg(a6));
  assert.deepEqual([v6[0]!.level, v6[0]!.type], [41, IPV6_PKTINFO]);
  assert.deepEqual(v6[0]!.data, Uint8Array.from([...a6, 0, 0, 0, 0]));
  assert.throws(() => pktinfoCmsg(new Uint8Array(5)), /5-byte/);
});

// ---------------------------------------------------------------- root, loopback

/** What a non-blocking recv on `fd` sees within `tries` × 10 ms: `data:N`, an errno code or "nothing". */
async function recvError(fd: number, tries = 100): Promise<string> {
  const buf = new Uint8Array(512);
  for (let i = 0; i < tries; i++) {
    try {
      const n = recv(fd, buf);
      if (n !== WOULD_BLOCK) return `data:${n}`;
    } catch (e) {
      return (e as { code?: string }).code ?? String(e);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  return "nothing";
}

for (const [name, lo] of [["IPv4", LOOP4], ["IPv6", LOOP6]] as const) {
  Deno.test(`IcmpRefuser makes a connected ${name} UDP socket fail with ECONNREFUSED; a mismatched port does not`, async () => {
    const fam = familyOf(lo);
    const c = socket(fam, SOCK_DGRAM);
    const other = socket(fam, SOCK_DGRAM);
    const r = new IcmpRefuser();
    try {
      bind(c, { addr: lo, port: 0 });
      bind(other, { addr: lo, port: 0 });
      // The "destination": a free port on loopback (nothing sent to it, so no
      // kernel ICMP); the socket is only connected.
      const dst: Endpoint = { addr: lo, port: getsockname(other).port };
      close(other);
      connect(c, dst);
      const me = getsockname(c);
      const wrong = { ...me, port: me.port === 65535 ? 1 : me.port + 1 };
      assert.equal(r.refuse(wrong, dst, new Uint8Array(10), { refusedAt: -Infinity }), "sent");
      assert.equal(await recvError(c, 20), "nothing", "an error quoting another port is ignored");
      assert.equal(r.refuse(me, dst, new Uint8Array(10), { refusedAt: -Infinity }), "sent");
      assert.equal(await recvError(c), "ECONNREFUSED");
    } finally {
      r.close();
      close(c);
    }
  });

  Deno.test(`buildUdpPacket() ${name} checksums pass the kernel's UDP receive check; a flipped byte fails it`, async () => {
    const rx = socket(familyOf(lo), SOCK_DGRAM);
    const raw = socket(familyOf(lo), 3, 255); // SOCK_RAW, IPPROTO_RAW: we write the IP header
    try {
      bind(rx, { addr: lo, port: 0 });
      const to = getsockname(rx);
      for (const size of [0, 1, 2, 333]) {
        const payload = crypto.getRandomValues(new Uint8Array(size));
        const pkt = buildUdpPacket({ addr: lo, port: 40000 + size }, to, payload);
        const bad = pkt.slice();
        bad[bad.length - 1 - (size === 0 ? 6 : 0)]! ^= 0x40; // last payload byte (or the source port)
        for (const [p, want] of [[bad, "nothing"], [pkt, `data:${size}`]] as const) {
          assert.equal(sendMsg(raw, p, { addr: lo, port: 0 }), p.length);
          assert.equal(
            await recvError(rx, p === bad ? 20 : 100),
            want,
            `${size} bytes, ${p === bad ? "corrupt" : "ok"}`,
          );
        }
      }
    } finally {
      close(raw);
      close(rx);
    }
  });
}

Deno.test("openIcmpSocket() opens a raw socket per family with a mark", () => {
  for (const fam of [AF_INET, AF_INET6]) {
    const fd = openIcmpSocket(fam, 255);
    assert.ok(fd >= 0);
    close(fd);
  }
});
