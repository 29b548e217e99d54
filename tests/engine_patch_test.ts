/**
 * Engine.patch() — the unchanged rules' indexes reused, a stretch of rules
 * replaced — decides exactly as an engine compiled from the whole new list,
 * on random rule lists (every field, logical rules, rule sets, invert) and
 * random edits (insert, delete, replace, at the ends and in the middle).
 */

import assert from "node:assert/strict";
import { parseConfig } from "../config/parse_config.ts";
import { Engine, patchedRuleTable, ruleTableOf } from "../rules/engine.ts";
import type { RouteRule, RuleSetSpec } from "../rules/spec.ts";
import { fakeCountry, Rand, randomConfig, randomFlow } from "./reference/random_rules.ts";

const CONFIGS = 1_500;
const FLOWS = 40;

Deno.test("Engine.patch() decides like a full compile of the edited list on 120,000 random cases", () => {
  const r = new Rand(0x9a7c4);
  const geoip = { country: fakeCountry };
  let cases = 0, overlayWins = 0;
  for (let c = 0; c < CONFIGS; c++) {
    const config = parseConfig(randomConfig(r, 30), { baseDir: "/" });
    const ruleSets: RuleSetSpec[] = config.route.rule_set.map((s) => {
      if (s.type !== "inline") throw new Error("unexpected rule set type");
      return { tag: s.tag, rules: s.rules };
    });
    const final = config.route.final;
    const all = config.route.rules;
    const k = r.int(all.length + 1);
    const base = all.slice(0, k), pool = all.slice(k);
    const baseWire = Engine.compileWire({ rules: base, final, ruleSets });
    // Two edits from the same base: the base wire must come out untouched.
    for (let e = 0; e < 2; e++) {
      // 1 to 3 stretches, in order and apart, each replacing 0..3 rules by 0..3 others.
      const stretches: { prefix: number; removed: number; added: number }[] = [];
      const X: RouteRule[] = [];
      const next: RouteRule[] = [];
      let at = 0;
      for (let k = 1 + r.int(3); k > 0 && at <= base.length; k--) {
        const prefix = at + r.int(base.length - at + 1);
        const removed = r.int(Math.min(3, base.length - prefix) + 1);
        const start = r.int(pool.length + 1);
        const adds = pool.slice(start, start + r.int(4));
        next.push(...base.slice(at, prefix), ...adds);
        X.push(...adds);
        stretches.push({ prefix, removed, added: adds.length });
        at = prefix + removed;
      }
      next.push(...base.slice(at));
      const P = stretches[0]!.prefix;
      const patched = Engine.patch(
        baseWire,
        stretches,
        Engine.compileWire({ rules: X, final, ruleSets }),
        ruleTableOf(next),
        final,
        geoip,
      );
      const full = new Engine({ rules: next, final, ruleSets, geoip });
      assert.equal(patched.ruleCount, next.length);
      const table = patchedRuleTable(ruleTableOf(base), stretches, ruleTableOf(X));
      const want = ruleTableOf(next);
      assert.equal(table.count, want.count);
      for (let i = 0; i < next.length; i++) {
        assert.equal(table.outbound(i), want.outbound(i));
        assert.equal(table.raw(i), want.raw(i));
        assert.equal(table.fingerprint(i), want.fingerprint(i));
      }
      assert.deepEqual(table.rules, next);
      for (let i = 0; i < FLOWS / 2; i++) {
        const flow = randomFlow(r);
        const want = full.match(flow);
        const got = patched.match(flow);
        if (got.rule !== want.rule || got.outbound !== want.outbound) {
          assert.fail(
            `config ${c} edit ${e} (${JSON.stringify(stretches)} of ${next.length}): ` +
              `patched ${JSON.stringify(got)} != full ${JSON.stringify(want)}\n` +
              `rules: ${JSON.stringify(next.map((x) => x.raw))}`,
          );
        }
        assert.deepEqual(patched.explain(flow), full.explain(flow));
        if (
          got.rule !== null && got.rule >= P &&
          !next.slice(0, got.rule).includes(next[got.rule]!) && X.includes(next[got.rule]!)
        ) overlayWins++;
        cases++;
      }
      for (let i = 0; i < next.length; i++) assert.equal(patched.hits(i), full.hits(i));
      assert.equal(patched.finalHits, full.finalHits);
    }
  }
  assert.equal(cases, CONFIGS * FLOWS);
  assert.ok(overlayWins > 1_000, `the new rules decided ${overlayWins} cases`);
});

Deno.test("Engine.patch() refuses a shape that does not fit the lists", () => {
  const wire = Engine.compileWire({ rules: [], final: "direct" });
  assert.throws(
    () =>
      Engine.patch(wire, [{ prefix: 1, removed: 0, added: 0 }], wire, ruleTableOf([]), "direct"),
    /do not fit/,
  );
});
