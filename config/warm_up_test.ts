import assert from "node:assert/strict";
import { keepShapes, keptShapes } from "../core/keep_shape.ts";
import { warmUpCompiler } from "./warm_up.ts";

Deno.test("the warm-up compiles by every path and leaves one small instance of each compiler class", async () => {
  keepShapes();
  // Full compiles (inline JSON, file by JSON.parse, file by the byte scanner), then a patch.
  assert.deepEqual(await warmUpCompiler(), ["full", "full", "full", "patched"]);
  const kept = keptShapes();
  for (
    const name of [
      "RulesScanner",
      "ScannedRulesBuilder",
      "ScannedRules",
      "DomainIndexBuilder",
      "NameTableBuilder",
      "CidrIndexBuilder",
      "TrieBuilder",
      "PostingListsBuilder",
      "CompactRule",
      "DefaultMatcher",
      "LogicalMatcher",
    ]
  ) assert.ok(kept.includes(name), `${name} not kept (kept: ${kept})`);
});
