import assert from "node:assert/strict";
import { BlockedError, BlockOutbound } from "./block.ts";

Deno.test("BlockOutbound.dialTcp() rejects with BlockedError carrying the mode", async () => {
  const ob = new BlockOutbound({ tag: "block", mode: "drop" });
  await assert.rejects(
    ob.dialTcp({ addr: new Uint8Array([10, 0, 0, 1]), port: 80 }),
    (e: unknown) => {
      assert.ok(e instanceof BlockedError);
      assert.equal(e.mode, "drop");
      assert.equal(e.message, "outbound block: blocked 10.0.0.1:80");
      return true;
    },
  );
  assert.equal(new BlockOutbound({ tag: "b" }).mode, "reset");
});

Deno.test("BlockOutbound rejects an unknown mode naming the field", () => {
  assert.throws(
    () => new BlockOutbound({ tag: "b", mode: "nope" as "drop" }),
    /outbound b: mode: "nope"/,
  );
});
