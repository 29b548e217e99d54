import assert from "node:assert/strict";
import { generateConfig } from "../bench/gen_rules.ts";
import { Engine } from "../rules/engine.ts";
import { fingerprintHash } from "../rules/fingerprint.ts";
import type { RuleSetSpec } from "../rules/spec.ts";
import { Rand, randomCidr, randomConfig } from "../tests/reference/random_rules.ts";
import { ConfigError } from "./config_error.ts";
import { parseConfig } from "./parse_config.ts";
import { parseConfigBytes } from "./rule_scan.ts";
import { REJECT_DROP_TAG, type RouterConfig } from "./schema.ts";
import { keepSpares } from "../rules/spare.ts";

// As in the config worker (see `rules/spare.ts`): the two paths compile with reused scratch.
keepSpares();

const encoder = new TextEncoder();
const OPTS = { baseDir: "/" };

type Json = unknown;

const WS = ["", "", "", " ", "\n", "\t", "\r\n  "];

/** JSON text of `v` with random whitespace and, now and then, `\u` escapes in strings. */
function serialise(v: Json, r: Rand, escapes: boolean): string {
  const ws = () => r.pick(WS);
  if (typeof v === "string") {
    const s = JSON.stringify(v);
    if (!escapes || !r.chance(0.05) || s.length < 3) return s;
    const at = 1 + r.int(s.length - 2);
    if (s[at] === "\\" || s[at - 1] === "\\") return s;
    return `${s.slice(0, at)}\\u${s.charCodeAt(at).toString(16).padStart(4, "0")}${
      s.slice(at + 1)
    }`;
  }
  if (Array.isArray(v)) {
    return `[${ws()}${v.map((x) => serialise(x, r, escapes)).join(`${ws()},${ws()}`)}${ws()}]`;
  }
  if (v !== null && typeof v === "object") {
    const parts = Object.entries(v).map(([k, x]) =>
      `${serialise(k, r, escapes)}${ws()}:${ws()}${serialise(x, r, escapes)}`
    );
    return `{${ws()}${parts.join(`${ws()},${ws()}`)}${ws()}}`;
  }
  return JSON.stringify(v);
}

const NAMES = ["x.com", "a.x.com", ".x.com", "com", "goo", "cdn.cn", "a-b_c.net", "ok"];
const ODD_NAMES = ["X.com", "", ".", "é.com", 'a"b', "a\\b", "a\u0001b", "ÄÖ"];

/** A rule of the compact shape, sometimes bent out of it (or made invalid). */
function compactish(r: Rand, odd: boolean): Record<string, Json> {
  const o: Record<string, Json> = {};
  const fields = ["domain", "domain_suffix", "domain_keyword", "ip_cidr"];
  const n = 1 + r.int(3);
  for (let i = 0; i < n; i++) {
    const f = r.pick(fields);
    const value = () =>
      f === "ip_cidr"
        ? (odd && r.chance(0.05)
          ? r.pick(["10.0.0.0/33", "1.2.3", "::g/8", "010.1.1.1"])
          : randomCidr(r))
        : (odd && r.chance(0.04) ? r.pick(ODD_NAMES) : r.pick(NAMES));
    o[f] = r.chance(0.15)
      ? value()
      : odd && r.chance(0.03)
      ? []
      : Array.from({ length: 1 + r.int(4) }, value);
  }
  const tags = ["direct", "proxy", "block"];
  if (odd && r.chance(0.02)) o.outbound = "nowhere";
  else if (!(odd && r.chance(0.02))) o.outbound = r.pick(tags);
  if (r.chance(0.1)) o.action = r.chance(0.8) ? "route" : "reject";
  if (o.action === "reject" && !odd) delete o.outbound;
  if (r.chance(0.03)) o.port = 443;
  if (r.chance(0.02)) o.invert = true;
  // Shuffle the key order.
  const entries = Object.entries(o);
  for (let i = entries.length - 1; i > 0; i--) {
    const j = r.int(i + 1);
    [entries[i], entries[j]] = [entries[j]!, entries[i]!];
  }
  return Object.fromEntries(entries);
}

