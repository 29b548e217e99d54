import assert from "node:assert/strict";
import { boundedInt } from "./cli.ts";

Deno.test("boundedInt() accepts whole numbers in range and rejects others with the flag named", () => {
  const errors: string[] = [];
  const orig = console.error;
  console.error = (s: string) => errors.push(s);
  try {
    assert.equal(boundedInt("seconds", "5", 1, 60), 5);
    assert.equal(boundedInt("seconds", "61", 1, 60), null);
    assert.equal(boundedInt("count", "2.5", 10, 100_000), null);
    assert.equal(boundedInt("rounds", "x", 1, 9), null);
  } finally {
    console.error = orig;
  }
  assert.deepEqual(errors, [
    '--seconds: "61": expected 1..60',
    '--count: "2.5": expected 10..100000',
    '--rounds: "x": expected 1..9',
  ]);
});
