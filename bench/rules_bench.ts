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
const { geoip } = benchGeoIp();
const engine = new Engine({ rules: config.route.rules, final: config.route.final, geoip });
const flows = generateFlows(gen, 65536);
const known = flows.filter((f) => f.domain && !f.domain.includes(".example"));
const unknown = flows.filter((f) => f.domain?.includes(".example"));
const ipOnly = flows.filter((f) => f.domain === undefined);

function cycle(list: typeof flows) {
  let i = 0;
  return () => {
    engine.match(list[i]!);
    if (++i === list.length) i = 0;
  };
}

Deno.bench("match: flow mix (40% known domain, 30% unknown, 30% IP only)", cycle(flows));
Deno.bench("match: known domain", cycle(known));
Deno.bench("match: unknown domain (falls to final)", cycle(unknown));
Deno.bench("match: IP only (CIDR / GeoIP / final)", cycle(ipOnly));
