import assert from "node:assert/strict";
import { parseConfig } from "../config/parse_config.ts";
import { Engine, wireTransferList } from "./engine.ts";
import { flow, type FlowInit } from "./_testing.ts";
import type { GeoIpLookup } from "./item_geoip.ts";

/** Builds an engine from JSON route rules (+ inline rule sets). */
function engine(
  rules: unknown[],
  opts: { ruleSets?: unknown[]; geoip?: GeoIpLookup } = {},
): Engine {
  const config = parseConfig({
    inbounds: [{ type: "tproxy", tag: "tproxy-in", listen_port: 7893 }, {
      type: "tproxy",
      tag: "other-in",
      listen_port: 7894,
    }],
    outbounds: [{ type: "direct", tag: "direct" }, { type: "direct", tag: "a" }, {
      type: "direct",
      tag: "b",
    }],
    route: {
      ...(opts.geoip ? { geoip: { path: "x.mmdb" } } : {}),
      rule_set: (opts.ruleSets ?? []).map((rules, i) => ({ type: "inline", tag: `s${i}`, rules })),
      rules,
      final: "direct",
    },
  }, { baseDir: "/" });
  return new Engine({
    rules: config.route.rules,
    final: config.route.final,
    ruleSets: config.route.rule_set.map((s) => ({
      tag: s.tag,
      rules: s.type === "inline" ? s.rules : [],
    })),
    ...(opts.geoip ? { geoip: opts.geoip } : {}),
  });
}

const ruleOf = (e: Engine, init: FlowInit) => e.match(flow(init)).rule;

Deno.test("Engine.match(): first matching rule wins, final otherwise", () => {
  const e = engine([
    { domain_suffix: "x.com", outbound: "a" },
    { domain: "a.x.com", outbound: "b" },
  ]);
  assert.deepEqual(e.match(flow({ domain: "a.x.com" })), { outbound: "a", rule: 0 });
  assert.deepEqual(e.match(flow({ domain: "y.com" })), { outbound: "direct", rule: null });
});

Deno.test("Engine.match(): a flow without a sniffed name matches no domain item", () => {
  const e = engine([{ domain_keyword: "x", outbound: "a" }, {
    domain_regex: ".*",
    outbound: "b",
  }]);
  assert.equal(ruleOf(e, {}), null);
  assert.equal(ruleOf(e, { domain: "" }), null);
  assert.equal(ruleOf(e, { domain: "q" }), 1);
});

Deno.test("Engine.match(): destination address items OR together, groups AND", () => {
  const e = engine([{
    domain: "x.com",
    ip_cidr: "10.0.0.0/8",
    port: 443,
    port_range: "8000:8100",
    outbound: "a",
  }]);
  assert.equal(ruleOf(e, { domain: "x.com", dport: 443 }), 0);
  assert.equal(ruleOf(e, { dst: "10.1.1.1", dport: 8050 }), 0);
  assert.equal(ruleOf(e, { dst: "10.1.1.1", dport: 80 }), null);
  assert.equal(ruleOf(e, { domain: "y.com", dport: 443 }), null);
});

Deno.test("Engine.match(): source groups and other fields must all match", () => {
  const e = engine([{
    source_ip_cidr: ["192.168.0.0/16", "fd00::/8"],
    source_port_range: ":1024",
    network: "udp",
    inbound: "other-in",
    protocol: ["quic"],
    outbound: "a",
  }]);
  const ok: FlowInit = {
    src: "192.168.3.4",
    sport: 1000,
    network: "udp",
    inbound: "other-in",
    protocol: "quic",
  };
  assert.equal(ruleOf(e, ok), 0);
  assert.equal(ruleOf(e, { ...ok, src: "fd00::1", dst: "2001:db8::1" }), 0);
  assert.equal(ruleOf(e, { ...ok, sport: 2000 }), null);
  assert.equal(ruleOf(e, { ...ok, network: "tcp" }), null);
  assert.equal(ruleOf(e, { ...ok, inbound: "tproxy-in" }), null);
  assert.equal(ruleOf(e, { ...ok, protocol: "tls" }), null);
  const { protocol: _, ...noProto } = ok;
  assert.equal(ruleOf(e, noProto), null);
});

Deno.test("Engine.match(): fwmark, dscp and ip_version", () => {
  const e = engine([
    { fwmark: "0x100/0xff00", outbound: "a" },
    { dscp: [46], ip_version: 6, outbound: "b" },
  ]);
  assert.equal(ruleOf(e, { mark: 0x1ab }), 0);
  assert.equal(ruleOf(e, { mark: 0x200 }), null);
  assert.equal(ruleOf(e, {}), null);
  assert.equal(ruleOf(e, { dscp: 46, src: "fd00::1", dst: "2001:db8::1" }), 1);
  assert.equal(ruleOf(e, { dscp: 46 }), null);
});

