import assert from "node:assert/strict";
import { buildCmsgs, cmsgSpace, findMark, findOrigDst, parseCmsgs } from "./cmsg.ts";
import { encodeSockaddr } from "./sockaddr.ts";
import { parseIp } from "../core/ip.ts";

Deno.test("buildCmsgs() writes cmsg_len, level, type and pads to 8 bytes", () => {
  const b = buildCmsgs([{ level: 0, type: 1, data: new Uint8Array([0xb8]) }]);
  assert.equal(b.length, cmsgSpace(1));
  assert.equal(b.length, 24);
  assert.deepEqual([...b.subarray(0, 17)], [17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0xb8]);
});

Deno.test("parseCmsgs() reads back several messages built by buildCmsgs()", () => {
  const sa = encodeSockaddr({ addr: parseIp("198.51.100.9")!, port: 53 });
  const mark = new Uint8Array(new Uint32Array([0x1234]).buffer);
  const b = buildCmsgs([
    { level: 0, type: 20, data: sa },
    { level: 1, type: 36, data: mark },
    { level: 0, type: 1, data: new Uint8Array([4]) },
  ]);
  const msgs = parseCmsgs(b);
  assert.equal(msgs.length, 3);
  assert.deepEqual(msgs.map((m) => [m.level, m.type, m.data.length]), [[0, 20, 16], [1, 36, 4], [
    0,
    1,
    1,
  ]]);
  assert.deepEqual(findOrigDst(msgs), { addr: parseIp("198.51.100.9")!, port: 53 });
  assert.equal(findMark(msgs), 0x1234);
});

Deno.test("findOrigDst() reads IPV6_ORIGDSTADDR (level 41, type 74)", () => {
  const sa = encodeSockaddr({ addr: parseIp("2001:db8::53")!, port: 5353 });
  const msgs = parseCmsgs(buildCmsgs([{ level: 41, type: 74, data: sa }]));
  assert.deepEqual(findOrigDst(msgs), { addr: parseIp("2001:db8::53")!, port: 5353 });
  assert.equal(findOrigDst([]), null);
  assert.equal(findMark(msgs), null);
});

Deno.test("parseCmsgs() stops at a truncated or malformed header", () => {
  const b = buildCmsgs([{ level: 0, type: 20, data: new Uint8Array(16) }]);
  assert.equal(parseCmsgs(b, 20).length, 0); // header says 32 bytes, only 20 there
  const bad = new Uint8Array(16); // cmsg_len 0 < header size
  assert.equal(parseCmsgs(bad).length, 0);
  assert.equal(parseCmsgs(b, b.length).length, 1);
});
