import assert from "node:assert/strict";
import { join } from "node:path";
import { formatIp } from "../core/ip.ts";
import { writeCountryMmdb } from "../tests/reference/mmdb_writer.ts";
import { Rand, randomConfig, randomFlow, randomRule } from "../tests/reference/random_rules.ts";
import { Engine } from "../rules/engine.ts";
import { flow } from "../rules/_testing.ts";
import { RuleStats } from "../rules/rule_stats.ts";
import { CompileWorker } from "./compile_client.ts";
import { ConfigError } from "./config_error.ts";
import { loadConfig } from "./load_config.ts";
import {
  baseAsCurrent,
  contextFits,
  memberSpans,
  parseConfigPatch,
  type PatchBase,
} from "./rule_patch.ts";
import { rulesContext } from "./rule_scan.ts";
import { parseConfig } from "./parse_config.ts";

const enc = new TextEncoder();

Deno.test("memberSpans() splits an array into its members, whitespace and strings respected", () => {
  const text = enc.encode(`x [ {"a":"],}"} ,\n[1,[2]], "s\\"" ,3 ] y`);
  const open = text.indexOf(91), close = text.lastIndexOf(93) + 1;
  const spans = memberSpans(text, open, close)!;
  const dec = new TextDecoder();
  const got = [];
  for (let i = 0; i < spans.length; i += 2) {
    got.push(dec.decode(text.subarray(spans[i], spans[i + 1])));
  }
  assert.deepEqual(got, [`{"a":"],}"}`, "[1,[2]]", `"s\\""`, "3"]);
  assert.equal(memberSpans(enc.encode("[ ]"), 0, 3)!.length, 0);
  assert.equal(memberSpans(enc.encode("[1 2]"), 0, 5), null);
  // However many members were expected (the array grows past the guess, or is cut to size).
  const many = enc.encode(JSON.stringify(Array.from({ length: 50 }, (_, i) => ({ r: i }))));
  const want = Array.from({ length: 50 }, (_, i) => JSON.stringify({ r: i }));
  for (const expect of [0, 1, 49, 50, 51, 500]) {
    const s = memberSpans(many, 0, many.length, expect)!;
    assert.equal(s.length, 100, `expect ${expect}`);
    const texts = [];
    for (let i = 0; i < s.length; i += 2) texts.push(dec.decode(many.subarray(s[i], s[i + 1])));
    assert.deepEqual(texts, want, `expect ${expect}`);
  }
});

/** A base for {@linkcode parseConfigPatch} from a config text (as the worker would remember it). */
function baseOf(text: string): PatchBase {
  const file = enc.encode(text);
  const config = parseConfig(JSON.parse(text), { baseDir: "/" });
  const open = text.indexOf("[", text.indexOf('"rules"'));
  let close = open, depth = 0;
  for (; close < text.length; close++) {
    if (text[close] === "[") depth++;
    else if (text[close] === "]" && --depth === 0) break;
  }
  const rejects = config.route.rules.flatMap((r, rule) =>
    r.outbound.startsWith("@") ? [{ rule, tag: r.outbound }] : []
  );
  const parts = Engine.compileWire({ rules: config.route.rules, final: config.route.final });
  return {
    file,
    open,
    close: close + 1,
    context: rulesContext(config)!,
    rejects,
    parts,
  };
}

const cfg = (rules: unknown[], extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    outbounds: [{ type: "direct", tag: "direct" }, { type: "block", tag: "block" }],
    ...extra,
    route: { rules, final: "direct" },
    log: { level: "info" },
  });

