import assert from "node:assert/strict";
import { dropSpares, giveInts, keepSpares, spareBytesKept, takeInts } from "./spare.ts";

Deno.test("spares: a given array comes back zeroed for a take of its length, once; drop frees them", () => {
  const fresh = takeInts(8);
  assert.deepEqual([...fresh], new Array(8).fill(0));
  giveInts(fresh); // off: ignored
  assert.equal(spareBytesKept(), 0);
  keepSpares();
  const a = takeInts(1024);
  a.fill(7);
  giveInts(a);
  assert.equal(spareBytesKept(), 4096);
  assert.notEqual(takeInts(512), a, "another length: a new array");
  const b = takeInts(1024);
  assert.equal(b, a, "the spare itself");
  assert.ok(b.every((x) => x === 0), "zeroed");
  assert.notEqual(takeInts(1024), a, "handed out once");
  giveInts(new Int32Array(new ArrayBuffer(64), 4, 4)); // a view: not kept
  assert.equal(spareBytesKept(), 0);
  giveInts(b);
  dropSpares();
  assert.equal(spareBytesKept(), 0);
  assert.equal(b.length, 0, "its buffer is freed at once (detached)");
});