/** Splices a duplicate key into the first object of `text` after `{` (JSON.parse keeps the last). */
function withDuplicateKey(text: string, r: Rand): string {
  const at = text.indexOf("{");
  return `${text.slice(0, at + 1)}"domain":${r.chance(0.5) ? '["dup.com"]' : "7"},${
    text.slice(at + 1)
  }`;
}

function slowParse(text: string): RouterConfig | ConfigError | SyntaxError {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder().decode(encoder.encode(text))); // as a file is read
  } catch (e) {
    return e as SyntaxError;
  }
  try {
    return parseConfig(raw, OPTS);
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
}

function inlineSets(c: RouterConfig): RuleSetSpec[] {
  return c.route.rule_set.map((s) => {
    if (s.type !== "inline") throw new Error("unexpected rule set type");
    return { tag: s.tag, rules: s.rules };
  });
}

/** Asserts that the fast path agrees with the general path on `text`; returns whether it applied. */
function agree(text: string, label: string): boolean {
  const slow = slowParse(text);
  const fast = parseConfigBytes(encoder.encode(text), OPTS);
  if (!(slow instanceof Object) || slow instanceof Error) {
    assert.equal(fast, null, `${label}: the general path refuses it, the fast path must too`);
    return false;
  }
  if (fast === null) return false;
  const { rules: slowRules, ...slowRoute } = slow.route;
  assert.deepEqual(fast.config, { ...slow, route: { ...slowRoute, rules: [] } }, label);
  assert.equal(fast.rules.length, slowRules.length, label);
  const ruleSets = inlineSets(slow);
  const want = Engine.compileWire({ rules: slowRules, final: slow.route.final, ruleSets });
  const got = Engine.compileWire({ rules: fast.rules, final: slow.route.final, ruleSets });
  assert.deepEqual(got, want, `${label}: compiled indexes differ`);
  const wire = fast.rules.wire, table = fast.rules.table();
  for (let i = 0; i < slowRules.length; i++) {
    assert.equal(wire.tags[wire.outbound[i]!], slowRules[i]!.outbound, `${label}: rule ${i}`);
    assert.equal(wire.fingerprints![i], fingerprintHash(slowRules[i]!.raw), `${label}: fp ${i}`);
    assert.deepEqual(table.raw(i), slowRules[i]!.raw, `${label}: raw ${i}`);
  }
  return true;
}

Deno.test("parseConfigBytes agrees with JSON.parse + parseConfig on 1,500 random configs", () => {
  const r = new Rand(0xb17e5);
  let applied = 0, scanned = 0, refused = 0;
  for (let c = 0; c < 1500; c++) {
    const raw = randomConfig(r, 6) as { route: { rules: Json[] } };
    const odd = r.chance(0.3);
    const compact = Array.from({ length: r.int(30) }, () => compactish(r, odd));
    // Compact rules among the general ones, in random places.
    const rules = [...raw.route.rules];
    for (const x of compact) rules.splice(r.int(rules.length + 1), 0, x);
    raw.route.rules = rules;
    let text = serialise(raw, r, r.chance(0.3));
    if (r.chance(0.05)) {
      const rulesAt = text.indexOf('"rules"', text.indexOf('"route"'));
      const objAt = text.indexOf("{", text.indexOf("[", rulesAt));
      if (objAt > 0) text = text.slice(0, objAt) + withDuplicateKey(text.slice(objAt), r);
    }
    if (r.chance(0.03)) text = text.slice(0, r.int(text.length)); // truncated
    if (r.chance(0.02)) text = text.replace(/\]\s*\}\s*,?\s*("final"|$)/, ",]}$1"); // trailing comma
    const ok = agree(text, `config ${c}`);
    if (ok) {
      applied++;
      const f = parseConfigBytes(encoder.encode(text), OPTS)!;
      for (let i = 0; i < f.rules.length; i++) if (f.rules.isScanned(i)) scanned++;
    } else if (slowParse(text) instanceof Error) refused++;
  }
  // Both outcomes in quantity, or the test proves little.
  assert.ok(applied > 900, `fast path applied to ${applied} configs`);
  assert.ok(scanned > 9_000, `${scanned} rules scanned`);
  assert.ok(refused > 100, `${refused} invalid configs`);
});

