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

Deno.test("lowerV8HelperPriority() renices V8's helper threads, not the main thread", async () => {
  const mod = new URL("./thread_priority.ts", import.meta.url).href;
  // In a child process, so this test runner's own threads keep their priority.
  const code = `
    import { lowerV8HelperPriority } from ${JSON.stringify(mod)};
    const count = await lowerV8HelperPriority(9);
    const threads = [];
    for (const e of Deno.readDirSync("/proc/self/task")) {
      const stat = Deno.readTextFileSync("/proc/self/task/" + e.name + "/stat");
      threads.push({
        tid: Number(e.name),
        comm: Deno.readTextFileSync("/proc/self/task/" + e.name + "/comm").trim(),
        nice: Number(stat.split(") ")[1].split(" ")[16]),
      });
    }
    console.log(JSON.stringify({ count, pid: Deno.pid, threads }));
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-config", code],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  assert.ok(out.success);
  const r = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    count: number;
    pid: number;
    threads: { tid: number; comm: string; nice: number }[];
  };
  if (r.count === 0) {
    console.log("renice unavailable here; skipped");
    return;
  }
  const helpers = r.threads.filter((t) => t.comm.startsWith("V8 DefaultWorke"));
  assert.equal(helpers.length, r.count);
  for (const t of helpers) assert.equal(t.nice, 9, `${t.comm} (${t.tid})`);
  const main = r.threads.find((t) => t.tid === r.pid)!;
  assert.equal(main.nice, 0, "the main (data-plane) thread keeps its priority");
});
