import assert from "node:assert/strict";
import { keepShapes, keptShapes } from "./keep_shape.ts";
import { compileJob } from "../config/compile_job.ts";

Deno.test("keepShapes() keeps a small object of each compiler class", () => {
  void compileJob; // the compiler's modules register their classes when loaded
  assert.deepEqual(keptShapes(), [], "nothing kept before keepShapes()");
  keepShapes();
  const kept = keptShapes();
  for (
    const name of [
      "RulesScanner",
      "OutboundNames",
      "ScannedRulesBuilder",
      "ScannedRules",
      "Ints",
      "DomainIndexBuilder",
      "NameTableBuilder",
      "CidrIndexBuilder",
      "TrieBuilder",
      "PostingListsBuilder",
      "KeyedListsBuilder",
      "AhoCorasick",
      "CompactRule",
      "ParsedCidrPool",
      "BytesFingerprint",
      "IntList",
      "StretchMap",
      "DefaultMatcher",
      "LogicalMatcher",
      "Issues",
    ]
  ) assert.ok(kept.includes(name), `${name} not kept (kept: ${kept})`);
  assert.equal(new Set(kept).size, kept.length, "one of each");
});