Deno.test("parseConfigPatch() finds the edited stretch, and refuses what it must not patch", () => {
  const rules = [1, 2, 3, 4].map((i) => ({ domain: [`r${i}.example`], outbound: "block" }));
  const base = baseOf(cfg(rules));
  const patch = (text: string) =>
    parseConfigPatch(enc.encode(text), base, baseAsCurrent(base)!, { baseDir: "/" });
  const added = { domain_suffix: ["new.example"], outbound: "direct" };

  assert.deepEqual(patch(cfg([rules[0], added, rules[2], rules[3]]))?.stretches[0], {
    prefix: 1,
    removed: 1,
    added: 1,
  });
  assert.deepEqual(patch(cfg([added, ...rules]))?.stretches[0], {
    prefix: 0,
    removed: 0,
    added: 1,
  });
  assert.deepEqual(patch(cfg([...rules, added]))?.stretches[0], {
    prefix: 4,
    removed: 0,
    added: 1,
  });
  assert.deepEqual(patch(cfg([rules[0], rules[3]]))?.stretches[0], {
    prefix: 1,
    removed: 2,
    added: 0,
  });
  assert.deepEqual(patch(cfg([]))?.stretches[0], { prefix: 0, removed: 4, added: 0 });
  // Only an outbound changed: the rule's text differs in its last bytes.
  const retarget = { ...rules[1], outbound: "direct" };
  assert.deepEqual(patch(cfg([rules[0], retarget, rules[2], rules[3]]))?.stretches[0], {
    prefix: 1,
    removed: 1,
    added: 1,
  });
  assert.deepEqual(
    patch(cfg([...rules.slice(0, 3), { ...rules[3], outbound: "direct" }]))?.stretches[0],
    {
      prefix: 3,
      removed: 1,
      added: 1,
    },
  );
  // Only the first key changed: the texts differ in their first bytes.
  const rekeyed = { domain_suffix: ["r3.example"], outbound: "block" };
  assert.deepEqual(patch(cfg([rules[0], rules[1], rekeyed, rules[3]]))?.stretches[0], {
    prefix: 2,
    removed: 1,
    added: 1,
  });
  const p = patch(cfg([rules[0], added, added, rules[3]]))!;
  assert.deepEqual(p.stretches[0], { prefix: 1, removed: 2, added: 2 });
  assert.equal(p.config.route.rules.length, 2);
  assert.equal(
    new TextDecoder().decode(p.text.subarray(p.spans[2], p.spans[3])),
    JSON.stringify(added),
  );
  // The outbounds may change too (they come before the rules)…
  const more = cfg([rules[0], added], {
    outbounds: [{ type: "direct", tag: "direct", connect_timeout: "3s" }, {
      type: "block",
      tag: "block",
    }],
  });
  assert.deepEqual(patch(more)?.stretches[0], { prefix: 1, removed: 3, added: 1 });
  // …and gain tags, with rules that use them (the other rules stay valid),
  const outbounds = [{ type: "direct", tag: "direct" }, { type: "block", tag: "block" }];
  const wider = patch(
    cfg([...rules, { domain: ["w.example"], outbound: "wg" }], {
      outbounds: [...outbounds, { type: "direct", tag: "wg" }],
    }),
  );
  assert.deepEqual(wider?.stretches[0], { prefix: 4, removed: 0, added: 1 });
  assert.deepEqual(wider?.config.outbounds.map((o) => o.tag), ["direct", "block", "wg"]);
  // …but not lose one (a kept rule may use it).
  assert.equal(patch(cfg([rules[0]], { outbounds: [outbounds[1]] })), null);
  // What follows the array may change too (its end is then found by walking it),
  const later = patch(
    cfg([rules[0], added, rules[2], rules[3]]).replace('"final":"direct"', '"final":"block"'),
  );
  assert.deepEqual(later?.stretches[0], { prefix: 1, removed: 1, added: 1 });
  assert.equal(later?.config.route.final, "block");
  assert.equal(patch(cfg(rules).replace('"info"', '"debug"'))?.config.log.level, "debug");
  // but not an invalid new rule, nor broken JSON.
  assert.equal(patch(cfg([rules[0], { domain: ["x"], outbound: "nowhere" }])), null);
  assert.equal(patch(cfg(rules).replace("},{", "},,{")), null);
  assert.equal(patch(cfg(rules).replace("},{", "} {")), null);
  assert.equal(patch(cfg(rules).replace("},{", "},1,{")), null); // a value, but not a rule
});

