// Needs root (IP_TRANSPARENT, raw ICMP sockets). Traffic stays on loopback:
// datagrams sent straight to the inbound socket carry that socket's address
// as their original destination, so the refusal comes from it. Through the
// real router in namespaces: tests/netns/router_udp_block_test.ts.
import assert from "node:assert/strict";
import { IcmpRefuser, type IcmpSocketOps } from "../ffi/icmp.ts";
import { portUnreachable } from "../ffi/icmp_packet.ts";
import { close, getsockname, recv, send, WOULD_BLOCK } from "../ffi/socket.ts";
import { blockView, loopbackClient, openTestPlane, testInbound, until } from "./_udp_test_util.ts";

const enc = new TextEncoder();

/** What a non-blocking recv sees within `tries` × 10 ms: `data`, an errno code or "nothing". */
async function recvOutcome(fd: number, tries: number): Promise<string> {
  const buf = new Uint8Array(64);
  for (let i = 0; i < tries; i++) {
    try {
      if (recv(fd, buf) !== WOULD_BLOCK) return "data";
    } catch (e) {
      return (e as { code?: string }).code ?? String(e);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  return "nothing";
}

Deno.test("UdpPlane refuses a `reset` block session with ICMP: the client's connected socket gets ECONNREFUSED, once a second", async () => {
  // Sniffing on: the first datagram is held, then refused when the session is routed.
  const { plane, close: closePlane } = openTestPlane(testInbound(), blockView("reset"));
  const c = loopbackClient(plane.addresses[0]!);
  try {
    send(c, enc.encode("dns?"));
    assert.equal(await recvOutcome(c, 200), "ECONNREFUSED");
    // The same session again within a second: dropped without ICMP.
    send(c, enc.encode("again"));
    assert.equal(await recvOutcome(c, 20), "nothing");
    const st = plane.stats();
    assert.equal(st.refused, 1);
    assert.equal(st.refused_limited, 1);
    assert.equal(st.refused_errors, 0);
    assert.equal(st.dropped, 2);
  } finally {
    close(c);
    await closePlane();
  }
});

Deno.test("UdpPlane drops a `drop` block session's datagrams without ICMP", async () => {
  const { plane, close: closePlane } = openTestPlane(
    testInbound({ sniff: false }),
    blockView("drop"),
  );
  const c = loopbackClient(plane.addresses[0]!);
  try {
    send(c, enc.encode("x"));
    assert.equal(await recvOutcome(c, 30), "nothing");
    const st = plane.stats();
    assert.equal(st.dropped, 1);
    assert.deepEqual([st.refused, st.refused_limited, st.refused_errors], [0, 0, 0]);
  } finally {
    close(c);
    await closePlane();
  }
});

Deno.test("UdpPlane quotes the session's addresses and marks the raw socket with route.default_mark (reopened when it changes)", async () => {
  const sent: { msg: Uint8Array; to: Uint8Array; source: Uint8Array }[] = [];
  const opened: number[] = [];
  const ops: IcmpSocketOps = {
    open: (_family, mark) => (opened.push(mark), 1000 + opened.length),
    send: (_fd, msg, to, source) => (sent.push({ msg, to, source }), true),
    close: () => {},
  };
  const refuser = new IcmpRefuser({ ops });
  let mark = 255;
  const { plane, close: closePlane } = openTestPlane(
    testInbound({ sniff: false }),
    blockView("reset", { mark: () => mark }),
    refuser,
  );
  const c = loopbackClient(plane.addresses[0]!);
  const c2 = loopbackClient(plane.addresses[0]!);
  try {
    const payload = enc.encode("quoted payload");
    send(c, payload);
    await until(() => sent.length === 1, "the first refusal");
    const me = getsockname(c);
    const dst = plane.addresses[0]!;
    assert.deepEqual(sent[0]!.to, me.addr);
    assert.deepEqual(sent[0]!.source, dst.addr, "from the original destination");
    assert.deepEqual(sent[0]!.msg, portUnreachable(me, dst, payload));
    mark = 7; // a reload changed route.default_mark
    send(c2, payload);
    await until(() => sent.length === 2, "the second refusal");
    assert.deepEqual(opened, [255, 7]);
  } finally {
    close(c);
    close(c2);
    await closePlane();
    refuser.close();
  }
});
