/**
 * Loading: reads the config file, the rule-set files and the GeoIP
 * database, and compiles the {@linkcode Engine}. Every failure is a
 * {@linkcode ConfigError} naming the field path, so start-up, reload and
 * `router check` report problems the same way. Nothing here has side
 * effects beyond reading files: a reload builds a new engine and only the
 * caller swaps it in.
 *
 * @module
 */

import { dirname, resolve } from "node:path";
import { Engine } from "../rules/engine.ts";
import { type GeoIpLookup, openGeoIp } from "../rules/item_geoip.ts";
import { type Pacing, TimeSlicer } from "../rules/pacing.ts";
import type { RouteRule, RuleSetSpec, RuleSpec } from "../rules/spec.ts";
import { ConfigError, Issues } from "./config_error.ts";
import { parseJsonCooperative } from "./json_cooperative.ts";
import { implicitOutbounds, parseConfig, type ParseOptions } from "./parse_config.ts";
import { parseRouteRule, parseRuleMatch, type RuleContext } from "./rule_parser.ts";
import type { RouterConfig } from "./schema.ts";
import { type Obj, object, show, typeName } from "./values.ts";

/** Injected I/O for {@linkcode compileEngine} / {@linkcode loadConfig}. */
export interface CompileDeps {
  /**
   * Reads a file. Default: config and rule-set files at most one byte past
   * {@linkcode MAX_CONFIG_BYTES} ({@linkcode readConfigFile}), the GeoIP
   * database with `Deno.readFile`.
   */
  readonly readFile?: (path: string) => Promise<Uint8Array>;
  /** A GeoIP lookup to use instead of opening `route.geoip.path`. */
  readonly geoip?: GeoIpLookup;
  /**
   * When long work (parsing and compiling big rule lists) gives the event
   * loop a turn; default: after every 4 ms of work (a new
   * {@linkcode TimeSlicer} per call), so a reload does not stall the data plane.
   */
  readonly pacing?: Pacing;
}

/** Where {@linkcode loadConfig} gets the config: a file path, or an inline object. */
export type ConfigSource = string | { readonly inline: unknown; readonly baseDir?: string };

/** Upper bound on config and rule-set file size (64 MiB). */
export const MAX_CONFIG_BYTES = 64 << 20;

const decoder = new TextDecoder();

/**
 * The buffer-filling loop of {@linkcode readFileCapped} and
 * {@linkcode readFileSyncCapped}: yields the part of the buffer to read into,
 * gets back how many bytes came (null at the end of the file), returns the
 * bytes read. The buffer is sized from the file's size, plus one byte so the
 * read that finds the end needs no growth; it grows if the file does, up to
 * `limit`.
 */
function* fillCapped(
  size: number,
  limit: number,
): Generator<Uint8Array, Uint8Array, number | null> {
  let buf = new Uint8Array(Math.min(size + 1, limit));
  let n = 0;
  for (;;) {
    if (n === buf.length) {
      if (n >= limit) break;
      const grown = new Uint8Array(Math.min(limit, 2 * n + 4096));
      grown.set(buf);
      buf = grown;
    }
    const got = yield buf.subarray(n);
    if (got === null) break;
    n += got;
  }
  return buf.subarray(0, n);
}

/**
 * Reads `path`, at most `limit` bytes: a larger file is not read whole (the
 * caller sees `limit` bytes and refuses it).
 */
export async function readFileCapped(path: string, limit: number): Promise<Uint8Array> {
  using f = await Deno.open(path);
  const fill = fillCapped((await f.stat()).size, limit);
  let step = fill.next();
  while (!step.done) step = fill.next(await f.read(step.value));
  return step.value;
}

/**
 * {@linkcode readFileCapped}, synchronously: for the config worker, whose
 * thread does nothing else meanwhile. No hop to the I/O thread pool and
 * back: a 680 KB config in 0.45 ms against 0.8 ms on a worker.
 */
export function readFileSyncCapped(path: string, limit: number): Uint8Array {
  using f = Deno.openSync(path);
  const fill = fillCapped(f.statSync().size, limit);
  let step = fill.next();
  while (!step.done) step = fill.next(f.readSync(step.value));
  return step.value;
}

