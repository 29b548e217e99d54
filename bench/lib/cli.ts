/**
 * Command-line helpers the netns benches share: a bounded whole-number flag
 * and printing results as JSON or a markdown table.
 *
 * @module
 */

/**
 * `raw` as a whole number in `lo..hi`; otherwise prints
 * `--NAME: "RAW": expected LO..HI` to stderr and returns null.
 */
export function boundedInt(name: string, raw: string, lo: number, hi: number): number | null {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < lo || n > hi) {
    console.error(`--${name}: "${raw}": expected ${lo}..${hi}`);
    return null;
  }
  return n;
}

/**
 * Prints `doc` as JSON when `json`, else `table(results)` followed by one
 * line per skipped subject with its reason.
 */
export function printResults<R extends { subject: string; skipped?: string }>(
  json: boolean | undefined,
  doc: Record<string, unknown>,
  results: readonly R[],
  table: (results: readonly R[]) => string,
): void {
  if (json) console.log(JSON.stringify(doc, null, 2));
  else {
    console.log(table(results));
    for (const r of results) if (r.skipped) console.log(`\n${r.subject}: skipped: ${r.skipped}`);
  }
}

/** The `parseArgs` options every subject bench takes: `--json`, `--seconds` (default 5), `--subjects`. */
export function subjectBenchFlags(subjectNames: readonly string[]) {
  return {
    json: { type: "boolean" },
    seconds: { type: "string", default: "5" },
    subjects: { type: "string", default: subjectNames.join(",") },
  } as const;
}
