import assert from "node:assert/strict";
import { TimeSlicer } from "../rules/pacing.ts";
import { arrayMemberSpans, ONE_GO_CHARS, parseJsonCooperative } from "./json_cooperative.ts";

/** Pacing that pauses at every check (counts the pauses; no real waiting). */
function eager(): TimeSlicer {
  return new TimeSlicer({ sliceMs: 0, yieldTurn: () => Promise.resolve() });
}

/** Pads `doc` past the one-go threshold, so the piecewise path runs. */
function big(doc: Record<string, unknown>): Record<string, unknown> {
  const rules = Array.from({ length: 12_000 }, (_, i) => ({
    domain_suffix: [`name-${i}.example.com`, 'x"y\\\\z,]}'],
    port: i,
    nested: { a: [1, { b: [2, 3] }], s: "[{:,}]" },
    outbound: i % 2 ? "direct" : "proxy",
  }));
  return { ...doc, route: { rules, final: "direct" } };
}

Deno.test("parseJsonCooperative() equals JSON.parse on a big document and pauses", async () => {
  const doc = big({ log: { level: "info" }, "1": "one", a: "z" });
  const text = '{"__proto__": {"polluted": true},' + JSON.stringify(doc, null, 1).slice(1);
  assert.ok(text.length > ONE_GO_CHARS);
  const pacing = eager();
  const got = await parseJsonCooperative(text, pacing);
  assert.deepEqual(got, JSON.parse(text));
  assert.deepEqual(Object.keys(got as object), Object.keys(JSON.parse(text)));
  assert.ok(Object.hasOwn(got as object, "__proto__"), "__proto__ stays an own property");
  assert.equal(({} as { polluted?: boolean }).polluted, undefined);
  assert.ok(pacing.pauses > 10, `only ${pacing.pauses} pauses`);
});

Deno.test("parseJsonCooperative() splits a rule set's huge arrays too", async () => {
  const names = Array.from({ length: 60_000 }, (_, i) => `n${i}.example.org`);
  const text = JSON.stringify({ version: 2, rules: [{ domain_suffix: names }, { domain: ["a"] }] });
  const pacing = eager();
  assert.deepEqual(await parseJsonCooperative(text, pacing), JSON.parse(text));
  assert.ok(pacing.pauses > 5);
});

Deno.test("parseJsonCooperative() throws JSON.parse's error on invalid documents", async () => {
  const good = JSON.stringify(big({}));
  const bad = [
    good.slice(0, -1), // unterminated
    good + " x", // trailing garbage
    good.replace('"direct"}', '"direct",}'), // trailing comma in an object
    good.replace("}]", "},]"), // trailing comma in an array
    good.replace("},{", "},,{"), // empty array member
    good.replace('"port":', '"port"'), // missing colon
    good.replace('"port":1,', '"port":1 2,'), // two values
    good.replace("[", "{"), // mismatched brackets
  ];
  for (const text of bad) {
    let want: unknown;
    try {
      JSON.parse(text);
    } catch (e) {
      want = e;
    }
    assert.ok(want instanceof SyntaxError, "the sample must really be invalid");
    await assert.rejects(parseJsonCooperative(text, eager()), (e: unknown) => {
      assert.ok(e instanceof SyntaxError);
      assert.equal(e.message, (want as SyntaxError).message);
      return true;
    });
  }
});

Deno.test("arrayMemberSpans() finds each member of the array at a key path", () => {
  const rules = [
    { domain: ['a\\"]}b'], outbound: "x" },
    "str,ing",
    12.5e3,
    [1, [2, { "]": "}" }]],
    null,
    { nested: { rules: [9] } },
  ];
  const texts = [
    JSON.stringify({ route: { rules } }),
    JSON.stringify({ log: { rules: [0] }, route: { final: "x", rules }, z: [] }, null, 2),
    // A duplicated key: the last one counts, as in JSON.parse.
    `{"route": {"rules": [1, 2]}, "route" : { "rules" :\n${JSON.stringify(rules, null, 1)} } }`,
    `{"\\u0072oute": {"rules": ${JSON.stringify(rules)}}}`,
  ];
  for (const text of texts) {
    const spans = arrayMemberSpans(text, ["route", "rules"]);
    assert.ok(spans, text);
    const members = [];
    for (let i = 0; i < spans.length; i += 2) {
      members.push(JSON.parse(text.slice(spans[i]!, spans[i + 1]!)));
    }
    assert.deepEqual(members, rules, text);
  }
  assert.deepEqual(
    arrayMemberSpans('{"route": {"rules": [ ]}}', ["route", "rules"]),
    new Int32Array(0),
  );
  assert.equal(arrayMemberSpans('{"route": {"rules": {}}}', ["route", "rules"]), null);
  assert.equal(arrayMemberSpans('{"route": {}}', ["route", "rules"]), null);
  assert.equal(arrayMemberSpans("[1]", ["route", "rules"]), null);
});
