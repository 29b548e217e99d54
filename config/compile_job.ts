/**
 * The work of {@linkcode loadConfig} minus GeoIP, producing data that can
 * cross a thread boundary cheaply: the config worker (`compile_worker.ts`)
 * runs {@linkcode compileJob} and posts its reply with the typed arrays
 * transferred; the data-plane thread (`compile_client.ts`) wraps them into
 * an `Engine` without rebuilding anything.
 *
 * Same checks, same order and same error messages as `loadConfig()`:
 * JSON, then `parseConfig`, then rule sets (the GeoIP database is opened by
 * the receiving thread, which reports its issue after the rule sets' ones).
 *
 * @module
 */

import { dirname, resolve } from "node:path";
import { Engine, type EngineWire, wireTransferList } from "../rules/engine.ts";
import { NO_PAUSE } from "../rules/pacing.ts";
import { buildRuleWire, type RuleWire } from "../rules/wire_rule_table.ts";
import { ConfigError, type Issue, Issues } from "./config_error.ts";
import { arrayMemberSpans } from "./json_cooperative.ts";
import {
  type CompileDeps,
  type ConfigSource,
  invalidJsonIssue,
  loadRuleSets,
  readJsonBytes,
} from "./load_config.ts";
import { parseConfig } from "./parse_config.ts";
import type { RouterConfig } from "./schema.ts";

/** A request to the config worker. */
export interface JobRequest {
  readonly id: number;
  readonly source: ConfigSource;
}

/** Timings of a job in the worker, ms. */
export interface JobTimings {
  /** Read + JSON.parse + validation. */
  readonly parse: number;
  /** Rule sets + index building + per-rule metadata. */
  readonly compile: number;
}

/** A successful job: the config (its `route.rules` empty) and the engine as wire data. */
export interface JobDone {
  readonly id: number;
  readonly ok: true;
  readonly config: RouterConfig;
  readonly wire: EngineWire;
  readonly rules: RuleWire;
  readonly ms: JobTimings;
}

/** A failed job. */
export interface JobFailed {
  readonly id: number;
  readonly ok: false;
  readonly error: { readonly name: string; readonly message: string; readonly issues?: Issue[] };
  /**
   * Present when the failure was in the rule sets: the config's GeoIP path
   * (or null), whose issue the receiver still has to add.
   */
  readonly geoipPath?: string | null;
}

/** A reply of the config worker. */
export type JobReply = JobDone | JobFailed;

const decoder = new TextDecoder();

function failure(id: number, e: unknown, geoipPath?: string | null): JobFailed {
  const err = e instanceof Error ? e : new Error(String(e));
  return {
    id,
    ok: false,
    error: {
      name: err.name,
      message: err.message,
      ...(e instanceof ConfigError ? { issues: [...e.issues] } : {}),
    },
    ...(geoipPath !== undefined ? { geoipPath } : {}),
  };
}

/**
 * Reads, validates and compiles `req.source` (no pacing: this runs off the
 * data-plane thread). Returns the reply and the buffers to transfer with it.
 */
export async function compileJob(
  req: JobRequest,
  deps: Pick<CompileDeps, "readFile"> = {},
): Promise<{ reply: JobReply; transfer: ArrayBuffer[] }> {
  const { id, source } = req;
  const t0 = performance.now();
  let raw: unknown, baseDir: string;
  let bytes: Uint8Array | undefined, text: string | undefined;
  try {
    if (typeof source === "string") {
      const iss = new Issues();
      bytes = await readJsonBytes(source, "", iss, deps);
      if (bytes !== undefined) {
        text = decoder.decode(bytes);
        try {
          raw = JSON.parse(text);
        } catch (e) {
          invalidJsonIssue(source, "", iss, e);
        }
      }
      iss.throwIfAny();
      baseDir = dirname(resolve(source));
    } else {
      raw = source.inline;
      baseDir = resolve(source.baseDir ?? ".");
    }
  } catch (e) {
    return { reply: failure(id, e), transfer: [] };
  }
  let config: RouterConfig;
  try {
    config = parseConfig(raw, { baseDir });
  } catch (e) {
    return { reply: failure(id, e), transfer: [] };
  }
  const t1 = performance.now();
  const geoipPath = config.route.geoip?.path ?? null;
  try {
    const iss = new Issues();
    const ruleSets = await loadRuleSets(config, deps, NO_PAUSE, iss);
    iss.throwIfAny();
    const rules = config.route.rules;
    const wire = Engine.compileWire({ rules, final: config.route.final, ruleSets });
    // Rule texts for `explain`: the file's own bytes when one char is one byte.
    let source: { text: Uint8Array; spans: Int32Array } | undefined;
    if (text !== undefined && bytes !== undefined && bytes.length === text.length) {
      const spans = arrayMemberSpans(text, ["route", "rules"]);
      if (spans) source = { text: bytes, spans };
    }
    const ruleWire = buildRuleWire(rules, source);
    const reply: JobDone = {
      id,
      ok: true,
      config: { ...config, route: { ...config.route, rules: [] } },
      wire,
      rules: ruleWire,
      ms: { parse: t1 - t0, compile: performance.now() - t1 },
    };
    return { reply, transfer: wireTransferList([wire, ruleWire]) };
  } catch (e) {
    return {
      reply: failure(id, e, e instanceof ConfigError ? geoipPath : undefined),
      transfer: [],
    };
  }
}