Deno.test("parseConfigPatch() gives up past maxAdded rules the base lacks, counting earlier edits", () => {
  const rules = [1, 2, 3, 4, 5, 6].map((i) => ({ domain: [`r${i}.example`], outbound: "block" }));
  const base = baseOf(cfg(rules));
  const fresh = (i: number) => ({ domain_suffix: [`new${i}.example`], outbound: "direct" });
  const patch = (text: string, current = baseAsCurrent(base)!) =>
    parseConfigPatch(enc.encode(text), base, current, { baseDir: "/" }, 2);
  // Two new rules in one stretch: within the limit; three: a full compile (the stretch's
  // walk stops at the third).
  const two = patch(cfg([rules[0], fresh(1), fresh(2), ...rules.slice(3)]));
  assert.deepEqual(two?.stretches, [{ prefix: 1, removed: 2, added: 2 }]);
  assert.equal(patch(cfg([rules[0], fresh(1), fresh(2), fresh(3), ...rules.slice(4)])), null);
  // Every rule replaced (the rules reversed): a full compile.
  assert.equal(patch(cfg([...rules].reverse())), null);
  // One more new rule elsewhere, after a patch that added two: three against the base.
  const one = cfg([rules[0], fresh(1), fresh(2), rules[3], rules[4], fresh(9)]);
  assert.equal(patch(one, two!.current), null);
  // Against the base alone the same file is one stretch of five rules (all compiled anew).
  assert.equal(patch(one), null);
  // With one new rule more allowed, it is a patch of the last file: two stretches of the base.
  const wide = parseConfigPatch(enc.encode(one), base, two!.current, { baseDir: "/" }, 3);
  assert.deepEqual(wide?.stretches, [
    { prefix: 1, removed: 2, added: 2 },
    { prefix: 5, removed: 1, added: 1 },
  ]);
});

/** A random edit of `rules`: one rule's outbound, or a stretch replaced by 0..4 new random rules. */
function edit(r: Rand, rules: unknown[], tags: readonly string[]): unknown[] {
  if (rules.length > 0 && r.chance(0.3)) {
    // Only a rule's outbound: its text differs in its last bytes.
    const k = r.int(rules.length), rule = { ...(rules[k] as Record<string, unknown>) };
    delete rule.action;
    rule.outbound = rule.outbound === "direct" ? "proxy" : "direct";
    return rules.map((x, i) => i === k ? rule : x);
  }
  const P = r.int(rules.length + 1), R = r.int(Math.min(4, rules.length - P) + 1);
  const added = Array.from({ length: r.int(5) }, () => {
    const rule = randomRule(r, tags, 2) as Record<string, unknown>;
    return r.chance(0.15)
      ? { ...rule, action: "reject" }
      : { ...rule, outbound: r.pick(["direct", "proxy"]) };
  });
  return [...rules.slice(0, P), ...added, ...rules.slice(P + R)];
}

/**
 * Random configs, each edited 4 times in a row (edits pile up), loaded by
 * the worker and by loadConfig(): same decisions, texts, outbounds, errors.
 */
