// Needs root (IP_TRANSPARENT); traffic stays on loopback.
import assert from "node:assert/strict";
import { parseIp } from "../core/ip.ts";
import { LOOP4, LOOP6 } from "./_test_util.ts";
import {
  bind,
  close,
  getsockname,
  recv,
  setsockoptInt,
  SOCK_DGRAM,
  socket,
  SOL_SOCKET,
  WOULD_BLOCK,
} from "./socket.ts";
import { familyOf } from "./sockaddr.ts";
import {
  DatagramSender,
  openReplySocket,
  openTransparentUdp,
  openUdpUpstream,
  RecvBatch,
  SendBatch,
  sockaddrOf,
} from "./udp.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function plainUdp(addr: Uint8Array): number {
  const fd = socket(familyOf(addr), SOCK_DGRAM);
  bind(fd, { addr, port: 0 });
  return fd;
}

async function until<T>(f: () => T | null, what: string): Promise<T> {
  for (let i = 0; i < 200; i++) {
    const v = f();
    if (v !== null) return v;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`timed out waiting for ${what}`);
}

for (const [name, loop] of [["IPv4", LOOP4], ["IPv6", LOOP6]] as const) {
  Deno.test(`RecvBatch.receive() returns several datagrams with source and original destination (${name})`, async () => {
    const tp = openTransparentUdp({ addr: loop, port: 0 });
    const client = plainUdp(loop);
    const batch = new RecvBatch(4, 2048);
    try {
      const at = getsockname(tp);
      const sender = new DatagramSender();
      for (const text of ["one", "two", "three"]) {
        assert.equal(sender.sendTo(client, enc.encode(text), sockaddrOf(at)), text.length);
      }
      const n = await until(() => {
        const r = batch.receive(tp);
        return r === WOULD_BLOCK ? null : r;
      }, "datagrams");
      assert.equal(n, 3);
      const me = getsockname(client);
      for (const [i, text] of ["one", "two", "three"].entries()) {
        const d = batch.get(i);
        assert.equal(dec.decode(d.data), text);
        assert.deepEqual(d.source, me);
        assert.deepEqual(d.destination, at);
        assert.equal(d.truncated, false);
      }
      assert.equal(batch.receive(tp), WOULD_BLOCK);
    } finally {
      close(tp);
      close(client);
    }
  });
}

Deno.test("openReplySocket() binds a foreign address and the client sees replies from it", async () => {
  const client = plainUdp(LOOP4);
  const foreign = { addr: parseIp("192.0.2.53")!, port: 5353 };
  const r1 = openReplySocket(foreign);
  const r2 = openReplySocket(foreign); // SO_REUSEADDR: a second one may share it
  const batch = new RecvBatch(1, 2048);
  try {
    assert.deepEqual(getsockname(r1), foreign);
    new DatagramSender().sendTo(r1, enc.encode("hi"), sockaddrOf(getsockname(client)));
    // recvmmsg works on any UDP socket and reports the sender's address.
    const n = await until(() => {
      const r = batch.receive(client);
      return r === WOULD_BLOCK ? null : r;
    }, "reply");
    assert.equal(n, 1);
    assert.deepEqual(batch.get(0).source, foreign);
    assert.equal(dec.decode(batch.get(0).data), "hi");
  } finally {
    close(r1);
    close(r2);
    close(client);
  }
});

Deno.test("openUdpUpstream() connects: send() needs no address and only the peer's replies arrive", async () => {
  const server = plainUdp(LOOP4);
  const other = plainUdp(LOOP4);
  const up = openUdpUpstream(getsockname(server), { mark: 0 });
  const buf = new Uint8Array(64);
  try {
    const sender = new DatagramSender();
    sender.sendTo(up, enc.encode("x"), sockaddrOf(getsockname(server)));
    const n = await until(() => {
      const r = recv(server, buf);
      return r === WOULD_BLOCK ? null : r;
    }, "request");
    assert.equal(dec.decode(buf.subarray(0, n)), "x");
    sender.sendTo(other, enc.encode("stranger"), sockaddrOf(getsockname(up)));
    sender.sendTo(server, enc.encode("reply"), sockaddrOf(getsockname(up)));
    const m = await until(() => {
      const r = recv(up, buf);
      return r === WOULD_BLOCK ? null : r;
    }, "reply");
    assert.equal(dec.decode(buf.subarray(0, m)), "reply");
    assert.equal(recv(up, buf), WOULD_BLOCK, "the stranger's datagram was filtered");
  } finally {
    close(server);
    close(other);
    close(up);
  }
});

