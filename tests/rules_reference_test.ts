/**
 * Conformance: the compiled engine and the naive reference matcher agree on
 * 100,000+ deterministic random (rules, flow) cases covering every field,
 * IPv4 and IPv6, invert, nested logical rules and rule sets.
 */

import assert from "node:assert/strict";
import { parseConfig } from "../config/parse_config.ts";
import { Engine } from "../rules/engine.ts";
import type { RuleSetSpec } from "../rules/spec.ts";
import { referenceMatch } from "./reference/reference_matcher.ts";
import { fakeCountry, Rand, randomConfig, randomFlow } from "./reference/random_rules.ts";
import { formatIp } from "../core/ip.ts";
import { keepSpares } from "../rules/spare.ts";

// As in the config worker: builders' scratch arrays go from one compile to the next
// (`rules/spare.ts`), so a builder that used one after giving it back would show here.
keepSpares();

const CONFIGS = 2_000;
const FLOWS_PER_CONFIG = 60;

Deno.test("Engine.match() agrees with the reference matcher on 120,000 random cases", () => {
  const r = new Rand(0x5eed);
  let cases = 0, matched = 0;
  for (let c = 0; c < CONFIGS; c++) {
    const raw = randomConfig(r, 12);
    const config = parseConfig(raw, { baseDir: "/" });
    const ruleSets: RuleSetSpec[] = config.route.rule_set.map((s) => {
      if (s.type !== "inline") throw new Error("unexpected rule set type");
      return { tag: s.tag, rules: s.rules };
    });
    const engine = new Engine({
      rules: config.route.rules,
      final: config.route.final,
      ruleSets,
      geoip: { country: fakeCountry },
    });
    const input = {
      rules: config.route.rules,
      final: config.route.final,
      ruleSets,
      country: fakeCountry,
    };
    for (let i = 0; i < FLOWS_PER_CONFIG; i++) {
      const flow = randomFlow(r);
      const want = referenceMatch(input, flow);
      const got = engine.match(flow);
      if (got.rule !== want.rule || got.outbound !== want.outbound) {
        assert.fail(
          `case ${cases}: engine ${JSON.stringify(got)} != reference ${JSON.stringify(want)}\n` +
            `flow: ${
              JSON.stringify({
                ...flow,
                source: `${formatIp(flow.source.addr)}:${flow.source.port}`,
                destination: `${formatIp(flow.destination.addr)}:${flow.destination.port}`,
              })
            }\nrules: ${JSON.stringify((raw as { route: unknown }).route, null, 1)}`,
        );
      }
      if (want.rule !== null) matched++;
      cases++;
    }
  }
  assert.equal(cases, CONFIGS * FLOWS_PER_CONFIG);
  // The generator must produce both outcomes in quantity, or the test proves little.
  assert.ok(matched > cases * 0.2 && matched < cases * 0.9, `matched ${matched} of ${cases}`);
});