Deno.test("parseConfigBytes scans every compact rule of the bench set", () => {
  const gen = generateConfig({ domainRules: 2000, cidrs: 2000, portAndLogical: 20, seed: 3 });
  const text = JSON.stringify(gen.config, null, 2);
  assert.ok(agree(text, "bench set"));
  const fast = parseConfigBytes(encoder.encode(text), OPTS)!;
  let scanned = 0;
  for (let i = 0; i < fast.rules.length; i++) if (fast.rules.isScanned(i)) scanned++;
  // All but the port, logical, GeoIP and ip_is_private rules.
  assert.equal(scanned, fast.rules.length - 20 - 4 - 1);
});

Deno.test("parseConfigBytes leaves odd paths to route.rules to the general path", () => {
  const base = {
    outbounds: [{ type: "direct", tag: "direct" }],
    route: { rules: [{ domain: ["a.com"], outbound: "direct" }] },
  };
  const text = JSON.stringify(base);
  assert.ok(agree(text, "plain"));
  assert.ok(agree(`\ufeff${text}`, "with a BOM"), "a BOM is dropped as TextDecoder does");
  const cases: Record<string, string> = {
    "two route keys": text.replace('"route":', '"route":{"rules":[]},"route":'),
    "two rules keys": text.replace('"rules":', '"rules":[],"rules":'),
    "escaped route key": text.replace('"route"', '"r\\u006fute"'),
    "escaped rules key": text.replace('"rules"', '"rul\\u0065s"'),
    "no rules": JSON.stringify({ ...base, route: {} }),
    "rules not an array": JSON.stringify({ ...base, route: { rules: {} } }),
    "trailing garbage": `${text} x`,
  };
  for (const [label, t] of Object.entries(cases)) {
    agree(t, label);
    assert.equal(parseConfigBytes(encoder.encode(t), OPTS), null, label);
  }
});

Deno.test("parseConfigBytes: rules it does not scan are parsed, reject outbounds included", () => {
  const text = JSON.stringify({
    outbounds: [{ type: "direct", tag: "direct" }],
    route: {
      rules: [
        { domain: "a.com", outbound: "direct" },
        { domain: ["B.com"], outbound: "direct" },
        { port: 443, action: "reject", method: "drop" },
        { ip_cidr: ["10.0.0.0/8"], action: "route", outbound: "direct" },
      ],
    },
  });
  assert.ok(agree(text, "mixed"));
  const fast = parseConfigBytes(encoder.encode(text), OPTS)!;
  assert.deepEqual([0, 1, 2, 3].map((i) => fast.rules.isScanned(i)), [true, false, false, true]);
  assert.deepEqual(fast.config.outbounds.map((o) => o.tag), ["direct", REJECT_DROP_TAG]);
});

Deno.test("parseConfigBytes handles many outbounds like the general path", () => {
  const tags = Array.from({ length: 40 }, (_, i) => `out-${i}`);
  const text = JSON.stringify({
    outbounds: tags.map((tag) => ({ type: "direct", tag })),
    route: {
      rules: Array.from({ length: 200 }, (_, i) => ({
        domain: [`d${i}.com`],
        outbound: tags[(i * 7) % tags.length],
      })),
    },
  });
  assert.ok(agree(text, "many outbounds"));
});

Deno.test("parseConfigBytes handles long values like the general path", () => {
  const long = "k".repeat(200_000);
  const text = JSON.stringify({
    outbounds: [{ type: "direct", tag: "direct" }, {
      type: "block",
      tag: `o${"x".repeat(70_000)}`,
    }],
    route: {
      rules: [
        { domain_keyword: [long], outbound: "direct" },
        { domain_suffix: [`${"a".repeat(100_000)}.com`], outbound: `o${"x".repeat(70_000)}` },
        ...Array.from(
          { length: 20 },
          (_, i) => ({ domain: [`d${i}.com`], outbound: `o${"x".repeat(70_000)}` }),
        ),
      ],
    },
  });
  assert.ok(agree(text, "long values"));
});