Deno.test("RecvBatch.flowKey() is the same for one (source, destination) pair and differs otherwise", async () => {
  const tp = openTransparentUdp({ addr: new Uint8Array(4), port: 0 });
  const c1 = plainUdp(LOOP4);
  const c2 = plainUdp(LOOP4);
  const batch = new RecvBatch(8, 256);
  try {
    const port = getsockname(tp).port;
    const to1 = sockaddrOf({ addr: LOOP4, port });
    const to2 = sockaddrOf({ addr: parseIp("127.0.0.2")!, port });
    const s = new DatagramSender();
    s.sendTo(c1, enc.encode("a"), to1);
    s.sendTo(c1, enc.encode("b"), to1);
    s.sendTo(c1, enc.encode("c"), to2);
    s.sendTo(c2, enc.encode("d"), to1);
    let got = 0;
    const keys: string[] = [];
    await until(() => {
      const n = batch.receive(tp);
      if (n === WOULD_BLOCK) return null;
      for (let i = 0; i < n; i++) {
        keys.push(batch.flowKey(i)!);
        assert.equal(batch.data(i).length, 1);
        assert.equal(batch.truncated(i), false);
      }
      got += n;
      return got >= 4 ? got : null;
    }, "four datagrams");
    assert.equal(keys[0], keys[1], "same pair, same key");
    assert.equal(new Set(keys).size, 3, "another destination or another source: another key");
  } finally {
    close(tp);
    close(c1);
    close(c2);
  }
});

/** Reads what is queued on `fd` (waiting up to ~1 s for `count` datagrams). */
async function readAll(fd: number, count: number): Promise<Uint8Array[]> {
  const got: Uint8Array[] = [];
  const buf = new Uint8Array(2048);
  await until(() => {
    for (;;) {
      const n = recv(fd, buf);
      if (n === WOULD_BLOCK) break;
      got.push(buf.slice(0, n));
    }
    return got.length >= count ? true : null;
  }, `${count} datagrams`);
  return got;
}

/** Datagram `i` of a test: `size` bytes, each `(i * 7 + j) & 0xff`. */
function datagram(i: number, size: number): Uint8Array {
  return Uint8Array.from({ length: size }, (_, j) => (i * 7 + j) & 0xff);
}

Deno.test("SendBatch.flush() sends datagrams of one size as one GSO send, the receiver sees each one", async () => {
  const server = plainUdp(LOOP4);
  const up = openUdpUpstream(getsockname(server), { mark: 0 });
  try {
    // Views into one buffer, as the router's are (slots of a receive batch).
    const slots = new Uint8Array(8 * 2048);
    const sizes = [1200, 1200, 1200, 1200, 1200, 1200, 1200, 300]; // the last may be shorter
    const batch = new SendBatch();
    for (const [i, size] of sizes.entries()) {
      slots.set(datagram(i, size), i * 2048);
      assert.ok(batch.add(slots.subarray(i * 2048, i * 2048 + size)));
    }
    assert.equal(batch.length, 8);
    assert.equal(batch.flush(up, null), 8);
    assert.equal(batch.gsoRefused, false);
    assert.equal(batch.sentBytes, 1200 * 7 + 300);
    assert.equal(batch.length, 0);
    const got = await readAll(server, 8);
    assert.deepEqual(got, sizes.map((size, i) => datagram(i, size)));
  } finally {
    close(server);
    close(up);
  }
});

Deno.test("SendBatch.flush() sends mixed sizes with sendmmsg, in order, and to an address when given", async () => {
  const server = plainUdp(LOOP6);
  const sender = plainUdp(LOOP6);
  try {
    const sizes = [10, 700, 0, 1, 1400, 64];
    const batch = new SendBatch(4);
    const sent: Uint8Array[] = [];
    const to = sockaddrOf(getsockname(server));
    let total = 0;
    for (const [i, size] of sizes.entries()) {
      const d = datagram(i, size);
      sent.push(d);
      if (!batch.add(d)) {
        // Full at its capacity: flush and go on (each datagram its own buffer here).
        total += batch.flush(sender, to);
        assert.ok(batch.add(d));
      }
    }
    assert.equal(batch.add(new Uint8Array(1)), true);
    batch.clear();
    for (const d of sent.slice(4)) batch.add(d);
    total += batch.flush(sender, to, false);
    assert.equal(total, sizes.length);
    assert.deepEqual(await readAll(server, sizes.length), sent);
  } finally {
    close(server);
    close(sender);
  }
});

