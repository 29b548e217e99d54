import assert from "node:assert/strict";
import { arrayMemberSpans } from "../config/json_cooperative.ts";
import { parseConfig } from "../config/parse_config.ts";
import { Engine } from "./engine.ts";
import { fingerprint, fingerprintHash } from "./fingerprint.ts";
import { RuleStats } from "./rule_stats.ts";
import { flow } from "./_testing.ts";
import { buildRuleHead, buildRuleTail, WireRuleTable } from "./wire_rule_table.ts";

function engine(rules: unknown[], final = "direct"): Engine {
  const c = parseConfig({
    outbounds: [{ type: "direct", tag: "direct" }, { type: "block", tag: "block" }],
    route: { rules, final },
  }, { baseDir: "/" });
  return new Engine({ rules: c.route.rules, final: c.route.final });
}

Deno.test("fingerprint() ignores key order but not values", () => {
  assert.equal(
    fingerprint({ domain: ["a"], outbound: "x" }),
    fingerprint({ outbound: "x", domain: ["a"] }),
  );
  assert.notEqual(fingerprint({ domain: ["a"] }), fingerprint({ domain: ["b"] }));
  assert.notEqual(fingerprint({ domain: ["a", "b"] }), fingerprint({ domain: ["b", "a"] }));
});

Deno.test("RuleStats.adopt() carries counts of unchanged rules across a reload", () => {
  const stats = new RuleStats();
  const old = engine([
    { domain: "a.com", outbound: "block" },
    { domain: "b.com", outbound: "block" },
  ]);
  stats.adopt(old);
  old.match(flow({ domain: "a.com" }));
  old.match(flow({ domain: "a.com" }));
  old.match(flow({ domain: "b.com" }));
  old.match(flow({ domain: "c.com" }));
  // Reordered, one rule changed, one inserted.
  const next = engine([
    { domain: "new.com", outbound: "block" },
    { outbound: "block", domain: "a.com" },
    { domain: "b.com", outbound: "direct" },
  ]);
  stats.adopt(next);
  assert.equal(stats.engine, next);
  assert.deepEqual(stats.snapshot().map((r) => [r.rule, r.hits]), [
    [0, 0],
    [1, 2],
    [2, 0],
    [null, 1],
  ]);
  next.match(flow({ domain: "a.com" }));
  assert.equal(next.hits(1), 3);
});

Deno.test("RuleStats.adopt() resets final's count when the final tag changes", () => {
  const stats = new RuleStats();
  const old = engine([]);
  stats.adopt(old);
  old.match(flow({}));
  const next = engine([], "block");
  stats.adopt(next);
  assert.equal(next.finalHits, 0);
});

Deno.test("fingerprintHash() is equal exactly when fingerprint() is", () => {
  const values: unknown[] = [
    { domain: ["a"], outbound: "x" },
    { outbound: "x", domain: ["a"] },
    { domain: ["b"], outbound: "x" },
    { domain: ["a", "b"], outbound: "x" },
    { domain: ["b", "a"], outbound: "x" },
    { domain: "a", outbound: "x" },
    { port: 443, outbound: "x" },
    { port: "443", outbound: "x" },
    { port: [443], outbound: "x" },
    { domain: ["a"], outbound: "x", invert: undefined },
    { type: "logical", mode: "and", rules: [{ port: 1 }, { port: 2 }], outbound: "x" },
    { type: "logical", mode: "and", rules: [{ port: 2 }, { port: 1 }], outbound: "x" },
    { a: { b: 1, c: 2 } },
    { a: { b: 2, c: 1 } },
    { a: { c: 2, b: 1 } },
    null,
    true,
    "true",
  ];
  for (const a of values) {
    for (const b of values) {
      assert.equal(
        fingerprintHash(a) === fingerprintHash(b),
        fingerprint(a) === fingerprint(b),
        `${JSON.stringify(a)} vs ${JSON.stringify(b)}`,
      );
    }
  }
  assert.ok(Number.isSafeInteger(fingerprintHash({ domain: ["a"] })));
});