async function randomEdits(rebaseIdleMs: number, seed: number): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "vr-patch-" });
  const mmdb = join(dir, "country.mmdb");
  await Deno.writeFile(mmdb, writeCountryMmdb({ "1.0.0.0/8": "CN", "2001:db8::/32": "US" }));
  const path = join(dir, "c.json");
  const w = new CompileWorker({ rebaseIdleMs, rebaseMinAdded: 1, handBack: true });
  // As the router does: each engine replaced is retired, and its indexes go back to the worker
  // unless a later engine or a kept base still reads them (checked by every decision below).
  const stats = new RuleStats({ onRetire: (e) => w.retire(e) });
  const r = new Rand(seed);
  let patched = 0, loads = 0, cases = 0, multi = 0;
  try {
    for (let c = 0; c < 60; c++) {
      const raw = randomConfig(r, 40) as {
        route: { rules: unknown[]; geoip: { path: string }; rule_set: { tag: string }[] };
      };
      raw.route.geoip.path = mmdb;
      const tags = raw.route.rule_set.map((s) => s.tag);
      const indent = r.pick([0, 1, 2]);
      // `final` comes after the rules: changing it changes what follows the array.
      const write = (rules: unknown[], final = "direct") =>
        Deno.writeTextFile(
          path,
          JSON.stringify({ ...raw, route: { ...raw.route, rules, final } }, null, indent),
        );
      await write(raw.route.rules);
      stats.adopt((await w.load(path)).engine); // the base
      let rules = raw.route.rules;
      for (let e = 0; e < 4; e++) {
        // Edits pile up on the base (each reload is compared with the last full compile).
        rules = edit(r, rules, tags);
        await write(rules, r.chance(0.25) ? "proxy" : "direct");
        let want: Awaited<ReturnType<typeof loadConfig>>;
        try {
          want = await loadConfig(path);
        } catch (err) {
          assert.ok(err instanceof ConfigError, String(err));
          await assert.rejects(
            () => w.load(path),
            (e2) => e2 instanceof ConfigError && e2.message === err.message,
          );
          continue;
        }
        const got = await w.load(path);
        stats.adopt(got.engine);
        await stats.settled();
        loads++;
        if (got.patched) patched++;
        if ((got.patched?.stretches.length ?? 0) > 1) multi++;
        assert.deepEqual(got.config.outbounds, want.config.outbounds);
        assert.equal(got.engine.ruleCount, want.engine.ruleCount);
        for (let i = 0; i < want.engine.ruleCount; i++) {
          assert.equal(got.engine.outboundOf(i), want.engine.outboundOf(i));
          assert.equal(got.engine.fingerprint(i), want.engine.fingerprint(i));
        }
        for (let f = 0; f < 30; f++) {
          const flow = randomFlow(r);
          const a = got.engine.explain(flow), b = want.engine.explain(flow);
          if (a.rule !== b.rule || a.outbound !== b.outbound) {
            assert.fail(
              `config ${c} edit ${e} (${
                JSON.stringify(got.patched ?? "full")
              }): worker ${a.rule} ${a.outbound} != full ${b.rule} ${b.outbound}; ` +
                `flow ${formatIp(flow.destination.addr)}:${flow.destination.port} ${flow.domain}`,
            );
          }
          assert.deepEqual(a.rule_json, b.rule_json);
          cases++;
        }
      }
    }
  } finally {
    w.close();
    await Deno.remove(dir, { recursive: true });
  }
  assert.ok(patched > loads / 2, `${patched} of ${loads} reloads were patches`);
  assert.ok(w.returnedBytes > 0, "indexes of retired engines went back to the worker");
  assert.ok(cases > 5_000, `${cases} flows`);
  if (rebaseIdleMs === 0) assert.ok(multi > 20, `${multi} patches of several stretches`);
}

Deno.test("CompileWorker.load() of edited files, rebasing as soon as idle: patched reloads decide, explain and list outbounds like a full load", async () => {
  // Rebases interleave with the loads.
  await randomEdits(1, 0x7a7c);
});

Deno.test("CompileWorker.load() of edited files, never rebasing: edits compose into several stretches, same results", async () => {
  await randomEdits(0, 0x5c0b);
});

/**
 * A worker with `opts` and a config file of `count` rules (`r<i>.example` to
 * block); `write(edits)` rewrites it with the rules at `edits` sent direct.
 */
async function rebaseSetup(
  count: number,
  opts: { rebaseIdleMs: number; rebaseMinAdded: number; handBack?: boolean },
) {
  const dir = await Deno.makeTempDir({ prefix: "vr-rebase-" });
  const path = join(dir, "c.json");
  const w = new CompileWorker(opts);
  const rules = Array.from(
    { length: count },
    (_, i) => ({ domain: [`r${i}.example`], outbound: "block" }),
  );
  const write = (edits: number[]) =>
    Deno.writeTextFile(
      path,
      cfg(rules.map((x, i) => edits.includes(i) ? { ...x, outbound: "direct" } : x)),
    );
  return { dir, path, w, write };
}

