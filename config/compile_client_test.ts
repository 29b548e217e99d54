import assert from "node:assert/strict";
import { issuesOf } from "./_test_util.ts";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { flow, type FlowInit } from "../rules/_testing.ts";
import { RuleStats } from "../rules/rule_stats.ts";
import { writeCountryMmdb } from "../tests/reference/mmdb_writer.ts";
import { CompileWorker, defaultWorkerUrl, GeoIpCache } from "./compile_client.ts";
import {
  compileJob,
  CompileMemo,
  type JobDone,
  type JobReply,
  MEMO_MAX_BYTES,
} from "./compile_job.ts";
import { loadConfig } from "./load_config.ts";

/** A reply that must be a full (not reused, not failed) one. */
function full(reply: JobReply): JobDone {
  assert.ok(reply.ok && "wire" in reply, "a full reply");
  return reply;
}

const FIXTURE = fileURLToPath(new URL("./testdata/singbox_route.json", import.meta.url));

/** Flows that exercise every rule of the fixture and of {@linkcode bigConfig}. */
const FLOWS: FlowInit[] = [
  { dport: 853, src: "192.168.50.7", sport: 40000 },
  { protocol: "quic", network: "udp", src: "192.168.50.7", sport: 40000 },
  { dst: "10.1.2.3" },
  { domain: "x.doubleclick.net" },
  { domain: "ad12.example.org" },
  { domain: "www.netflix.com" },
  { dst: "45.57.1.1" },
  { domain: "mynetflixcdn.org", dport: 443 },
  { domain: "www.hulu.com", dport: 8443, src: "192.168.50.7", sport: 40000 },
  { domain: "raw.githubusercontent.com" },
  { dst: "ff02::1", src: "fd00::2" },
  { src: "192.168.1.1" },
  { domain: "n7.example.com" },
  { domain: "a.s1500.example.net" },
  { domain: "kw33x.org" },
  { dst: "10.20.3.4" },
  { dst: "2001:db8:2a::1" },
  { dst: "1.2.3.4" },
  { domain: "none.invalid", dport: 8080 },
];

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "compile-client-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function withWorker(fn: (w: CompileWorker) => Promise<void>): Promise<void> {
  const fallbacks: Error[] = [];
  const w = new CompileWorker({ onFallback: (e) => fallbacks.push(e) });
  try {
    await fn(w);
    assert.equal((await w.load(FIXTURE)).compiledOn, "worker");
    assert.deepEqual(fallbacks, [], "the worker itself must not fail");
  } finally {
    w.close();
  }
}

/** A config big enough for the paths that only big rule lists take. */
function bigConfig(geoip: string | null): unknown {
  const rules: unknown[] = [];
  for (let i = 0; i < 3000; i++) {
    if (i % 3 === 0) rules.push({ domain: [`n${i % 100}.example.com`], outbound: "a" });
    else if (i % 3 === 1) rules.push({ domain_suffix: [`s${i}.example.net`], outbound: "b" });
    else {rules.push({
        ip_cidr: [`10.${i >> 8}.${i & 255}.0/24`, `2001:db8:${i.toString(16)}::/48`],
        outbound: "a",
      });}
  }
  rules.splice(10, 0, { domain_keyword: ["kw33"], port: [443, 80], outbound: "b" });
  rules.splice(20, 0, { domain_keyword: ["kw33"], outbound: "a" });
  rules.push({ port_range: ["8000:8100"], network: "tcp", outbound: "b" });
  if (geoip) rules.push({ geoip: ["cn"], outbound: "b" });
  rules.push({
    type: "logical",
    mode: "and",
    rules: [{ ip_is_private: true }, { invert: true, port: 22 }],
    outbound: "a",
  });
  return {
    outbounds: [{ type: "direct", tag: "a" }, { type: "direct", tag: "b" }, {
      type: "direct",
      tag: "direct",
    }],
    route: { ...(geoip ? { geoip: { path: geoip } } : {}), rules, final: "direct" },
  };
}

Deno.test("CompileWorker.load() builds an engine that routes, explains and fingerprints like loadConfig()", async () => {
  await withDir(async (dir) => {
    await Deno.writeFile(join(dir, "country.mmdb"), writeCountryMmdb({ "1.2.0.0/16": "CN" }));
    const big = join(dir, "big.json");
    await Deno.writeTextFile(big, JSON.stringify(bigConfig("country.mmdb"), null, 1));
    await withWorker(async (w) => {
      for (const source of [FIXTURE, big]) {
        const a = await w.load(source);
        const b = await loadConfig(source);
        assert.equal(a.engine.ruleCount, b.engine.ruleCount);
        assert.equal(a.config.route.rules.length, b.config.route.rules.length);
        assert.deepEqual(a.config.outbounds, b.config.outbounds);
        for (const init of FLOWS) {
          assert.deepEqual(
            a.engine.explain(flow(init)),
            b.engine.explain(flow(init)),
            JSON.stringify(init),
          );
        }
        for (let i = 0; i < a.engine.ruleCount; i++) {
          assert.equal(a.engine.fingerprint(i), b.engine.fingerprint(i), `rule ${i}`);
          assert.equal(a.engine.outboundOf(i), b.engine.outboundOf(i));
        }
        // The lazily built rule list decodes each rule's JSON and spec.
        assert.deepEqual(
          a.config.route.rules.map((r) => r.raw),
          b.config.route.rules.map((r) => r.raw),
        );
        assert.deepEqual(a.engine.rules[4]!.match, b.engine.rules[4]!.match);
      }
    });
  });
});

