import assert from "node:assert/strict";
import { PortIndex, portMatches } from "./item_port.ts";

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
