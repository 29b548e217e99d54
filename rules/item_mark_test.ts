import assert from "node:assert/strict";
import { dscpMatches, markMatches } from "./item_mark.ts";

Deno.test("markMatches() compares the masked mark with the value", () => {
  const items = [{ value: 0x100, mask: 0xff00 }];
  assert.equal(markMatches(items, 0x100), true);
  assert.equal(markMatches(items, 0x1ff), true);
  assert.equal(markMatches(items, 0x200), false);
  assert.equal(markMatches([{ value: 0x80000000, mask: 0xffffffff }], 0x80000000), true);
});

Deno.test("markMatches() and dscpMatches() never match an unknown value", () => {
  assert.equal(markMatches([{ value: 0, mask: 0xffffffff }], undefined), false);
  assert.equal(dscpMatches([0], undefined), false);
  assert.equal(dscpMatches([46, 10], 46), true);
  assert.equal(dscpMatches([46], 45), false);
});