Deno.test('Engine.match(): ip_is_private and geoip, including geoip "private"', () => {
  const geoip: GeoIpLookup = { country: (a) => a[0] === 1 ? "cn" : null };
  const e = engine([
    { geoip: "CN", outbound: "a" },
    { ip_is_private: true, outbound: "b" },
    { source_geoip: "private", port: 53, outbound: "a" },
  ], { geoip });
  assert.equal(ruleOf(e, { dst: "1.2.3.4" }), 0);
  assert.equal(ruleOf(e, { dst: "10.0.0.1" }), 1);
  assert.equal(ruleOf(e, { dst: "8.8.8.8", dport: 53 }), 2);
  assert.equal(ruleOf(e, { dst: "8.8.8.8", dport: 53, src: "8.8.4.4" }), null);
});

Deno.test("Engine.match(): invert negates a rule", () => {
  const e = engine([{ domain_suffix: "cn", invert: true, outbound: "a" }]);
  assert.equal(ruleOf(e, { domain: "baidu.cn" }), null);
  assert.equal(ruleOf(e, { domain: "google.com" }), 0);
  assert.equal(ruleOf(e, {}), 0);
});

Deno.test("Engine.match(): logical and/or rules nest", () => {
  const e = engine([{
    type: "logical",
    mode: "and",
    rules: [
      { type: "logical", mode: "or", rules: [{ port: 443 }, { network: "udp" }] },
      { domain_suffix: "x.com" },
      { ip_cidr: "10.0.0.0/8", invert: true },
    ],
    outbound: "a",
  }]);
  assert.equal(ruleOf(e, { domain: "x.com", dport: 443 }), 0);
  assert.equal(ruleOf(e, { domain: "x.com", dport: 80, network: "udp" }), 0);
  assert.equal(ruleOf(e, { domain: "x.com", dport: 80 }), null);
  assert.equal(ruleOf(e, { domain: "x.com", dport: 443, dst: "10.0.0.1" }), null);
});

Deno.test("Engine.match(): rule_set items merge into the rule's groups", () => {
  const e = engine([{ domain: "own.com", port: 443, rule_set: ["s0"], outbound: "a" }], {
    ruleSets: [[{ domain_suffix: "set.com" }, { ip_cidr: "10.0.0.0/8", port: 80 }]],
  });
  // own destination item or the set's: either satisfies the address group.
  assert.equal(ruleOf(e, { domain: "own.com", dport: 443 }), 0);
  assert.equal(ruleOf(e, { domain: "a.set.com", dport: 443 }), 0);
  // The rule's own port group still applies to the set's domain rule.
  assert.equal(ruleOf(e, { domain: "a.set.com", dport: 80 }), null);
  // The set's second rule brings port 80 into the port group.
  assert.equal(ruleOf(e, { dst: "10.0.0.1", dport: 80 }), 0);
  assert.equal(ruleOf(e, { domain: "other.com", dport: 443 }), null);
});

Deno.test("Engine.explain() names the rule and its JSON, or final; it counts nothing", () => {
  const e = engine([{ domain: "x.com", outbound: "a" }]);
  const hit = e.explain(flow({ domain: "x.com" }));
  assert.deepEqual(hit, {
    outbound: "a",
    rule: 0,
    final: false,
    rule_json: { domain: "x.com", outbound: "a" },
  });
  assert.deepEqual(e.explain(flow({})), {
    outbound: "direct",
    rule: null,
    final: true,
    rule_json: null,
  });
  assert.equal(e.hits(0), 0);
  e.match(flow({ domain: "x.com" }));
  e.match(flow({}));
  assert.equal(e.hits(0), 1);
  assert.equal(e.finalHits, 1);
  // decide() is match() without the count; count() adds it when the decision is used.
  const d = e.decide(flow({ domain: "x.com" })), f = e.decide(flow({}));
  assert.deepEqual([d, f], [e.match(flow({ domain: "x.com" })), e.match(flow({}))]);
  assert.deepEqual([e.hits(0), e.finalHits], [2, 2]);
  e.count(d);
  e.count(f);
  assert.deepEqual([e.hits(0), e.finalHits], [3, 3]);
  // hitRules(): each rule with hits once (what RuleStats walks instead of every rule).
  assert.deepEqual(e.hitRules(), [0]);
  e.addHits(0, 5);
  e.addHits("final", 2);
  assert.deepEqual([e.hitRules(), e.hits(0), e.finalHits], [[0], 8, 5]);
  assert.throws(() => e.addHits(0, -1), RangeError);
});