Deno.test("SendBatch.flush() drops only the datagram an error is for (a pending ICMP refusal)", async () => {
  // A connected socket whose peer port is closed: the first send draws an
  // ICMP port unreachable, which a later call may report as ECONNREFUSED.
  const gone = plainUdp(LOOP4);
  const port = getsockname(gone);
  close(gone);
  const batch = new SendBatch();
  for (const gso of [false, true]) {
    const up = openUdpUpstream(port, { mark: 0 });
    try {
      batch.add(datagram(0, 10));
      assert.equal(batch.flush(up, null, gso), 1);
      await new Promise((r) => setTimeout(r, 20)); // the ICMP error arrives
      for (let i = 0; i < 3; i++) batch.add(datagram(i, 10));
      const sent = batch.flush(up, null, gso);
      assert.equal(batch.gsoRefused, false);
      if (!gso) {
        // sendmmsg: the first datagram draws the pending error; the other two go.
        assert.equal(sent, 2);
      } else {
        // The GSO send may report the error (then the one-by-one send loses one) or not.
        assert.ok(sent === 2 || sent === 3, `sent ${sent}`);
      }
    } finally {
      close(up);
    }
  }
});

Deno.test("SendBatch.flush(): a socket that refuses GSO gets the datagrams one by one and is reported", async () => {
  const server = plainUdp(LOOP4);
  const up = openUdpUpstream(getsockname(server), { mark: 0 });
  try {
    // SO_NO_CHECK (no UDP checksums): the kernel refuses GSO sends with EINVAL.
    setsockoptInt(up, SOL_SOCKET, 11, 1);
    const batch = new SendBatch();
    const sent = [0, 1, 2, 3].map((i) => datagram(i, 500));
    for (const d of sent) batch.add(d);
    assert.equal(batch.flush(up, null), 4);
    assert.equal(batch.gsoRefused, true);
    assert.equal(batch.gsoLimit, 0, "refused at 500 bytes: never again");
    assert.deepEqual(await readAll(server, 4), sent);
    // Told not to try GSO, the same socket sends without the refusal.
    for (const d of sent) batch.add(d);
    assert.equal(batch.flush(up, null, false), 4);
    assert.equal(batch.gsoRefused, false);
    assert.deepEqual(await readAll(server, 4), sent);
    // Refused for a segment above 1,280 bytes (as for one bigger than the path MTU):
    // segments below it may still try.
    const big = [0, 1, 2].map((i) => datagram(i, 1400));
    for (const d of big) batch.add(d);
    assert.equal(batch.flush(up, null), 3);
    assert.equal(batch.gsoRefused, true);
    assert.equal(batch.gsoLimit, 1399);
    assert.deepEqual(await readAll(server, 3), big);
    // With that limit, 1400-byte runs skip GSO (no refusal), 1300-byte ones try it.
    for (const d of big) batch.add(d);
    assert.equal(batch.flush(up, null, 1399), 3);
    assert.equal(batch.gsoRefused, false);
    assert.equal(batch.gsoLimit, Infinity);
    assert.deepEqual(await readAll(server, 3), big);
    const mid = [0, 1, 2].map((i) => datagram(i, 1300));
    for (const d of mid) batch.add(d);
    assert.equal(batch.flush(up, null, 1399), 3);
    assert.equal(batch.gsoRefused, true, "tried (and refused: checksums are still off)");
    assert.equal(batch.gsoLimit, 1299);
    assert.deepEqual(await readAll(server, 3), mid);
  } finally {
    close(server);
    close(up);
  }
});

Deno.test("SendBatch.add() with a prefix: each datagram is prefix + data, by GSO and by sendmmsg", async () => {
  const server = plainUdp(LOOP4);
  const up = openUdpUpstream(getsockname(server), { mark: 0 });
  try {
    const header = Uint8Array.from([0, 0, 0, 1, 10, 0, 0, 1, 0x1b, 0x58]); // a SOCKS5 UDP header
    const batch = new SendBatch();
    const rounds: [boolean, number[]][] = [[true, [300, 300, 300, 120]], [false, [5, 300, 0, 64]]];
    for (const [gso, sizes] of rounds) {
      const data = sizes.map((size, i) => datagram(i, size));
      for (const d of data) batch.add(d, header);
      assert.equal(batch.flush(up, null, gso), sizes.length);
      assert.equal(batch.sentBytes, sizes.reduce((t, n) => t + n + header.length, 0));
      const want = data.map((d) => Uint8Array.from([...header, ...d]));
      assert.deepEqual(await readAll(server, sizes.length), want);
    }
  } finally {
    close(server);
    close(up);
  }
});
