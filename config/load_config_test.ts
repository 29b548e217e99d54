import assert from "node:assert/strict";
import { issuesOf } from "./_test_util.ts";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { flow } from "../rules/_testing.ts";
import { writeCountryMmdb } from "../tests/reference/mmdb_writer.ts";
import {
  compileEngine,
  loadConfig,
  MAX_CONFIG_BYTES,
  parseConfigPaced,
  readConfigFileSync,
  readFileCapped,
  readFileSyncCapped,
} from "./load_config.ts";
import { compileJob } from "./compile_job.ts";
import { TimeSlicer } from "../rules/pacing.ts";
import { CompactRule } from "../rules/compact_rule.ts";
import { parseConfig } from "./parse_config.ts";

const FIXTURE = fileURLToPath(new URL("./testdata/singbox_route.json", import.meta.url));

Deno.test("loadConfig() loads a sing-box route section unchanged (rule sets, actions, logical)", async () => {
  const { config, engine } = await loadConfig(FIXTURE);
  assert.equal(config.route.rules.length, 8);
  assert.equal(config.route.final, "proxy");
  const lan = { src: "192.168.50.7", sport: 40000 };
  const route = (init: Parameters<typeof flow>[0]) => engine.match(flow({ ...lan, ...init }));
  assert.deepEqual(route({ dport: 853 }), { outbound: "@reject", rule: 0 });
  assert.deepEqual(route({ protocol: "quic", network: "udp" }), {
    outbound: "@reject-drop",
    rule: 1,
  });
  assert.deepEqual(route({ dst: "10.1.2.3" }), { outbound: "direct", rule: 2 });
  assert.deepEqual(route({ domain: "x.doubleclick.net" }), { outbound: "@reject", rule: 3 });
  assert.deepEqual(route({ domain: "ad12.example.org" }), { outbound: "@reject", rule: 3 });
  assert.deepEqual(route({ domain: "www.netflix.com" }), { outbound: "wg-us", rule: 4 });
  assert.deepEqual(route({ dst: "45.57.1.1" }), { outbound: "wg-us", rule: 4 });
  assert.deepEqual(route({ domain: "mynetflixcdn.org", dport: 443 }), {
    outbound: "wg-us",
    rule: 4,
  });
  assert.deepEqual(route({ domain: "mynetflixcdn.org", dport: 80 }), {
    outbound: "proxy",
    rule: null,
  });
  assert.deepEqual(route({ domain: "www.hulu.com", dport: 8443 }), { outbound: "wg-us", rule: 4 });
  assert.deepEqual(route({ domain: "hulu.com", dport: 8443 }), { outbound: "proxy", rule: null });
  assert.deepEqual(route({ domain: "raw.githubusercontent.com" }), { outbound: "proxy", rule: 5 });
  assert.deepEqual(route({ dst: "ff02::1", src: "fd00::2" }), { outbound: "direct", rule: 6 });
  assert.deepEqual(route({ src: "192.168.1.1" }), { outbound: "block", rule: 7 });
  assert.deepEqual(route({ sport: 80 }), { outbound: "block", rule: 7 });
});