Deno.test("Engine: many indexed rules still honour rule order", () => {
  const rules: Record<string, unknown>[] = [];
  for (let i = 0; i < 500; i++) rules.push({ domain_suffix: `d${i}.com`, outbound: "a" });
  rules.splice(250, 0, { domain_keyword: "d400", outbound: "b" });
  rules.push({ port: 443, outbound: "b" });
  const e = engine(rules);
  assert.equal(ruleOf(e, { domain: "x.d400.com" }), 250);
  assert.equal(ruleOf(e, { domain: "x.d100.com" }), 100);
  assert.equal(ruleOf(e, { domain: "x.d450.com" }), 451);
  assert.equal(ruleOf(e, { domain: "none.org", dport: 443 }), 501);
});

Deno.test("Engine.compile() pauses when due and builds the same engine as the constructor", async () => {
  const rules = Array.from(
    { length: 3000 },
    (_, i) =>
      i % 3 === 0 ? { domain_suffix: [`n${i}.com`], outbound: "a" } : i % 3 === 1
        ? {
          ip_cidr: [`10.${i >> 8}.${i & 255}.0/24`, `2001:db8:${i.toString(16)}::/48`],
          outbound: "b",
        }
        : { domain: `n${i}.com`, port: 443, outbound: "a" },
  );
  const sync = engine(rules);
  const config = parseConfig({
    outbounds: [{ type: "direct", tag: "direct" }, { type: "direct", tag: "a" }, {
      type: "direct",
      tag: "b",
    }],
    route: { rules, final: "direct" },
  }, { baseDir: "/" });
  let pauses = 0;
  const paced = await Engine.compile({ rules: config.route.rules, final: "direct" }, {
    due: () => true,
    pause: () => Promise.resolve(void pauses++),
  });
  assert.ok(pauses >= 3000 / 256, `${pauses} pauses`);
  for (
    const init of [
      { domain: "x.n3.com" },
      { domain: "n2.com" },
      { domain: "n2.com", dport: 80 },
      { dst: "10.0.4.1" },
      { dst: "2001:db8:7::1" },
      { domain: "n3000.com" },
    ]
  ) {
    assert.deepEqual(paced.match(flow(init)), sync.match(flow(init)), JSON.stringify(init));
  }
  assert.deepEqual(ruleOf(paced, { domain: "x.n3.com" }), 3);
  assert.deepEqual(ruleOf(paced, { domain: "n2.com" }), 2);
  assert.deepEqual(ruleOf(paced, { dst: "2001:db8:7::1" }), 7);
});

Deno.test("Engine.fromWire() after a transfer routes like the engine compiled in place", () => {
  const rules: unknown[] = [
    { domain_suffix: ["x.com"], outbound: "a" },
    { domain_keyword: ["goo"], port: 443, outbound: "b" },
    { rule_set: ["s0"], outbound: "b" },
    {
      type: "logical",
      mode: "or",
      rules: [{ port: 22 }, { domain_regex: "^ssh\\." }],
      outbound: "a",
    },
    { ip_cidr: ["10.0.0.0/8", "2001:db8::/32"], invert: true, network: "udp", outbound: "a" },
    { source_ip_cidr: ["192.168.0.0/16"], source_port_range: ["1000:2000"], outbound: "b" },
    { ip_cidr: ["172.16.0.0/12"], outbound: "b" },
  ];
  const ruleSets = [[{ domain: ["set.org"] }, { ip_cidr: ["9.9.0.0/16"], port: 53 }]];
  const here = engine(rules, { ruleSets });
  const config = parseConfig({
    outbounds: [{ type: "direct", tag: "direct" }, { type: "direct", tag: "a" }, {
      type: "direct",
      tag: "b",
    }],
    route: {
      rule_set: ruleSets.map((rules, i) => ({ type: "inline", tag: `s${i}`, rules })),
      rules,
      final: "direct",
    },
  }, { baseDir: "/" });
  const sets = config.route.rule_set.map((s) => ({
    tag: s.tag,
    rules: s.type === "inline" ? s.rules : [],
  }));
  const wire = Engine.compileWire({ rules: config.route.rules, final: "direct", ruleSets: sets });
  const transfer = wireTransferList(wire);
  assert.ok(transfer.length >= 10, `${transfer.length} buffers`);
  const moved = structuredClone(wire, { transfer });
  assert.equal(wire.image.nodeInfo.length, 0, "the buffers were moved, not copied");
  const there = Engine.fromWire(moved, {
    count: config.route.rules.length,
    outbound: (i) => config.route.rules[i]!.outbound,
    raw: (i) => config.route.rules[i]!.raw,
    fingerprint: () => 0,
    rules: config.route.rules,
  });
  const flows: FlowInit[] = [
    { domain: "a.x.com" },
    { domain: "google.com", dport: 443 },
    { domain: "google.com", dport: 80 },
    { domain: "set.org" },
    { dst: "9.9.1.1", dport: 53 },
    { dst: "9.9.1.1", dport: 54, network: "udp" },
    { domain: "ssh.host" },
    { dport: 22, dst: "10.1.1.1" },
    { dst: "10.1.1.1", network: "udp" },
    { dst: "11.1.1.1", network: "udp" },
    { dst: "2001:db8::1", network: "tcp", src: "192.168.3.3", sport: 1500 },
    { dst: "172.20.0.1" },
  ];
  for (const init of flows) {
    assert.deepEqual(there.explain(flow(init)), here.explain(flow(init)), JSON.stringify(init));
  }
  assert.deepEqual(there.layout, here.layout);
});

