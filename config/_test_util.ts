// Internal helpers of the config tests.
import assert from "node:assert/strict";
import { ConfigError } from "./config_error.ts";

/** The issues (`path: message`) a config load rejects with; fails if it was accepted. */
export async function issuesOf(p: Promise<unknown>): Promise<string[]> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${e}`);
    return e.issues.map((i) => `${i.path}: ${i.message}`);
  }
  assert.fail("config was accepted");
}
