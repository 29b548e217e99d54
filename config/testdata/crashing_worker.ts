/**
 * The config worker, except that a job for the file "/crash" makes it throw
 * from a timer (an uncaught error: the worker dies). For
 * `rule_patch_test.ts`'s worker-restart case.
 */

/// <reference lib="deno.worker" />

import "../compile_worker.ts";

self.addEventListener("message", (ev: MessageEvent<{ source?: unknown }>) => {
  if (ev.data?.source === "/crash") {
    setTimeout(() => {
      throw new Error("config worker crashed (test)");
    });
  }
});
