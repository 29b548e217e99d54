/**
 * `deno bench` for the rule engine on the large synthetic set (see
 * gen_rules.ts): one bench iteration = one flow decision, per flow kind.
 * Compile time and heap are in reload_bench.ts.
 */

import { parseConfig } from "../config/parse_config.ts";
import { Engine } from "../rules/engine.ts";
import { benchGeoIp } from "./bench_geoip.ts";
import { generateConfig, generateFlows } from "./gen_rules.ts";

const gen = generateConfig();
const config = parseConfig(gen.config, { baseDir: Deno.cwd() });
const { geoip } = await benchGeoIp();
const engine = new Engine({ rules: config.route.rules, final: config.route.final, geoip });
const flows = generateFlows(gen, 65536);
const known = flows.filter((f) => f.domain && !f.domain.includes(".example"));
const unknown = flows.filter((f) => f.domain?.includes(".example"));
const ipOnly = flows.filter((f) => f.domain === undefined);

/** The same flows Zipf-distributed (s = 1: rank r drawn with probability ~ 1/r), as in reload_bench.ts. */
function zipf(list: typeof flows, n: number, seed = 7): typeof flows {
  let a = seed;
  const rnd = () => ((a = (a * 1103515245 + 12345) & 0x7fffffff) / 0x80000000);
  const h = Math.log(list.length) + 0.5772;
  return Array.from({ length: n }, () => {
    const r = Math.min(list.length - 1, Math.floor(Math.exp(rnd() * h)) - 1);
    return list[Math.max(0, r)]!;
  });
}

function cycle(list: typeof flows) {
  let i = 0;
  return () => {
    engine.match(list[i]!);
    if (++i === list.length) i = 0;
  };
}

Deno.bench("match: flow mix (40% known domain, 30% unknown, 30% IP only)", cycle(flows));
Deno.bench("match: same mix, Zipf-distributed (popular flows repeat)", cycle(zipf(flows, 65536)));
Deno.bench("match: known domain", cycle(known));
Deno.bench("match: unknown domain (falls to final)", cycle(unknown));
Deno.bench("match: IP only (CIDR / GeoIP / final)", cycle(ipOnly));
