import assert from "node:assert/strict";

Deno.test("lowerThreadPriority() renices only the calling thread", async () => {
  const mod = new URL("./thread_priority.ts", import.meta.url).href;
  // Field 19 of /proc/thread-self/stat is the niceness (after the parenthesised name).
  const code = `
    import { lowerThreadPriority } from ${JSON.stringify(mod)};
    const nice = () => Number(Deno.readTextFileSync("/proc/thread-self/stat").split(") ")[1].split(" ")[16]);
    const before = nice();
    const ok = await lowerThreadPriority(7);
    self.postMessage({ before, ok, after: nice() });
  `;
  const w = new Worker(`data:application/javascript,${encodeURIComponent(code)}`, {
    type: "module",
  });
  try {
    const r = await new Promise<{ before: number; ok: boolean; after: number }>(
      (resolve, reject) => {
        w.onmessage = (e) => resolve(e.data);
        w.onerror = (e) => reject(new Error(e.message));
      },
    );
    const main = Number(
      Deno.readTextFileSync("/proc/thread-self/stat").split(") ")[1]!.split(" ")[16],
    );
    if (!r.ok) {
      console.log("renice unavailable here; skipped");
      return;
    }
    assert.equal(r.after, 7);
    assert.equal(main, r.before, "the calling (test) thread keeps its priority");
  } finally {
    w.terminate();
  }
});
