import assert from "node:assert/strict";
import { PortIndex, portMatches } from "./item_port.ts";
import { prng } from "../tests/_prng.ts";

Deno.test("portMatches() checks single ports and inclusive ranges", () => {
  const ranges = [{ from: 80, to: 80 }, { from: 1000, to: 2000 }];
  assert.equal(portMatches(ranges, 80), true);
  assert.equal(portMatches(ranges, 81), false);
  assert.equal(portMatches(ranges, 1000), true);
  assert.equal(portMatches(ranges, 2000), true);
  assert.equal(portMatches(ranges, 2001), false);
  assert.equal(portMatches([], 80), false);
});

Deno.test("PortIndex.lookup() agrees with portMatches() for every port", () => {
  const entries = [
    { node: 0, ranges: [{ from: 443, to: 443 }] },
    { node: 1, ranges: [{ from: 0, to: 3000 }] },
    { node: 2, ranges: [{ from: 4000, to: 65535 }, { from: 443, to: 500 }] },
    { node: 3, ranges: [{ from: 65535, to: 65535 }] },
  ];
  const index = new PortIndex(entries);
  for (let port = 0; port <= 65535; port++) {
    const got = new Set<number>();
    index.lookup(port, (n) => got.add(n));
    const want = entries.filter((e) => portMatches(e.ranges, port)).map((e) => e.node);
    assert.deepEqual([...got].sort(), want, `port ${port}`);
  }
});

Deno.test("PortIndex.lookup() agrees with portMatches() on random overlapping ranges", () => {
  const rand = prng(7);
  const int = (n: number) => Math.floor(rand() * n);
  for (const n of [0, 1, 2, 3, 5, 17, 64, 200]) {
    const entries = Array.from({ length: n }, (_, node) => ({
      node,
      ranges: Array.from({ length: 1 + int(3) }, () => {
        const kind = int(4);
        if (kind === 0) {
          const p = int(65536);
          return { from: p, to: p };
        }
        if (kind === 1) return { from: 0, to: 65535 };
        const a = int(65536), b = int(65536);
        return { from: Math.min(a, b), to: Math.max(a, b) };
      }),
    }));
    const index = new PortIndex(entries);
    // Every range boundary and its neighbours, and a sample of other ports.
    const ports = new Set([0, 65535]);
    for (const e of entries) {
      for (const r of e.ranges) for (const p of [r.from - 1, r.from, r.to, r.to + 1]) ports.add(p);
    }
    for (let k = 0; k < 300; k++) ports.add(int(65536));
    for (const port of ports) {
      if (port < 0 || port > 65535) continue;
      const got = new Set<number>();
      index.lookup(port, (x) => got.add(x));
      const want = entries.filter((e) => portMatches(e.ranges, port)).map((e) => e.node);
      assert.deepEqual([...got].sort((a, b) => a - b), want, `${n} entries, port ${port}`);
    }
  }
});

Deno.test("PortIndex stays O(n log n) in size when every range overlaps every other", () => {
  // 20,000 wide ranges, each overlapping all the others: listing the nodes of every piece
  // would take ~400 M entries; the segment tree holds each range at most 2 log2(pieces) times.
  const n = 20_000;
  const entries = Array.from({ length: n }, (_, node) => ({
    node,
    ranges: [{ from: node, to: 40_000 + node }],
  }));
  const index = new PortIndex(entries);
  const pieces = index.image.bounds.length - 1;
  assert.ok(index.image.data.length <= 2 * n * Math.ceil(Math.log2(pieces)));
  const got = new Set<number>();
  index.lookup(30_000, (x) => got.add(x));
  assert.equal(got.size, n);
  got.clear();
  index.lookup(50_000, (x) => got.add(x));
  assert.equal(got.size, n - 10_000);
});
