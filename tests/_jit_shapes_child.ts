/**
 * Child of `jit_shapes_test.ts`: compiles a generated config five times by
 * the byte scanner, with a memory-reducing collection before the fifth
 * (`MARK done` at the end). `keep` as the first argument keeps shapes
 * (`core/keep_shape.ts`) the way the config worker does.
 *
 * Run with `--v8-flags=--expose-gc,--trace-deopt,--no-concurrent-recompilation`
 * (optimised code installed at once: the outcome does not depend on timing).
 */

import { keepShapes } from "../core/keep_shape.ts";
import { compileJob } from "../config/compile_job.ts";

if (Deno.args[0] === "keep") keepShapes();

const rules: unknown[] = [];
for (let i = 0; i < 4000; i++) {
  rules.push(
    i % 4 === 3
      ? {
        ip_cidr: [`10.${i >> 8 & 255}.${i & 255}.0/24`, `2001:db8:${i.toString(16)}::/48`],
        outbound: "b",
      }
      : { [i % 2 ? "domain_suffix" : "domain"]: [`n${i}.example`, `m${i}.test`], outbound: "a" },
  );
}
const file = new TextEncoder().encode(JSON.stringify({
  outbounds: [{ type: "direct", tag: "a" }, { type: "direct", tag: "b" }],
  route: { rules, final: "a" },
}));
const readFile = () => Promise.resolve(file);

async function compile(id: number): Promise<void> {
  const r = await compileJob({ id, source: "/jit-shapes/config.json" }, {
    readFile,
    scanMinBytes: 0,
  });
  if (!r.reply.ok) throw new Error("compile failed");
  r.tail?.();
}

for (let id = 1; id <= 4; id++) await compile(id);
// What the router's collections are under --optimize-for-size: memory-reducing, maps of dead
// objects not retained.
(globalThis as unknown as { gc(o: unknown): void }).gc({
  type: "major",
  execution: "sync",
  flavor: "last-resort",
});
await compile(5);
console.log("MARK done");