Deno.test("CompileWorker rebases on an idle worker: the next reload is compared with the last, not the first", async () => {
  const { dir, path, w, write } = await rebaseSetup(60, { rebaseIdleMs: 300, rebaseMinAdded: 1 });
  /** `want`, or when a rebase came just before this load, `rebased`. */
  const check = async (want: unknown, rebased: unknown = want) => {
    const before = w.rebases;
    const got = await w.load(path), full = await loadConfig(path);
    assert.deepEqual(got.patched?.stretches ?? null, w.rebases > before ? rebased : want);
    for (let i = 0; i < 60; i++) {
      const f = flow({ domain: `r${i}.example` });
      assert.deepEqual(got.engine.match(f), full.engine.match(f));
    }
  };
  try {
    await write([]);
    await check(null); // full
    await write([5]);
    await check([{ prefix: 5, removed: 1, added: 1 }]);
    // Idle: the worker compiles [5] in full and sends it.
    for (let i = 0; i < 500 && w.rebases === 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(w.rebases, 1);
    await write([5, 50]);
    await check([{ prefix: 50, removed: 1, added: 1 }]); // against [5], not the first file
    // At once (well within 300 ms, unless the machine stalls): no rebase of [5, 50] yet, so it
    // is compared with [5, 50] and composed with its edit: two stretches against [5].
    await write([5, 10, 50]);
    await check(
      [{ prefix: 10, removed: 1, added: 1 }, { prefix: 50, removed: 1, added: 1 }],
      [{ prefix: 10, removed: 1, added: 1 }],
    );
  } finally {
    w.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("CompileWorker rebases only once a patch carries rebaseMinAdded rules the base lacks", async () => {
  const { dir, path, w, write } = await rebaseSetup(40, { rebaseIdleMs: 50, rebaseMinAdded: 3 });
  const idle = () => new Promise((r) => setTimeout(r, 400));
  try {
    await write([]);
    assert.equal((await w.load(path)).patched, undefined);
    await write([5]);
    assert.equal((await w.load(path)).patched?.compiled, 1);
    await idle();
    assert.equal(w.rebases, 0, "one rule the base lacks: no rebase");
    // Edits add up: rule 5, then 6 and 7 next to it: three rules the base lacks.
    await write([5, 6, 7]);
    const p = (await w.load(path)).patched;
    assert.equal(p?.compiled, 3);
    for (let i = 0; i < 100 && w.rebases === 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(w.rebases, 1, "three: rebased once idle");
    await write([5, 6, 7, 35]);
    assert.equal((await w.load(path)).patched?.compiled, 1, "compared with the rebased file");
  } finally {
    w.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("CompileWorker.retire() hands a full compile's indexes back once no engine or kept base reads them", async () => {
  const { dir, path, w, write } = await rebaseSetup(60, {
    rebaseIdleMs: 0,
    rebaseMinAdded: 1,
    handBack: true,
  });
  const check = (e: Engine, edits: number[]) => {
    for (let i = 0; i < 60; i++) {
      const want = edits.includes(i) ? "direct" : "block";
      assert.equal(e.match(flow({ domain: `r${i}.example` })).outbound, want, `r${i}`);
    }
  };
  try {
    const rules = Array.from({ length: 60 }, (_, i) => ({
      domain: [`r${i}.example`],
      outbound: "block",
    }));
    const spare = { type: "direct", tag: "spare" };
    await Deno.writeTextFile(
      path,
      cfg(rules, {
        outbounds: [{ type: "direct", tag: "direct" }, { type: "block", tag: "block" }, spare],
      }),
    );
    const a = (await w.load(path)).engine;
    // An outbound tag removed: compiled in full.
    await write([]);
    const b = await w.load(path);
    assert.equal(b.patched, undefined);
    assert.equal(w.returnedBytes, 0, "nothing retired yet");
    w.retire(a);
    const afterA = w.returnedBytes;
    assert.ok(afterA > 0, "a's indexes went back");
    // Using a retired engine is a bug; it fails loudly rather than reading detached arrays.
    assert.throws(() => a.match(flow({ domain: "r1.example" })), /used after it was retired/);
    check(b.engine, []);
    // A patch of b reads b's indexes: retiring b keeps them.
    await write([7]);
    const c = await w.load(path);
    assert.ok(c.patched, "a patch");
    w.retire(b.engine);
    assert.equal(w.returnedBytes, afterA, "c still reads b's indexes");
    check(c.engine, [7]);
    // Retiring twice, or an engine not made here, changes nothing.
    w.retire(b.engine);
    w.retire((await loadConfig(path)).engine);
    assert.equal(w.returnedBytes, afterA);
    // Without handBack nothing is tracked: retire() is a no-op.
    const plain = new CompileWorker();
    try {
      const p = (await plain.load(path)).engine;
      plain.retire(p);
      assert.equal(plain.returnedBytes, 0);
      check(p, [7]);
    } finally {
      plain.close();
    }
    // Full compiles replace the base while c is still in use: b's indexes stay until c is retired.
    const d = await w.load({ inline: JSON.parse(cfg(rules)) });
    const e = await w.load({ inline: JSON.parse(cfg(rules)) });
    assert.equal(d.patched ?? e.patched, undefined);
    w.retire(d.engine);
    const afterD = w.returnedBytes;
    assert.ok(afterD > afterA, "d's indexes went back");
    check(c.engine, [7]);
    w.retire(c.engine);
    assert.ok(w.returnedBytes > afterD, "b's indexes went back with c");
    check(e.engine, []);
  } finally {
    w.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("CompileWorker.retire(): a restarted worker's pool is never told to free an arena of the dead one", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vr-restart-" });
  const fallbacks: Error[] = [];
  const w = new CompileWorker({
    handBack: true,
    rebaseIdleMs: 0,
    workerUrl: new URL("./testdata/crashing_worker.ts", import.meta.url),
    onFallback: (e) => fallbacks.push(e),
  });
  const rules = (p: string, out: string) =>
    Array.from({ length: 40 }, (_, i) => ({ domain: [`${p}${i}.example`], outbound: out }));
  const check = (e: Engine, p: string, out: string, label: string) => {
    for (let i = 0; i < 40; i++) {
      assert.equal(e.match(flow({ domain: `${p}${i}.example` })).outbound, out, `${label}: ${i}`);
    }
  };
  try {
    const path = join(dir, "c.json");
    await Deno.writeTextFile(path, cfg(rules("r", "block")));
    const a = (await w.load(path)).engine; // arena 1 of the first worker
    // The worker answers (no such file), then dies; the next load starts another.
    await assert.rejects(() => w.load("/crash"), ConfigError);
    await new Promise((r) => setTimeout(r, 300));
    const b = await w.load(path); // arena 1 of the second worker
    assert.equal(b.compiledOn, "worker");
    w.retire(a); // a's arena: not the second worker's to reuse
    // Another full compile (an outbound tag removed): must not take b's arena.
    const other = join(dir, "d.json");
    await Deno.writeTextFile(
      other,
      JSON.stringify({
        outbounds: [{ type: "direct", tag: "direct" }, { type: "direct", tag: "x" }],
        route: { rules: rules("s", "x"), final: "direct" },
      }),
    );
    const c = await w.load(other);
    assert.equal(c.patched, undefined);
    check(b.engine, "r", "block", "b after c was compiled");
    check(c.engine, "s", "x", "c");
    assert.deepEqual(fallbacks, [], "every load but the crash's ran on a worker");
  } finally {
    w.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("contextFits(): tags may be added, not removed; GeoIP and inline rule sets must stay", () => {
  const ctx = (o: string[], i: string[], geoip: boolean, sets: unknown[] = []) =>
    JSON.stringify([o, i, geoip, sets]);
  const was = ctx(["a", "b"], ["in"], false);
  assert.ok(contextFits(was, was));
  assert.ok(contextFits(was, ctx(["b", "c", "a"], ["in", "in2"], false)));
  assert.ok(!contextFits(was, ctx(["a"], ["in"], false)));
  assert.ok(!contextFits(was, ctx(["a", "b"], [], false)));
  assert.ok(!contextFits(was, ctx(["a", "b"], ["in"], true)));
  assert.ok(!contextFits(was, ctx(["a", "b"], ["in"], false, [{ tag: "s", type: "inline" }])));
});
