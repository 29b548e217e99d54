import assert from "node:assert/strict";
import { buildCmsgs, parseCmsgs } from "../ffi/cmsg.ts";
import {
  DEFAULT_TPROXY_MARK,
  dscpFromCmsgs,
  dscpFromTos,
  findTos,
  markForRules,
} from "./flow_marks.ts";

Deno.test("markForRules() strips the TPROXY bit and keeps the box's mark bits", () => {
  assert.equal(DEFAULT_TPROXY_MARK, 1);
  assert.equal(markForRules(0x101), 0x100);
  assert.equal(markForRules(0x1), 0);
  assert.equal(markForRules(0x100), 0x100, "a mark without the bit is unchanged");
  assert.equal(markForRules(0x80000101, 0x1), 0x80000100, "stays unsigned");
  assert.equal(markForRules(0xff01, 0xff), 0xff00, "a wider TPROXY mask");
});

Deno.test("markForRules() keeps an unknown mark unknown", () => {
  assert.equal(markForRules(undefined), undefined);
  assert.equal(markForRules(null, 0x1), undefined);
});

Deno.test("dscpFromTos() takes the upper six bits (ECN ignored)", () => {
  assert.equal(dscpFromTos(0xb8), 46, "EF");
  assert.equal(dscpFromTos(0xbb), 46, "ECN bits do not matter");
  assert.equal(dscpFromTos(0x20), 8, "CS1");
  assert.equal(dscpFromTos(0), 0);
  assert.equal(dscpFromTos(0xff), 63);
});

function intLE(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setInt32(0, n, true);
  return b;
}

Deno.test("findTos() reads IP_TOS (1 byte) and IPV6_TCLASS (an int) cmsgs", () => {
  const v4 = parseCmsgs(buildCmsgs([
    { level: 0, type: 20, data: new Uint8Array(16) }, // IP_ORIGDSTADDR first
    { level: 0, type: 1, data: Uint8Array.of(0xb8) },
  ]));
  assert.equal(findTos(v4), 0xb8);
  assert.equal(dscpFromCmsgs(v4), 46);
  const v6 = parseCmsgs(buildCmsgs([{ level: 41, type: 67, data: intLE(0x20) }]));
  assert.equal(findTos(v6), 0x20);
  assert.equal(dscpFromCmsgs(v6), 8);
});

Deno.test("findTos() is null when no TOS cmsg (or a truncated one) is present", () => {
  assert.equal(findTos([]), null);
  assert.equal(dscpFromCmsgs([]), undefined);
  const mark = parseCmsgs(buildCmsgs([{ level: 1, type: 36, data: intLE(0x101) }]));
  assert.equal(findTos(mark), null);
  assert.equal(findTos([{ level: 41, type: 67, data: Uint8Array.of(1, 2) }]), null);
});
