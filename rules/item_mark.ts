/**
 * `fwmark` (our addition): matches the netfilter mark of the flow's first
 * packet, `(mark & mask) === value`; and `dscp` (our addition).
 *
 * @module
 */

import type { MarkMatch } from "./spec.ts";

/** True when `mark` (unknown: never) matches any item. */
export function markMatches(items: readonly MarkMatch[], mark: number | undefined): boolean {
  if (mark === undefined) return false;
  for (let i = 0; i < items.length; i++) {
    const m = items[i]!;
    if (((mark & m.mask) >>> 0) === m.value) return true;
  }
  return false;
}

/** True when `dscp` (unknown: never) is one of `values`. */
export function dscpMatches(values: readonly number[], dscp: number | undefined): boolean {
  return dscp !== undefined && values.includes(dscp);
}
