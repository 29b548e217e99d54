import assert from "node:assert/strict";
import { parseConfig } from "../config/parse_config.ts";
import { arrayMemberSpans } from "../config/json_cooperative.ts";
import { fingerprintHash } from "./fingerprint.ts";
import type { RouteRule, RuleSpec } from "./spec.ts";
import { buildRuleHead, buildRuleTail, buildRuleWire, WireRuleTable } from "./wire_rule_table.ts";

const RULES = [
  { domain_suffix: ["a.com"], outbound: "x" },
  { outbound: "y", ip_cidr: ["10.0.0.0/8"] },
  { port: [443], network: "tcp", outbound: "x" },
];
const FILE = JSON.stringify(
  {
    outbounds: [{ type: "direct", tag: "x" }, { type: "direct", tag: "y" }],
    route: { rules: RULES, final: "x" },
  },
  null,
  2,
);
const BYTES = new TextEncoder().encode(FILE);

function parsed(): readonly RouteRule[] {
  return parseConfig(JSON.parse(FILE), { baseDir: "/" }).route.rules;
}

const noParse = (): RuleSpec => {
  throw new Error("not used");
};
const locate = (text: Uint8Array) =>
  arrayMemberSpans(new TextDecoder().decode(text), ["route", "rules"]);

Deno.test("WireRuleTable of a deferred wire answers raw() and fingerprint() before its tail", () => {
  const rules = parsed();
  const table = new WireRuleTable(buildRuleHead(rules, BYTES), noParse, locate);
  assert.ok(table.ready instanceof Promise, "fingerprints are pending");
  assert.deepEqual(Array.from({ length: 3 }, (_, i) => table.outbound(i)), ["x", "y", "x"]);
  assert.deepEqual(table.raw(1), RULES[1]);
  assert.equal(table.fingerprint(2), fingerprintHash(RULES[2]));
});

Deno.test("WireRuleTable.complete() takes the tail's spans and fingerprints and settles ready", async () => {
  const rules = parsed();
  const table = new WireRuleTable(buildRuleHead(rules, BYTES), noParse); // no locate: needs the tail
  assert.throws(() => table.raw(0), /not available yet/);
  const ready = table.ready;
  const tail = buildRuleTail(rules, locate(BYTES));
  assert.equal(tail.text, undefined, "the file's spans are used, no re-serialisation");
  table.complete(tail);
  await ready;
  assert.equal(table.ready, null);
  assert.deepEqual(Array.from({ length: 3 }, (_, i) => table.raw(i)), RULES);
  const full = new WireRuleTable(buildRuleWire(rules), noParse);
  for (let i = 0; i < 3; i++) assert.equal(table.fingerprint(i), full.fingerprint(i));
});

Deno.test("buildRuleTail() serialises the rules when their spans are not found", () => {
  const rules = parsed();
  const table = new WireRuleTable(buildRuleHead(rules, BYTES), noParse);
  const tail = buildRuleTail(rules, null);
  assert.ok(tail.text instanceof Uint8Array);
  table.complete(tail);
  assert.deepEqual(table.raw(1), RULES[1]);
});

Deno.test("WireRuleTable.abandon() settles ready; fingerprints are then computed locally", async () => {
  const rules = parsed();
  const table = new WireRuleTable(buildRuleHead(rules, BYTES), noParse, locate);
  const ready = table.ready;
  table.abandon();
  await ready;
  assert.equal(table.ready, null);
  assert.equal(table.fingerprint(0), fingerprintHash(RULES[0]));
});

Deno.test("buildRuleHead() maps each rule's outbound, with more tags than its scan covers", () => {
  const rules: RouteRule[] = Array.from({ length: 200 }, (_, i) => ({
    outbound: `o${(i * 7) % 23}`,
    raw: {},
    get match(): RuleSpec {
      throw new Error("not used");
    },
  }));
  const table = new WireRuleTable(buildRuleHead(rules, BYTES), noParse);
  for (let i = 0; i < rules.length; i++) assert.equal(table.outbound(i), rules[i]!.outbound);
});