Deno.test("RuleStats.adopt() carries counts when a worker engine's fingerprints arrive, adding to its own", async () => {
  const retired: Engine[] = [];
  const stats = new RuleStats({ onRetire: (e) => retired.push(e) });
  const old = engine([{ domain: "a.com", outbound: "block" }, {
    domain: "b.com",
    outbound: "block",
  }]);
  stats.adopt(old);
  old.match(flow({ domain: "a.com" }));
  old.match(flow({ domain: "b.com" }));
  old.match(flow({ domain: "b.com" }));
  // The same rules, swapped, as a worker would send them: fingerprints in a later tail.
  const rules = [{ domain: "b.com", outbound: "block" }, { domain: "a.com", outbound: "block" }];
  const file = JSON.stringify({ route: { rules } });
  const parsed = parseConfig({
    outbounds: [{ type: "direct", tag: "direct" }, { type: "block", tag: "block" }],
    route: { rules, final: "direct" },
  }, { baseDir: "/" }).route.rules;
  const table = new WireRuleTable(
    buildRuleHead(parsed, new TextEncoder().encode(file)),
    () => assert.fail("no spec needed"),
  );
  const wire = Engine.compileWire({ rules: parsed, final: "direct" });
  const next = Engine.fromWire(wire, table);
  stats.adopt(next);
  next.match(flow({ domain: "a.com" })); // counted before the tail arrives
  assert.deepEqual([next.hits(0), next.hits(1)], [0, 1]);
  await Promise.resolve();
  assert.deepEqual(retired, [], "old is still read: its counts wait for the fingerprints");
  table.complete(buildRuleTail(parsed, arrayMemberSpans(file, ["route", "rules"])));
  await stats.settled();
  assert.deepEqual([next.hits(0), next.hits(1)], [2, 2]);
  assert.deepEqual(retired, [old], "retired once its counts were carried");
  // Without a pending carry, the engine replaced is retired at once.
  const third = engine([{ domain: "a.com", outbound: "block" }]);
  stats.adopt(third);
  assert.deepEqual(retired, [old, next]);
});

Deno.test("RuleStats.hot() lists the rules with hits, most first, up to a limit, then final", () => {
  const stats = new RuleStats();
  assert.deepEqual(stats.hot(10), { rows: [], hit: 0 }, "no engine yet");
  const e = engine([
    { domain: "a.com", outbound: "block" },
    { domain: "b.com", outbound: "direct" },
    { domain: "c.com", outbound: "block" },
    { domain: "d.com", outbound: "block" },
  ]);
  stats.adopt(e);
  for (const [d, n] of [["a.com", 1], ["c.com", 3], ["d.com", 1], ["x.com", 2]] as const) {
    for (let i = 0; i < n; i++) e.match(flow({ domain: d }));
  }
  assert.deepEqual(stats.hot(10), {
    rows: [
      { rule: 2, outbound: "block", hits: 3 },
      { rule: 0, outbound: "block", hits: 1 }, // ties in rule order
      { rule: 3, outbound: "block", hits: 1 },
      { rule: null, outbound: "direct", hits: 2 },
    ],
    hit: 3,
  });
  assert.deepEqual(stats.hot(1).rows.map((r) => r.rule), [2, null]);
  assert.deepEqual(stats.hot(0), { rows: [{ rule: null, outbound: "direct", hits: 2 }], hit: 3 });
});

Deno.test("RuleStats.hot() keeps the best `limit` rules of many, as a full sort would", () => {
  const n = 300;
  const e = engine(
    Array.from({ length: n }, (_, i) => ({ domain: `r${i}.com`, outbound: "block" })),
  );
  const stats = new RuleStats();
  stats.adopt(e);
  let seed = 5;
  const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 16;
  for (let i = 0; i < n; i++) {
    // Many ties, many rules without hits.
    const times = rand() % 3 === 0 ? 0 : rand() % 7;
    for (let k = 0; k < times; k++) e.match(flow({ domain: `r${i}.com` }));
  }
  const all = Array.from({ length: n }, (_, i) => i).filter((i) => e.hits(i) > 0)
    .sort((a, b) => e.hits(b) - e.hits(a) || a - b);
  for (const limit of [0, 1, 2, 7, 50, all.length - 1, all.length, all.length + 10]) {
    const got = stats.hot(limit);
    assert.equal(got.hit, all.length);
    assert.deepEqual(
      got.rows.slice(0, -1).map((r) => r.rule),
      all.slice(0, limit),
      `limit ${limit}`,
    );
    assert.equal(got.rows.at(-1)!.rule, null);
  }
});

Deno.test("RuleStats: a replaced engine's counters are reused by a later engine, zeroed, counts carried", () => {
  const rules = [{ domain: "a.com", outbound: "block" }, { domain: "b.com", outbound: "block" }];
  const stats = new RuleStats();
  const e1 = engine(rules);
  stats.adopt(e1);
  for (let k = 0; k < 5; k++) e1.match(flow({ domain: "a.com" }));
  e1.match(flow({ domain: "b.com" }));
  const e2 = engine(rules);
  stats.adopt(e2); // carries 5 and 1, gives e1's array back
  assert.deepEqual([e1.hits(0), e1.hits(1), e1.hitRules()], [0, 0, []], "e1 released");
  e2.match(flow({ domain: "b.com" }));
  const e3 = engine([rules[1]!, rules[0]!]); // takes e1's old array: it must start at zero
  assert.deepEqual([e3.hits(0), e3.hits(1), e3.hitRules()], [0, 0, []]);
  stats.adopt(e3);
  assert.deepEqual([e3.hits(0), e3.hits(1)], [2, 5], "b.com then a.com, reordered");
  assert.deepEqual(stats.hot(10).rows.map((r) => [r.rule, r.hits]), [[1, 5], [0, 2], [null, 0]]);
});
