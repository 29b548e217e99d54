/**
 * Router configuration: schema types, `parseConfig()` (validation) and
 * `loadConfig()` / `compileEngine()` (files + rule engine).
 *
 * @module
 */

export { ConfigError, type Issue } from "./config_error.ts";
export * from "./schema.ts";
export { parseConfig, type ParseOptions } from "./parse_config.ts";
export {
  type CompileDeps,
  compileEngine,
  type ConfigSource,
  loadConfig,
  MAX_CONFIG_BYTES,
  parseRuleSetSource,
} from "./load_config.ts";