Deno.test("CompileWorker.load() accepts inline configs and carries hit counts from an in-thread engine", async () => {
  await withWorker(async (w) => {
    const inline = bigConfig(null);
    const first = await loadConfig({ inline });
    const stats = new RuleStats();
    stats.adopt(first.engine);
    first.engine.match(flow({ domain: "n7.example.com" }));
    first.engine.match(flow({ dst: "10.20.3.4" }));
    const next = await w.load({ inline });
    stats.adopt(next.engine);
    const hit = stats.snapshot().filter((r) => r.hits > 0);
    assert.deepEqual(hit.map((r) => r.rule), [
      first.engine.match(flow({ domain: "n7.example.com" })).rule,
      first.engine.match(flow({ dst: "10.20.3.4" })).rule,
    ]);
  });
});

Deno.test("CompileWorker.load() reports the same ConfigError issues as loadConfig()", async () => {
  await withDir(async (dir) => {
    const write = async (name: string, value: unknown) => {
      const p = join(dir, name);
      await Deno.writeTextFile(p, typeof value === "string" ? value : JSON.stringify(value));
      return p;
    };
    const bad = structuredClone(bigConfig(null)) as { route: { rules: unknown[] } };
    bad.route.rules[3] = { ip_cidr: ["10.0.0.0/33"], outbound: "a" };
    const sources = [
      await write("syntax.json", '{ "route": [1, 2,, ] }'),
      await write("invalid.json", bad),
      await write("refs.json", {
        outbounds: [{ type: "direct", tag: "a" }],
        route: {
          geoip: { path: "missing.mmdb" },
          rule_set: [{ type: "local", tag: "s", format: "source", path: "missing-set.json" }],
          rules: [{ rule_set: "s", outbound: "a" }],
        },
      }),
      await write("geoip.json", {
        outbounds: [{ type: "direct", tag: "a" }],
        route: { geoip: { path: "syntax.json" }, rules: [{ geoip: "cn", outbound: "a" }] },
      }),
      join(dir, "absent.json"),
    ];
    await withWorker(async (w) => {
      for (const source of sources) {
        const expected = await issuesOf(loadConfig(source));
        assert.ok(expected.length > 0);
        assert.deepEqual(await issuesOf(w.load(source)), expected, source);
      }
      assert.deepEqual(
        await issuesOf(w.load({ inline: { route: { rules: [{ port: 70000, outbound: "x" }] } } })),
        await issuesOf(
          loadConfig({ inline: { route: { rules: [{ port: 70000, outbound: "x" }] } } }),
        ),
      );
      assert.equal(w.pending, 0);
    });
  });
});

Deno.test("CompileWorker.load() falls back to the calling thread when the worker cannot run", async () => {
  const fallbacks: Error[] = [];
  // A worker whose module fails at once (as when a single-file bundle lacks the worker module).
  const w = new CompileWorker({
    onFallback: (e) => fallbacks.push(e),
    workerUrl: new URL("data:application/javascript,throw new Error('no worker here')"),
  });
  try {
    const { engine, compiledOn } = await w.load(FIXTURE);
    assert.deepEqual(engine.match(flow({ domain: "raw.githubusercontent.com" })), {
      outbound: "proxy",
      rule: 5,
    });
    assert.equal(compiledOn, "main");
    assert.equal(fallbacks.length, 1);
    assert.equal((await w.load(FIXTURE)).compiledOn, "main"); // not retried: no second failure
    assert.equal(fallbacks.length, 1);
  } finally {
    w.close();
  }
});

Deno.test("GeoIpCache.open() reuses a reader until the file changes", async () => {
  await withDir(async (dir) => {
    const p = join(dir, "c.mmdb");
    let reads = 0;
    const cache = new GeoIpCache((path) => (reads++, Deno.readFile(path)));
    await Deno.writeFile(p, writeCountryMmdb({ "1.2.0.0/16": "CN" }));
    const a = await cache.open(p);
    assert.equal(await cache.open(p), a);
    assert.equal(reads, 1);
    await Deno.writeFile(p, writeCountryMmdb({ "1.2.0.0/16": "CN", "5.6.0.0/16": "DE" }));
    const b = await cache.open(p);
    assert.notEqual(b, a);
    assert.equal(b.country(new Uint8Array([5, 6, 7, 8])), "de");
    await assert.rejects(cache.open(join(dir, "none.mmdb")), /No such file/);
  });
});