Deno.test("loadConfig() reads the GeoIP database relative to the config file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(join(dir, "country.mmdb"), writeCountryMmdb({ "1.2.0.0/16": "CN" }));
    await Deno.writeTextFile(
      join(dir, "router.json"),
      JSON.stringify({
        outbounds: [{ type: "direct", tag: "direct" }, { type: "block", tag: "block" }],
        route: {
          geoip: { path: "country.mmdb" },
          rules: [{ geoip: ["cn"], outbound: "block" }],
          final: "direct",
        },
      }),
    );
    const { engine } = await loadConfig(join(dir, "router.json"));
    assert.deepEqual(engine.match(flow({ dst: "1.2.3.4" })), { outbound: "block", rule: 0 });
    assert.deepEqual(engine.match(flow({ dst: "8.8.8.8" })), { outbound: "direct", rule: null });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadConfig() names the rule-set file and the path inside it", async () => {
  const files: Record<string, string> = {
    "/cfg/bad.json": JSON.stringify({
      version: 4,
      rules: [{ ip_cidr: ["10.0.0.0/8", "1.2.3.4/40"] }, { geoip: "cn" }],
    }),
    "/cfg/broken.json": "{ nope",
  };
  const readFile = (p: string) => {
    const text = files[p];
    if (text === undefined) return Promise.reject(new Deno.errors.NotFound(`no such file`));
    return Promise.resolve(new TextEncoder().encode(text));
  };
  const got = await issuesOf(loadConfig({
    inline: {
      outbounds: [{ type: "direct", tag: "direct" }],
      route: {
        geoip: { path: "missing.mmdb" },
        rule_set: [
          { type: "local", tag: "bad", path: "bad.json" },
          { type: "local", tag: "broken", path: "broken.json" },
          { type: "local", tag: "gone", path: "gone.json" },
        ],
      },
    },
    baseDir: "/cfg",
  }, { readFile }));
  assert.equal(got.length, 6, got.join("\n"));
  assert.deepEqual(got.slice(0, 3), [
    "route.rule_set[0](bad.json).version: 4: expected 1, 2 or 3",
    'route.rule_set[0](bad.json).rules[0].ip_cidr[1]: "1.2.3.4/40": prefix out of range',
    "route.rule_set[0](bad.json).rules[1].geoip: unknown field",
  ]);
  assert.match(got[3]!, /^route\.rule_set\[1\]\.path: "\/cfg\/broken\.json": invalid JSON: /);
  assert.equal(got[4], 'route.rule_set[2].path: cannot read "/cfg/gone.json": no such file');
  assert.equal(got[5], 'route.geoip.path: "/cfg/missing.mmdb": no such file');
});

