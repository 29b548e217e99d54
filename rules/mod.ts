/**
 * The rule engine: compiled matchers over {@linkcode RouteRule}s, one
 * immutable {@linkcode Engine} per config, and {@linkcode RuleStats} for hit
 * counters that survive reloads.
 *
 * @module
 */

export * from "./spec.ts";
export {
  Engine,
  type EngineImage,
  type EngineOptions,
  type EngineWire,
  type Explanation,
  type RuleTable,
  wireTransferList,
} from "./engine.ts";
export {
  buildRuleHead,
  buildRuleTail,
  buildRuleWire,
  type RuleWire,
  type RuleWireTail,
  WireRuleTable,
} from "./wire_rule_table.ts";
export { type GeoIpLookup, noGeoIp, openGeoIp } from "./item_geoip.ts";
export { isPrivateIp } from "./item_private.ts";
export { fingerprint, fingerprintHash } from "./fingerprint.ts";
export { type RuleHits, RuleStats } from "./rule_stats.ts";
export { nextTurn, NO_PAUSE, type Pacing, TimeSlicer, type TimeSlicerOptions } from "./pacing.ts";
export { CompactRule } from "./compact_rule.ts";