Deno.test("compileJob() posts a big rule list's spans and fingerprints in a tail after the engine", async () => {
  await withDir(async (dir) => {
    const big = join(dir, "big.json");
    await Deno.writeTextFile(big, JSON.stringify(bigConfig(null)));
    // Read from the bytes (rule_scan.ts): the spans come at once, the fingerprints in the tail.
    const r = await compileJob({ id: 7, source: big }, { scanMinBytes: 0 });
    assert.ok(r.reply.ok);
    assert.equal(full(r.reply).rules.fingerprints, null);
    assert.equal(full(r.reply).rules.spans?.length, 2 * full(r.reply).wire.ruleCount);
    assert.ok(r.tail, "a tail follows");
    const t = r.tail();
    assert.equal(t.reply.id, 7);
    assert.equal(t.reply.tail.fingerprints.length, full(r.reply).wire.ruleCount);
    assert.equal(t.reply.tail.spans, undefined);
    assert.equal(t.reply.tail.text, undefined);
    // Through JSON.parse (an escaped key keeps the byte scanner out): spans in the tail too.
    const escaped = join(dir, "escaped.json");
    await Deno.writeTextFile(
      escaped,
      JSON.stringify(bigConfig(null)).replace('"route"', '"r\\u006fute"'),
    );
    const g = await compileJob({ id: 9, source: escaped });
    assert.ok(g.reply.ok);
    assert.equal(full(g.reply).rules.fingerprints, null);
    assert.equal(full(g.reply).rules.spans, null);
    const gt = g.tail!();
    assert.equal(gt.reply.tail.spans?.length, 2 * full(g.reply).wire.ruleCount);
    assert.equal(gt.reply.tail.text, undefined, "spans point into the file's bytes");
    const small = await compileJob({ id: 8, source: FIXTURE });
    assert.ok(full(small.reply).rules.fingerprints !== null);
    assert.equal(small.tail, undefined);
  });
});

Deno.test("CompileWorker.load() of a big file carries hit counts once the worker's fingerprints arrive", async () => {
  await withDir(async (dir) => {
    const big = join(dir, "big.json");
    await Deno.writeTextFile(big, JSON.stringify(bigConfig(null)));
    await withWorker(async (w) => {
      const first = await loadConfig(big);
      const stats = new RuleStats();
      stats.adopt(first.engine);
      const a = first.engine.match(flow({ domain: "n7.example.com" })).rule;
      const b = first.engine.match(flow({ dst: "10.20.3.4" })).rule;
      const next = await w.load(big);
      stats.adopt(next.engine);
      await stats.settled();
      assert.equal(next.engine.fingerprintsReady, null, "the tail arrived");
      const hit = stats.snapshot().filter((r) => r.hits > 0).map((r) => r.rule);
      assert.deepEqual(hit, [a, b]);
      for (let i = 0; i < next.engine.ruleCount; i++) {
        assert.equal(next.engine.fingerprint(i), first.engine.fingerprint(i), `rule ${i}`);
      }
    });
  });
});

