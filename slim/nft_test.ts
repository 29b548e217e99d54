import assert from "node:assert/strict";
import type { RuleRecord } from "./model.ts";
import { parseTableName, renderDeleteTable, renderRuleLines, renderRuleset } from "./nft.ts";

const rule = (over: Partial<RuleRecord>): RuleRecord => ({
  id: 1,
  from: "a",
  to: "b",
  bidirectional: false,
  protocol: null,
  ports: [],
  comment: null,
  createdAt: "",
  ...over,
});

Deno.test("renderRuleset() replaces only our table in one script, dropping peer-to-peer by default", () => {
  const s = renderRuleset([], { table: "vpn_slim", peersOnly: false });
  assert.equal(
    s,
    [
      "add table inet vpn_slim",
      "delete table inet vpn_slim",
      "table inet vpn_slim {",
      "  chain forward {",
      "    type filter hook forward priority filter; policy accept;",
      '    iifname "wg-peer-*" oifname "wg-peer-*" jump between_peers',
      "  }",
      "  chain between_peers {",
      '    counter drop comment "no forwarding rule"',
      "  }",
      "}",
      "",
    ].join("\n"),
  );
  assert.ok(!/\btable (?!inet vpn_slim)/.test(s.replace(/table inet vpn_slim/g, "")));
  assert.match(
    renderRuleset([], { table: "t", peersOnly: true }),
    /iifname "wg-peer-\*" counter drop comment "peer to non-peer"/,
  );
});

Deno.test("renderRuleLines() renders directions, protocols and port sets", () => {
  assert.deepEqual(renderRuleLines(rule({ bidirectional: true })), [
    'iifname "wg-peer-a" oifname "wg-peer-b" counter accept comment "rule 1"',
    'iifname "wg-peer-b" oifname "wg-peer-a" counter accept comment "rule 1"',
  ]);
  assert.deepEqual(renderRuleLines(rule({ protocol: "udp", ports: [53, { from: 60, to: 70 }] })), [
    'iifname "wg-peer-a" oifname "wg-peer-b" udp dport { 53, 60-70 } counter accept comment "rule 1"',
  ]);
  assert.match(renderRuleLines(rule({ protocol: "tcp" }))[0]!, / meta l4proto tcp counter/);
  assert.match(
    renderRuleLines(rule({ protocol: "icmp" }))[0]!,
    /meta l4proto \{ icmp, ipv6-icmp \}/,
  );
});

Deno.test("renderRuleset() accepts established/related only when a rule needs replies let back", () => {
  const opts = { table: "t", peersOnly: false };
  const ct = /ct state established,related accept/;
  assert.doesNotMatch(renderRuleset([rule({ bidirectional: true })], opts), ct);
  assert.doesNotMatch(renderRuleset([rule({ bidirectional: true, protocol: "icmp" })], opts), ct);
  assert.match(renderRuleset([rule({})], opts), ct);
  assert.match(
    renderRuleset([rule({ bidirectional: true, protocol: "tcp", ports: [22] })], opts),
    ct,
  );
  const s = renderRuleset([rule({ id: 1, bidirectional: true }), rule({ id: 2 })], opts);
  assert.ok(s.indexOf("ct state") < s.indexOf('comment "rule 1"'));
});

Deno.test("renderRuleset() dispatches on the interface pair with one verdict map, a chain per pair", () => {
  const s = renderRuleset([
    rule({ id: 1, bidirectional: true }),
    rule({ id: 2, protocol: "tcp", ports: [22] }),
    rule({ id: 3, from: "c", to: "a" }),
  ], { table: "t", peersOnly: false });
  // One lookup, no rule line directly in between_peers: the cost per packet
  // does not grow with the number of rules.
  const has = (text: string) => assert.ok(s.includes(text), `missing:\n${text}\nin:\n${s}`);
  has(
    [
      "  chain between_peers {",
      "    ct state established,related accept",
      '    iifname . oifname vmap { "wg-peer-a" . "wg-peer-b" : jump pair_0, ' +
      '"wg-peer-b" . "wg-peer-a" : jump pair_1, "wg-peer-c" . "wg-peer-a" : jump pair_2 }',
      '    counter drop comment "no forwarding rule"',
      "  }",
    ].join("\n"),
  );
  // Rules of the same direction share that pair's chain, in rule order.
  has(
    [
      "  chain pair_0 {",
      '    iifname "wg-peer-a" oifname "wg-peer-b" counter accept comment "rule 1"',
      '    iifname "wg-peer-a" oifname "wg-peer-b" tcp dport { 22 } counter accept comment "rule 2"',
      "  }",
    ].join("\n"),
  );
  has(
    [
      "  chain pair_2 {",
      '    iifname "wg-peer-c" oifname "wg-peer-a" counter accept comment "rule 3"',
      "  }",
    ].join("\n"),
  );
  assert.doesNotMatch(s, /pair_3/);
  assert.doesNotMatch(renderRuleset([], { table: "t", peersOnly: false }), /vmap/);
});

Deno.test("parseTableName() accepts nft identifiers only", () => {
  assert.equal(parseTableName("nft_table", "vpn_slim2"), "vpn_slim2");
  for (const bad of ["", "1abc", "a-b", "a b", "x;flush ruleset", "a".repeat(33), 5]) {
    assert.throws(() => parseTableName("nft_table", bad), /^ValidationError: nft_table: /);
  }
  assert.equal(renderDeleteTable("t"), "add table inet t\ndelete table inet t\n");
});
