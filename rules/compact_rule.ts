/**
 * The compact form of the commonest route rule in big configs: only
 * `domain`, `domain_suffix`, `domain_keyword` and/or `ip_cidr` values plus
 * an outbound. The config parser validates such a rule without building its
 * {@linkcode RuleSpec}, and the engine compiles the values straight from the
 * rule's JSON into its shared indexes, with no matcher object per rule. The
 * spec is still there for whoever asks (`match`, e.g. the reference
 * matcher): it is parsed on first access.
 *
 * @module
 */

import type { ParsedCidrs } from "./cidr_text.ts";
import type { RouteRule, RuleSpec } from "./spec.ts";
import { shapeOf } from "../core/keep_shape.ts";
import { EMPTY_DEFAULT_RULE } from "./spec.ts";

/** The item fields a {@linkcode CompactRule} may carry (plus `outbound`, `action: "route"`). */
export const COMPACT_FIELDS = ["domain", "domain_suffix", "domain_keyword", "ip_cidr"] as const;

/** A validated compact route rule; see the module doc. */
export class CompactRule implements RouteRule {
  /** The rule as written; its item values are validated: lower-case names, CIDR text. */
  readonly raw: Readonly<Record<string, unknown>>;
  readonly outbound: string;
  /** Its `ip_cidr` values, parsed while validating them (in order), if any. */
  readonly cidrs: ParsedCidrs | null;
  readonly #parse: (raw: unknown) => RuleSpec;
  #match: RuleSpec | undefined;

  /**
   * `raw` must already be validated; `parse` builds its full spec on
   * demand; `cidrs`, when given, are its `ip_cidr` values already parsed.
   */
  constructor(
    raw: Readonly<Record<string, unknown>>,
    outbound: string,
    parse: (raw: unknown) => RuleSpec,
    cidrs: ParsedCidrs | null = null,
  ) {
    this.raw = raw;
    this.outbound = outbound;
    this.#parse = parse;
    this.cidrs = cidrs;
  }

  /** The normalised match, parsed on first access. */
  get match(): RuleSpec {
    return this.#match ??= this.#parse(this.raw);
  }
}
shapeOf(() => new CompactRule({}, "", () => EMPTY_DEFAULT_RULE));