/** Reads a config or rule-set file: one byte past {@linkcode MAX_CONFIG_BYTES} at most. */
export const readConfigFile = (path: string): Promise<Uint8Array> =>
  readFileCapped(path, MAX_CONFIG_BYTES + 1);

/** The same, with {@linkcode readFileSyncCapped}: {@linkcode CompileDeps.readFile} of the config worker. */
export const readConfigFileSync = (path: string): Promise<Uint8Array> =>
  Promise.resolve(readFileSyncCapped(path, MAX_CONFIG_BYTES + 1));

/** Reads a JSON file's bytes (bounded); `undefined` after recording an issue at `where`. */
export async function readJsonBytes(
  path: string,
  where: string,
  iss: Issues,
  deps: CompileDeps,
): Promise<Uint8Array | undefined> {
  let bytes: Uint8Array;
  try {
    bytes = await (deps.readFile ?? readConfigFile)(path);
  } catch (e) {
    iss.add(where, `cannot read ${show(path)}: ${(e as Error).message}`);
    return undefined;
  }
  if (bytes.length > MAX_CONFIG_BYTES) {
    iss.add(where, `${show(path)}: larger than ${MAX_CONFIG_BYTES} bytes`);
    return undefined;
  }
  return bytes;
}

/** Records the issue of a text that `JSON.parse` refused. */
export function invalidJsonIssue(path: string, where: string, iss: Issues, e: unknown): void {
  iss.add(where, `${show(path)}: invalid JSON: ${(e as Error).message}`);
}

async function readJson(
  path: string,
  where: string,
  iss: Issues,
  deps: CompileDeps,
  pacing: Pacing,
): Promise<unknown> {
  const bytes = await readJsonBytes(path, where, iss, deps);
  if (bytes === undefined) return undefined;
  try {
    return await parseJsonCooperative(decoder.decode(bytes), pacing);
  } catch (e) {
    invalidJsonIssue(path, where, iss, e);
    return undefined;
  }
}

/**
 * Parses a sing-box source-format rule set (`{"version": 1|2|3, "rules": [...]}`);
 * issues are recorded under `path` (e.g. `route.rule_set[0](geosite.json)`).
 */
export function parseRuleSetSource(
  raw: unknown,
  tag: string,
  path: string,
  iss: Issues,
): RuleSetSpec {
  const ctx: RuleContext = {
    iss,
    inbounds: new Set(),
    outbounds: new Set(),
    ruleSets: new Set(),
    hasGeoip: false,
    usedReject: new Set(),
  };
  const rules: RuleSpec[] = [];
  const o = object(raw, path, iss, new Set(["version", "rules"]));
  if (o) {
    if (o.version !== 1 && o.version !== 2 && o.version !== 3) {
      iss.add(`${path}.version`, `${show(o.version)}: expected 1, 2 or 3`);
    }
    if (!Array.isArray(o.rules)) {
      iss.add(`${path}.rules`, `expected an array of rules, got ${typeName(o.rules)}`);
    } else {
      o.rules.forEach((r, i) => {
        const m = parseRuleMatch(r, `${path}.rules[${i}]`, ctx, "headless");
        if (m) rules.push(m);
      });
    }
  }
  return { tag, rules };
}

/**
 * Reads and parses the rule sets of `config` (in parallel); issues are
 * recorded in `iss` in config order. Returns the loaded sets.
 */
export async function loadRuleSets(
  config: RouterConfig,
  deps: CompileDeps,
  pacing: Pacing,
  iss: Issues,
): Promise<RuleSetSpec[]> {
  const ruleSets: RuleSetSpec[] = [];
  // Files are read in parallel; issues are kept per rule set to report them in config order.
  const perSet = config.route.rule_set.map(() => new Issues());
  await Promise.all(config.route.rule_set.map(async (ref, i) => {
    if (ref.type === "inline") {
      ruleSets[i] = { tag: ref.tag, rules: ref.rules };
      return;
    }
    const where = `route.rule_set[${i}].path`;
    const raw = await readJson(ref.path, where, perSet[i]!, deps, pacing);
    if (raw === undefined) return;
    const name = ref.path.slice(ref.path.lastIndexOf("/") + 1);
    ruleSets[i] = parseRuleSetSource(raw, ref.tag, `route.rule_set[${i}](${name})`, perSet[i]!);
  }));
  for (const s of perSet) iss.list.push(...s.list);
  return ruleSets.filter((x) => x !== undefined);
}

