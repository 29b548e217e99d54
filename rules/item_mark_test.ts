import assert from "node:assert/strict";
import { dscpMatches, MarkIndex, markMatches } from "./item_mark.ts";
import { prng } from "../tests/_prng.ts";

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

Deno.test("MarkIndex.lookup() agrees with markMatches() on random values and masks, high bit included", () => {
  const rand = prng(11);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)]!;
  const masks = [0xffffffff, 0xff00, 0x80000000, 0x1ffff, 0xf, 0xffff0000];
  const values = [0, 1, 0x100, 0x200, 0x8000_0000, 0x8000_0100, 0xffff_ffff, 0x1_0100];
  for (const n of [0, 1, 5, 40, 300]) {
    const entries = Array.from({ length: n }, (_, node) => ({
      node,
      items: Array.from({ length: 1 + Math.floor(rand() * 3) }, () => {
        const mask = pick(masks);
        return { value: (pick(values) & mask) >>> 0, mask };
      }),
    }));
    const index = new MarkIndex(entries);
    for (const mark of [...values, 0x7fffffff, 0x8000_ffff, 0x1_01ff]) {
      const got = new Set<number>();
      index.lookup(mark, (x) => got.add(x));
      const want = entries.filter((e) => markMatches(e.items, mark)).map((e) => e.node);
      assert.deepEqual([...got].sort((a, b) => a - b), want, `${n} entries, mark ${mark}`);
    }
  }
});
