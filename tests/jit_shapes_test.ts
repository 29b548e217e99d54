/**
 * The config worker keeps the hidden classes of its compiler's objects
 * alive (`core/keep_shape.ts`): a memory-reducing collection between two
 * reloads must not throw away the optimised code of the compiler's hot
 * functions. Runs `_jit_shapes_child.ts` with V8's deoptimisation trace,
 * with and without keeping shapes; without, the same collection must throw
 * that code away (else this test could not see a regression).
 */

import assert from "node:assert/strict";

/** Hot functions of the byte scanner and the index builders. */
const HOT = [
  "insert",
  "push",
  "#newNode",
  "internBytes",
  "#internTail",
  "#ruleBody",
  "#item",
  "addSuffixBytes",
  "addExactBytes",
  "addPrefix",
  "intern",
  "array",
];

/**
 * Hot functions whose optimised code was dropped for dead embedded objects
 * (anywhere in the run: V8's trace is buffered apart from our own output,
 * so lines cannot be placed before or after the collection).
 */
async function droppedAfterGc(keep: boolean): Promise<string[]> {
  const child = new URL("./_jit_shapes_child.ts", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--v8-flags=--expose-gc,--trace-deopt,--no-concurrent-recompilation",
      child,
      ...(keep ? ["keep"] : []),
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  assert.match(text, /MARK done/);
  const names = new Set<string>();
  for (const m of text.matchAll(/SharedFunctionInfo ([^>]+)>\).*embedded weak objects cleared/g)) {
    names.add(m[1]!);
  }
  return [...names].filter((n) => HOT.includes(n)).sort();
}

Deno.test("a memory-reducing collection keeps the compiler's optimised code when shapes are kept", async () => {
  const without = await droppedAfterGc(false);
  assert.ok(without.length >= 5, `without kept shapes only ${without} were dropped`);
  assert.deepEqual(await droppedAfterGc(true), []);
});
