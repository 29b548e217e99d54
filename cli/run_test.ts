import assert from "node:assert/strict";
import { runCheckCommand, runRunCommand } from "./run.ts";

/** Runs `f` with console.error captured; returns its result and what was printed. */
async function captured(f: () => Promise<number>): Promise<{ code: number; err: string }> {
  const lines: string[] = [];
  const orig = console.error;
  console.error = (...a: unknown[]) => lines.push(a.join(" "));
  try {
    return { code: await f(), err: lines.join("\n") };
  } finally {
    console.error = orig;
  }
}

Deno.test("router run: --drain and --replace are checked before anything starts", async () => {
  const alone = await captured(() => runRunCommand(["--config", "x.json", "--drain", "5m"]));
  assert.deepEqual([alone.code, /--drain: 5m: goes with --replace/.test(alone.err)], [2, true]);
  const long = await captured(() =>
    runRunCommand(["--config", "x.json", "--replace", "--drain", "25h"])
  );
  assert.deepEqual([long.code, /--drain: 25h: at most 24h/.test(long.err)], [2, true], long.err);
  const noIpc = await captured(() =>
    runRunCommand(["--config", "x.json", "--replace", "--no-ipc"])
  );
  assert.deepEqual([noIpc.code, /drop --no-ipc/.test(noIpc.err)], [2, true], noIpc.err);
  const check = await captured(() => runCheckCommand(["--config", "x.json", "--replace"]));
  assert.deepEqual([check.code, /check takes only --config/.test(check.err)], [2, true]);
});
