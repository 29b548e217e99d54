/**
 * Entry point of the config worker (a Deno `Worker`, started once by
 * {@linkcode CompileWorker} and reused so its JIT stays warm): for each
 * {@linkcode JobRequest} it runs {@linkcode compileJob} and posts its reply
 * with the engine's typed arrays transferred, then, for a big rule list, the
 * reply's tail (rule spans and fingerprints, not needed to route). After a
 * patch reply it compiles the patched file in full once it has been idle
 * for the request's `rebaseIdleMs`, and posts that as `{rebase: JobDone}`
 * (then its tail): the caller's new base ({@linkcode rebaseJob}). Jobs run
 * one at a time. With `JobRequest.arenas` a full compile's arrays go out in
 * shared arenas (`arena.ts`), reused once the caller frees them
 * (`{free: ids}`, see `CompileWorker.retire`). Only meant to be loaded as a
 * worker.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import {
  compileJob,
  CompileMemo,
  type JobRequest,
  type JobResult,
  rebaseJob,
} from "./compile_job.ts";
import { lowerThreadPriority } from "./thread_priority.ts";
import { ArenaPool, intoArena } from "./arena.ts";
import { keepShapes } from "../core/keep_shape.ts";
import { dropSpares, keepSpares } from "../rules/spare.ts";
import { readConfigFileSync } from "./load_config.ts";

/** The worker reads files on its own thread, synchronously (`readFileSyncCapped`). */
const DEPS = { readFile: readConfigFileSync };
// The data-plane thread must win the CPU whenever both want it (2 vCPUs are common).
const niced = lowerThreadPriority();
// The last job's route rules, to skip them when a reload leaves them unchanged.
const memo = new CompileMemo();
// A small object of each compiler class is kept, and with it the hidden classes its instances
// share, so that the optimised code survives the collections between reloads (keep_shape.ts).
keepShapes();
// Builders' scratch arrays go from one compile to the next, not to the collector (`spare.ts`).
keepSpares();
/** Jobs (and rebases) one after the other: they share the memo. */
let queue: Promise<void> = niced.then(() => {});
let rebaseTimer: ReturnType<typeof setTimeout> | undefined;
/** How long the last full compile took, ms: a rebase waits a few times that (see below). */
let lastFullMs = 0;

/** Shared arenas for full compiles, when the caller asks for them (`JobRequest.arenas`). */
const arenas = new ArenaPool();
let useArenas = false;
/**
 * Free arenas and spare scratch arrays (`spare.ts`) are kept for the next
 * reload, but not for long: after this long without a job or a `free` they
 * are dropped, so the memory goes back (large set: RSS 114 MiB idle against
 * 131 when arenas were kept a minute). A burst of reloads still reuses them.
 */
const IDLE_MS = 5_000;
let idleTimer: ReturnType<typeof setTimeout> | undefined;

/** (Re)starts the wait after which idle memory is dropped. */
function idleFromNow(): void {
  clearTimeout(idleTimer);
  idleTimer = setTimeout(() => {
    arenas.dropFree();
    dropSpares();
  }, IDLE_MS);
  Deno.unrefTimer(idleTimer);
}

/** Posts a result: a full compile (and its tail) copied into arenas when asked, else transferred. */
function post(r: JobResult, wrap: (reply: JobResult["reply"]) => unknown = (x) => x): void {
  const full = r.reply.ok && "wire" in r.reply && !("patched" in r.reply);
  if (useArenas && full) {
    const a = intoArena(r.reply, r.transfer, arenas, r.keep);
    self.postMessage(wrap({ ...a.msg, arena: a.arena }));
    if (r.tail) {
      const t = r.tail();
      const b = intoArena(t.reply, t.transfer, arenas);
      self.postMessage({ ...b.msg, arena: b.arena });
    }
    return;
  }
  self.postMessage(wrap(r.reply), r.transfer);
  if (r.tail) {
    const t = r.tail();
    self.postMessage(t.reply, t.transfer);
  }
}

self.onmessage = (ev: MessageEvent<JobRequest | { free: number[] }>) => {
  // Arenas no engine on the data-plane thread reads any more (`CompileWorker.retire`).
  if ("free" in ev.data) {
    arenas.free(ev.data.free);
    idleFromNow();
    return;
  }
  clearTimeout(idleTimer);
  clearTimeout(rebaseTimer);
  rebaseTimer = undefined;
  const req = ev.data;
  useArenas = req.arenas === true;
  queue = queue.then(async () => {
    const r = await compileJob(req, DEPS, memo);
    post(r);
    if (r.reply.ok && "wire" in r.reply && !("patched" in r.reply)) {
      lastFullMs = r.reply.ms.parse + r.reply.ms.compile;
      memo.prepareBase();
    }
    idleFromNow();
    // A rebase is a full compile, and a reload that comes meanwhile waits for it: wait
    // longer for big rule lists, so reloads a few hundred ms apart do not queue behind one.
    const idle = req.rebaseIdleMs ? Math.min(2000, Math.max(req.rebaseIdleMs, 3 * lastFullMs)) : 0;
    const added = "patched" in r.reply ? r.reply.wire.ruleCount : 0;
    if ("patched" in r.reply && idle > 0 && added >= (req.rebaseMinAdded ?? 1)) {
      rebaseTimer = setTimeout(() => {
        rebaseTimer = undefined;
        queue = queue.then(async () => {
          const rb = await rebaseJob(memo, DEPS);
          if (rb) {
            post(rb, (reply) => ({ rebase: reply }));
            memo.prepareBase();
          }
          // The rebase took spares too: they go after the same wait.
          idleFromNow();
        });
      }, idle);
    }
  });
};
