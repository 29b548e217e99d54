import assert from "node:assert/strict";
import { coarseNow } from "./coarse_clock.ts";

Deno.test("coarseNow() is fixed within a synchronous run and follows the clock across runs", async () => {
  const a = coarseNow();
  const spin = performance.now() + 5;
  while (performance.now() < spin) { /* the real clock moves on */ }
  assert.equal(coarseNow(), a, "same synchronous run: the first sample");
  await Promise.resolve();
  const b = coarseNow();
  assert.ok(b >= a + 5, `a new run samples again (${a} -> ${b})`);
  await new Promise((r) => setTimeout(r, 20));
  assert.ok(coarseNow() >= b + 15, "after a timer, too");
});