Deno.test("Engine.match(): a later index still decides when an earlier rule needs it", () => {
  // The domain hit proves rule 2 first; the CIDR, keyword, source and port
  // lookups must still run for the earlier rules 0 and 1.
  const e = engine([
    { ip_cidr: "10.0.0.0/8", outbound: "a" },
    {
      type: "logical",
      mode: "and",
      rules: [{ domain_keyword: "zz" }, { port: 8443 }],
      outbound: "b",
    },
    { domain: "x.zz.com", outbound: "direct" },
    { source_ip_cidr: "192.168.0.0/16", outbound: "a" },
  ]);
  assert.equal(ruleOf(e, { domain: "x.zz.com", dst: "10.1.2.3" }), 0);
  assert.equal(ruleOf(e, { domain: "x.zz.com", dst: "11.1.2.3", dport: 8443 }), 1);
  assert.equal(ruleOf(e, { domain: "x.zz.com", dst: "11.1.2.3" }), 2);
  assert.equal(ruleOf(e, { domain: "y.com", dst: "11.1.2.3", src: "192.168.1.1" }), 3);
});

Deno.test("Engine.match(): CIDR items inside a rule set count for a rule before a domain hit", () => {
  const e = engine([
    { rule_set: ["s0"], outbound: "a" },
    { domain: "x.com", outbound: "b" },
  ], { ruleSets: [[{ ip_cidr: "10.0.0.0/8" }]] });
  assert.equal(ruleOf(e, { domain: "x.com", dst: "10.1.2.3" }), 0);
  assert.equal(ruleOf(e, { domain: "x.com", dst: "11.1.2.3" }), 1);
});

Deno.test("Engine: engines share one thread's stamp arrays; interleaved lookups decide as separate ones", () => {
  let seed = 17;
  const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % n;
  const names = ["a.com", "b.com", "c.org", "x.a.com", "y.b.com"];
  const nets = ["10.0.0.0/8", "10.1.0.0/16", "192.0.2.0/24", "2001:db8::/32"];
  /** Rules whose nodes need stamps (a destination item and another group, or a source CIDR). */
  const rules = (count: number) =>
    Array.from({ length: count }, () => {
      const r: Record<string, unknown> = { outbound: ["a", "b", "direct"][rand(3)] };
      if (rand(2)) r.domain_suffix = [names[rand(names.length)]];
      if (rand(2)) r.ip_cidr = [nets[rand(nets.length)]];
      if (rand(2)) r.port = [443, 80][rand(2)];
      if (rand(3) === 0) r.source_ip_cidr = ["192.168.0.0/16"];
      if (Object.keys(r).length === 1) r.port = 22;
      return r;
    });
  const small = engine(rules(5)), big = engine(rules(400)), mid = engine(rules(60));
  const pick = <T>(xs: T[]): T => xs[rand(xs.length)]!;
  const flows = Array.from({ length: 600 }, () => {
    const init: FlowInit = {
      dst: pick(["10.1.2.3", "10.9.9.9", "192.0.2.7", "2001:db8::5", "93.184.216.34"]),
      dport: pick([443, 80, 22]),
      src: pick(["192.168.1.10", "172.16.0.1"]),
    };
    if (rand(3)) init.domain = `${pick(["q.", ""])}${pick(names)}`;
    return flow(init);
  });
  const engines = [small, big, mid];
  // Each engine alone, then all three interleaved flow by flow (the big one grew the arrays).
  const alone = engines.map((e) => flows.map((f) => e.explain(f).rule));
  const mixed: (number | null)[][] = [[], [], []];
  for (const f of flows) engines.forEach((e, k) => mixed[k]!.push(e.explain(f).rule));
  assert.deepEqual(mixed, alone);
  for (const d of alone) assert.ok(new Set(d).size >= 3, `varied decisions: ${[...new Set(d)]}`);
});