Deno.test("loadConfig() reports an unreadable or malformed config file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const p = join(dir, "router.json");
    await Deno.writeTextFile(p, '{ "outbounds": [ }');
    const got = await issuesOf(loadConfig(p));
    assert.equal(got.length, 1);
    assert.match(got[0]!, /invalid JSON/);
    const missing = await issuesOf(loadConfig(join(dir, "nope.json")));
    assert.match(missing[0]!, /cannot read/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("compileEngine() uses an injected GeoIP lookup instead of the file", async () => {
  const config = parseConfig({
    outbounds: [{ type: "direct", tag: "direct" }, { type: "block", tag: "block" }],
    route: {
      geoip: { path: "/nonexistent.mmdb" },
      rules: [{ source_geoip: "jp", outbound: "block" }],
    },
  }, { baseDir: "/" });
  const engine = await compileEngine(config, { geoip: { country: () => "jp" } });
  assert.equal(engine.match(flow({})).outbound, "block");
});

/** A config with `n` route rules of many kinds (compact ones, rejects, ports, logical). */
function manyRules(n: number, extra: unknown[] = []): Record<string, unknown> {
  const rules: unknown[] = [];
  for (let i = 0; i < n; i++) {
    switch (i % 6) {
      case 0:
        rules.push({ domain_suffix: [`s${i}.com`], outbound: "direct" });
        break;
      case 1:
        rules.push({ ip_cidr: [`10.${i & 255}.${(i >> 8) & 255}.0/24`], outbound: "block" });
        break;
      case 2:
        rules.push({ domain: `Exact${i}.com`, action: "reject" }); // not compact: upper case
        break;
      case 3:
        rules.push({ port: [i & 0xffff], network: "udp", action: "reject", method: "drop" });
        break;
      case 4:
        rules.push({
          type: "logical",
          mode: "or",
          rules: [{ port: 1 }, { domain: "x" }],
          outbound: "direct",
        });
        break;
      default:
        rules.push({ domain_keyword: `k${i}`, ip_cidr: "2001:db8::/32", outbound: "direct" });
    }
  }
  rules.push(...extra);
  return {
    inbounds: [{ type: "tproxy", tag: "tproxy-in", listen_port: 7893 }],
    outbounds: [{ type: "direct", tag: "direct" }, { type: "block", tag: "block" }],
    route: { rules, final: "direct" },
  };
}

/** Pacing that pauses at every check, without waiting. */
const eager = () => new TimeSlicer({ sliceMs: 0, yieldTurn: () => Promise.resolve() });

Deno.test("parseConfigPaced() returns what parseConfig() returns, in slices", async () => {
  const raw = manyRules(3000);
  const want = parseConfig(raw, { baseDir: "/" });
  const pacing = eager();
  const got = await parseConfigPaced(raw, { baseDir: "/" }, pacing);
  assert.ok(pacing.pauses >= 10, `${pacing.pauses} pauses`);
  assert.deepEqual(got.outbounds, want.outbounds, "implicit reject outbounds are added");
  assert.equal(got.route.rules.length, want.route.rules.length);
  got.route.rules.forEach((r, i) => {
    const w = want.route.rules[i]!;
    assert.equal(r.outbound, w.outbound);
    assert.equal(r.raw, w.raw);
    assert.deepEqual(r.match, w.match, `rule ${i}`);
  });
  assert.ok(got.route.rules[0] instanceof CompactRule, "plain domain rules take the fast path");
  assert.ok(!(got.route.rules[2] instanceof CompactRule));
  assert.deepEqual({ ...got, route: { ...got.route, rules: [] }, outbounds: [] }, {
    ...want,
    route: { ...want.route, rules: [] },
    outbounds: [],
  });
});

Deno.test("parseConfigPaced() reports the same issues as parseConfig()", async () => {
  for (
    const raw of [
      manyRules(2000, [{ ip_cidr: ["10.0.0.0/33"], outbound: "direct" }, {
        domain: 1,
        outbound: "nope",
      }]),
      { ...manyRules(2000), log: { level: "loud" } },
    ]
  ) {
    const want = await issuesOf(Promise.resolve().then(() => parseConfig(raw, { baseDir: "/" })));
    assert.ok(want.length > 0);
    assert.deepEqual(await issuesOf(parseConfigPaced(raw, { baseDir: "/" }, eager())), want);
  }
});

Deno.test("loadConfig() pauses while it parses and compiles a big config file", async () => {
  const raw = manyRules(6000);
  const text = JSON.stringify(raw, null, 2);
  assert.ok(text.length > 512 * 1024, "big enough for the piecewise JSON parse");
  const pacing = eager();
  const { engine } = await loadConfig("/cfg/big.json", {
    readFile: () => Promise.resolve(new TextEncoder().encode(text)),
    pacing,
  });
  assert.ok(pacing.pauses > 30, `${pacing.pauses} pauses`);
  assert.equal(engine.ruleCount, 6000);
  assert.deepEqual(engine.match(flow({ domain: "a.s6.com" })), { outbound: "direct", rule: 6 });
  assert.deepEqual(engine.match(flow({ dst: "10.7.0.9" })), { outbound: "block", rule: 7 });
  assert.deepEqual(engine.match(flow({ domain: "exact8.com" })), { outbound: "@reject", rule: 8 });
});

Deno.test("readFileSyncCapped() reads whole files, and no more than the limit of bigger ones", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const p = join(dir, "f");
    for (const n of [0, 1, 4095, 4096, 200_000]) {
      const data = Uint8Array.from({ length: n }, (_, i) => (i * 7 + n) & 0xff);
      await Deno.writeFile(p, data);
      assert.deepEqual(readFileSyncCapped(p, 1 << 20), data, `${n} bytes`);
      if (n > 10) assert.deepEqual(readFileSyncCapped(p, 10), data.subarray(0, 10));
    }
    assert.throws(() => readFileSyncCapped(join(dir, "missing"), 10), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a config file over MAX_CONFIG_BYTES is refused without being read whole", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // Sparse: no disk space used.
    const p = join(dir, "huge.json");
    using f = await Deno.open(p, { write: true, create: true });
    await f.truncate(4 * MAX_CONFIG_BYTES);
    assert.equal(readFileSyncCapped(p, MAX_CONFIG_BYTES + 1).length, MAX_CONFIG_BYTES + 1);
    const r = await compileJob({ id: 1, source: p }, { readFile: readConfigFileSync });
    assert.equal(r.reply.ok, false);
    assert.ok(!r.reply.ok);
    assert.match(r.reply.error.message, /larger than 67108864 bytes/);
    assert.equal((await readFileCapped(p, 100)).length, 100);
    assert.match(
      (await issuesOf(loadConfig(p))).join("\n"),
      /huge.json": larger than 67108864 bytes/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
