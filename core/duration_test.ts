import assert from "node:assert/strict";
import { parseDuration, parseDurationArg } from "./duration.ts";

Deno.test("parseDuration() reads sing-box style strings and seconds", () => {
  assert.equal(parseDuration("1m30s"), 90_000);
  assert.equal(parseDuration("300ms"), 300);
  assert.equal(parseDuration(2), 2000);
  assert.throws(() => parseDuration("soon"), /Cannot parse duration "soon"/);
  assert.throws(() => parseDuration(-1), RangeError);
});

Deno.test("parseDurationArg() takes bare seconds or a duration, bounded", () => {
  assert.equal(parseDurationArg("90"), 90_000);
  assert.equal(parseDurationArg("1.5"), 1500);
  assert.equal(parseDurationArg("10m", 86_400_000), 600_000);
  assert.equal(parseDurationArg("24h", 86_400_000), 86_400_000);
  assert.throws(() => parseDurationArg("25h", 86_400_000), /at most 24h/);
  assert.throws(() => parseDurationArg("lots"), /Cannot parse duration/);
});