Deno.test("CompileWorker.load() reuses the indexes when a reload leaves the route rules unchanged", async () => {
  await withDir(async (dir) => {
    const file = join(dir, "c.json");
    type Cfg = {
      outbounds: Record<string, unknown>[];
      route: { rules: Record<string, unknown>[]; final: string };
    };
    const write = (c: Cfg) => Deno.writeTextFile(file, JSON.stringify(c, null, 1));
    const base = bigConfig(null) as Cfg;
    const check = async (w: CompileWorker, reused: boolean, label: string) => {
      const got = await w.load(file);
      const want = await loadConfig(file);
      assert.equal(got.reused ?? false, reused, label);
      assert.deepEqual(got.config.outbounds, want.config.outbounds, label);
      for (const init of FLOWS) {
        assert.deepEqual(got.engine.explain(flow(init)), want.engine.explain(flow(init)), label);
      }
      return got;
    };
    await withWorker(async (w) => {
      await write(base);
      const first = await check(w, false, "first load");
      const stats = new RuleStats();
      stats.adopt(first.engine);
      const hitRule = first.engine.match(flow({ domain: "n7.example.com" })).rule;
      await check(w, true, "same file");
      // An outbound edited (not its tag), more whitespace outside the rules, another final.
      const edited: Cfg = {
        ...base,
        outbounds: base.outbounds.map((o) => o.tag === "b" ? { ...o, routing_mark: 7 } : o),
        route: { ...base.route, final: "b" },
      };
      await write(edited);
      const second = await check(w, true, "outbound and final edited");
      assert.equal(second.engine.final, "b");
      stats.adopt(second.engine);
      await stats.settled();
      assert.deepEqual(stats.snapshot().filter((r) => r.hits > 0).map((r) => r.rule), [hitRule]);
      // Anything the rules depend on changed: compiled again.
      const oneRule = structuredClone(edited);
      oneRule.route.rules[5] = { domain: ["changed.example"], outbound: "a" };
      await write(oneRule);
      await check(w, false, "one rule changed");
      await check(w, true, "and again unchanged");
      await write({ ...oneRule, outbounds: [...oneRule.outbounds, { type: "block", tag: "c" }] });
      await check(w, false, "an outbound tag added");
      // A failed reload keeps the engine the worker can reuse.
      await Deno.writeTextFile(file, "{");
      await assert.rejects(() => w.load(file));
      await write(oneRule);
      await check(w, false, "back to an earlier version");
      await Deno.writeTextFile(file, "{");
      await assert.rejects(() => w.load(file));
      await write(oneRule);
      await check(w, true, "unchanged after a failed reload");
      // An inline config: the next file load compiles in full.
      await w.load({ inline: oneRule });
      await check(w, false, "after an inline load");
    });
  });
});

Deno.test("CompileWorker.load() never reuses rules that use rule-set files", async () => {
  await withDir(async (dir) => {
    const set = join(dir, "set.json");
    const file = join(dir, "c.json");
    const config = {
      outbounds: [{ type: "direct", tag: "a" }, { type: "block", tag: "b" }],
      route: {
        rule_set: [{ type: "local", tag: "s", path: "set.json" }],
        rules: [{ rule_set: ["s"], outbound: "b" }, { domain: ["x.example"], outbound: "a" }],
        final: "a",
      },
    };
    await Deno.writeTextFile(file, JSON.stringify(config));
    await withWorker(async (w) => {
      for (const domain of ["one.example", "two.example"]) {
        await Deno.writeTextFile(
          set,
          JSON.stringify({ version: 1, rules: [{ domain: [domain] }] }),
        );
        const got = await w.load(file);
        assert.equal(got.reused ?? false, false);
        assert.equal(got.engine.match(flow({ domain })).outbound, "b");
      }
    });
  });
});

Deno.test("compileJob() answers JobReused for unchanged rules, whichever parser read them", async () => {
  await withDir(async (dir) => {
    const file = join(dir, "c.json");
    const config = bigConfig(null) as { route: { final: string } };
    for (const scanMinBytes of [0, Infinity]) {
      const memo = new CompileMemo();
      await Deno.writeTextFile(file, JSON.stringify(config));
      const first = await compileJob({ id: 1, source: file }, { scanMinBytes }, memo);
      full(first.reply);
      await Deno.writeTextFile(
        file,
        JSON.stringify({ ...config, route: { ...config.route, final: "b" } }),
      );
      const again = await compileJob({ id: 2, source: file, prev: 1 }, { scanMinBytes }, memo);
      assert.ok(again.reply.ok && "reused" in again.reply, `scanMinBytes ${scanMinBytes}`);
      assert.equal(again.reply.reused, 1);
      assert.equal(again.reply.config.route.final, "b");
      // Only the job named by `prev` is reused.
      const other = await compileJob({ id: 3, source: file, prev: 2 }, { scanMinBytes }, memo);
      full(other.reply);
    }
  });
});

Deno.test("CompileMemo keeps rules arrays up to MEMO_MAX_BYTES, and only reusable ones", () => {
  const memo = new CompileMemo();
  const small = { rules: new Uint8Array(10), context: "ctx", rejects: [] };
  memo.remember(1, small);
  assert.deepEqual(memo.of(1)?.rules, small.rules);
  assert.equal(memo.of(2), null, "only the job remembered");
  memo.remember(2, { ...small, rules: new Uint8Array(MEMO_MAX_BYTES + 1) });
  assert.equal(memo.of(1), null, "a new job replaces the old one");
  assert.equal(memo.of(2), null, "too big to keep");
  memo.remember(3, { ...small, context: null });
  assert.equal(memo.of(3), null, "rules with rule-set files are never reused");
});

Deno.test("defaultWorkerUrl() finds the worker module beside the source, or beside a bundle", () => {
  assert.equal(
    defaultWorkerUrl("file:///repo/config/compile_client.ts").href,
    "file:///repo/config/compile_worker.ts",
  );
  assert.equal(
    defaultWorkerUrl("file:///opt/router/dist/router.bundle.js").href,
    "file:///opt/router/dist/compile_worker.js",
  );
});
