import assert from "node:assert/strict";
import { markdownTable, percentile, vmRssMiB } from "./stats.ts";

Deno.test("percentile() uses the nearest rank", () => {
  const xs = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(percentile(xs, 50), 50);
  assert.equal(percentile(xs, 99), 99);
  assert.equal(percentile([5], 99), 5);
  assert.ok(Number.isNaN(percentile([], 50)));
});

Deno.test("vmRssMiB() reads VmRSS in kB as MiB", () => {
  assert.equal(vmRssMiB("Name:\tv2ray\nVmRSS:\t   20480 kB\n"), 20);
  assert.equal(vmRssMiB("Name:\tx\n"), null);
});

Deno.test("markdownTable() puts subjects side by side and marks skipped/absent values", () => {
  const t = markdownTable([
    { subject: "kernel", metrics: { tcp_1_gbps: 12.345, rss_idle_mib: null }, notes: [] },
    { subject: "router", skipped: "main.ts run failed", metrics: {}, notes: [] },
  ]);
  const lines = t.split("\n");
  assert.equal(lines[0], "| metric | kernel | router |");
  assert.equal(lines[2], "| TCP bulk, 1 stream (Gbit/s) | 12.35 | skipped |");
  assert.match(t, /\| proxy RSS idle \(MiB\) \| – \| skipped \|/);
});
