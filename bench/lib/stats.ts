/**
 * Pure helpers of the netns bench: percentiles, unit formatting and the
 * side-by-side markdown table.
 *
 * @module
 */

/** Nearest-rank percentile of an ascending array (NaN when empty). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

/** One bench metric: a row of the table. */
export interface MetricDef {
  key: string;
  label: string;
  format: (v: number) => string;
}

/** The metrics the netns bench reports, in table order. */
export const METRICS: MetricDef[] = [
  { key: "tcp_1_gbps", label: "TCP bulk, 1 stream (Gbit/s)", format: (v) => v.toFixed(2) },
  { key: "tcp_4_gbps", label: "TCP bulk, 4 streams (Gbit/s)", format: (v) => v.toFixed(2) },
  { key: "rr_p50_us", label: "1-byte round trip p50 (µs)", format: (v) => v.toFixed(0) },
  { key: "rr_p99_us", label: "1-byte round trip p99 (µs)", format: (v) => v.toFixed(0) },
  { key: "conn_per_s", label: "new connections/s", format: (v) => v.toFixed(0) },
  { key: "rss_idle_mib", label: "proxy RSS idle (MiB)", format: (v) => v.toFixed(1) },
  { key: "rss_1000_mib", label: "proxy RSS, 1000 open flows (MiB)", format: (v) => v.toFixed(1) },
  {
    key: "rss_1000_after_mib",
    label: "proxy RSS, 1000 flows after the rate test (MiB)",
    format: (v) => v.toFixed(1),
  },
];

/** Result of one subject: metric values, or a reason it was skipped. */
export interface SubjectResult {
  subject: string;
  skipped?: string;
  metrics: Record<string, number | null>;
  notes: string[];
}

/** Markdown table: one column per subject, one row per metric ("–" when absent). */
export function markdownTable(results: readonly SubjectResult[]): string {
  const head = `| metric | ${results.map((r) => r.subject).join(" | ")} |`;
  const sep = `|---|${results.map(() => "---:").join("|")}|`;
  const rows = METRICS.map((m) => {
    const cells = results.map((r) => {
      if (r.skipped) return "skipped";
      const v = r.metrics[m.key];
      return v === null || v === undefined || Number.isNaN(v) ? "–" : m.format(v);
    });
    return `| ${m.label} | ${cells.join(" | ")} |`;
  });
  return [head, sep, ...rows].join("\n");
}

/** Parses the `VmRSS:` line of /proc/PID/status into MiB (null when absent). */
export function vmRssMiB(status: string): number | null {
  const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  return m ? Number(m[1]) / 1024 : null;
}
