import assert from "node:assert/strict";
import { IntList } from "./int_list.ts";

Deno.test("IntList grows past its capacity and gives back exactly what was pushed", () => {
  for (const capacity of [1, 3, 8, 1024]) {
    const l = new IntList(capacity);
    const want = Array.from({ length: 50 }, (_, i) => i * 7 - 100);
    for (const x of want) l.push(x);
    assert.equal(l.length, 50);
    assert.deepEqual([...l.toArray()], want, `capacity ${capacity}`);
  }
  assert.equal(new IntList(4).toArray().length, 0);
});