/** Records the issue of a GeoIP database that cannot be opened. */
export function geoipIssue(path: string, iss: Issues, e: unknown): void {
  iss.add("route.geoip.path", `${show(path)}: ${(e as Error).message}`);
}

/** Reads rule sets and GeoIP for `config` and compiles its engine; throws `ConfigError`. */
export async function compileEngine(config: RouterConfig, deps: CompileDeps = {}): Promise<Engine> {
  const pacing = deps.pacing ?? new TimeSlicer();
  const iss = new Issues();
  const ruleSets = await loadRuleSets(config, deps, pacing, iss);
  let geoip = deps.geoip;
  if (!geoip && config.route.geoip) {
    const p = config.route.geoip.path;
    try {
      geoip = await openGeoIp(await (deps.readFile ?? Deno.readFile)(p));
    } catch (e) {
      geoipIssue(p, iss, e);
    }
  }
  iss.throwIfAny();
  return await Engine.compile({
    rules: config.route.rules,
    final: config.route.final,
    ruleSets,
    ...(geoip ? { geoip } : {}),
  }, pacing);
}

/** Route rule lists at least this long are parsed in slices (see {@linkcode parseConfigPaced}). */
const PACED_RULES = 1024;

/**
 * `parseConfig()` with the route rules parsed in slices: everything but the
 * rules first (a plain `parseConfig` of the config with no rules), then the
 * rules with the same references, pausing when `pacing` is due. The result
 * is what `parseConfig(raw)` returns; on any issue this falls back to
 * `parseConfig(raw)` itself, so errors are exactly the same.
 */
export async function parseConfigPaced(
  raw: unknown,
  opts: ParseOptions,
  pacing: Pacing,
): Promise<RouterConfig> {
  const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
  const route = isObj(raw) ? raw.route : undefined;
  const list = isObj(route) ? route.rules : undefined;
  if (!isObj(raw) || !isObj(route) || !Array.isArray(list) || list.length < PACED_RULES) {
    return parseConfig(raw, opts);
  }
  const withRules = (rules: unknown[]) => ({ ...raw, route: { ...route, rules } });
  let head: RouterConfig;
  try {
    head = parseConfig(withRules([]), opts);
  } catch (e) {
    if (e instanceof ConfigError) return parseConfig(raw, opts); // the complete issue list
    throw e;
  }
  const iss = new Issues();
  const ctx: RuleContext = {
    iss,
    inbounds: new Set(head.inbounds.map((x) => x.tag)),
    outbounds: new Set(head.outbounds.map((x) => x.tag)),
    ruleSets: new Set(head.route.rule_set.map((x) => x.tag)),
    hasGeoip: head.route.geoip !== null,
    usedReject: new Set(),
  };
  const rules: RouteRule[] = [];
  for (let i = 0; i < list.length; i++) {
    if ((i & 255) === 255 && pacing.due()) await pacing.pause();
    const r = parseRouteRule(list[i], `route.rules[${i}]`, ctx);
    if (r) rules.push(r);
  }
  if (!iss.ok) return parseConfig(raw, opts);
  const outbounds = [...head.outbounds, ...implicitOutbounds(ctx.usedReject)];
  return { ...head, outbounds, route: { ...head.route, rules } };
}

/**
 * Reads, validates and compiles a config: the single path used by start-up,
 * reload and `router check`. Relative paths inside resolve against the
 * config file's directory (or `baseDir`, default the cwd, for inline configs).
 */
export async function loadConfig(
  source: ConfigSource,
  deps: CompileDeps = {},
): Promise<{ config: RouterConfig; engine: Engine }> {
  const pacing = deps.pacing ?? new TimeSlicer();
  let raw: unknown, baseDir: string;
  if (typeof source === "string") {
    const iss = new Issues();
    raw = await readJson(source, "", iss, deps, pacing);
    iss.throwIfAny();
    baseDir = dirname(resolve(source));
  } else {
    raw = source.inline;
    baseDir = resolve(source.baseDir ?? ".");
  }
  const config = await parseConfigPaced(raw, { baseDir }, pacing);
  const engine = await compileEngine(config, { ...deps, pacing });
  return { config, engine };
}

export { ConfigError };
