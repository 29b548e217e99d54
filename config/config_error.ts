/**
 * Config errors: every problem found, each with the path of the offending
 * field (`route.rules[12].ip_cidr[3]`), collected before anything throws.
 *
 * @module
 */

import { shapeOf } from "../core/keep_shape.ts";

/** One problem in a config: where and what. */
export interface Issue {
  readonly path: string;
  readonly message: string;
}

/** Thrown when a config (or a file it references) is invalid; lists all issues. */
export class ConfigError extends Error {
  /** Every problem found, in document order. */
  readonly issues: readonly Issue[];

  /** `message` lists the issues one per line as `path: message`. */
  constructor(issues: readonly Issue[], options?: ErrorOptions) {
    super(issues.map((i) => i.path ? `${i.path}: ${i.message}` : i.message).join("\n"), options);
    this.name = "ConfigError";
    this.issues = issues;
  }
}

/** Collects issues while validating. */
export class Issues {
  readonly list: Issue[] = [];

  /** Records a problem at `path`. */
  add(path: string, message: string): void {
    this.list.push({ path, message });
  }

  /** True when nothing was recorded. */
  get ok(): boolean {
    return this.list.length === 0;
  }

  /** Throws a {@linkcode ConfigError} when anything was recorded. */
  throwIfAny(): void {
    if (this.list.length !== 0) throw new ConfigError(this.list);
  }
}
shapeOf(() => new Issues());
