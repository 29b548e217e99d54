/**
 * Canonical rule fingerprints: JSON with object keys sorted, so a rule that
 * is unchanged across a reload (same fields and values, any key order) keeps
 * its hit counter.
 *
 * @module
 */

/** Canonical JSON of `value` (keys sorted recursively). */
export function fingerprint(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null";
  if (Array.isArray(value)) return `[${value.map(fingerprint).join(",")}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj).sort();
  return `{${
    keys.filter((k) => obj[k] !== undefined).map((k) =>
      `${JSON.stringify(k)}:${fingerprint(obj[k])}`
    )
      .join(",")
  }}`;
}
