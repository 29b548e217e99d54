/**
 * Entry point of the config worker (a Deno `Worker`, started once by
 * {@linkcode CompileWorker} and reused so its JIT stays warm): for each
 * {@linkcode JobRequest} it runs {@linkcode compileJob} and posts the reply
 * with the engine's typed arrays transferred, then, for a big rule list, the
 * reply's tail (rule spans and fingerprints, not needed to route). Only meant
 * to be loaded as a worker.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { compileJob, CompileMemo, type JobRequest } from "./compile_job.ts";
import { lowerThreadPriority } from "./thread_priority.ts";

// The data-plane thread must win the CPU whenever both want it (2 vCPUs are common).
const niced = lowerThreadPriority();
// The last job's route rules, to skip them when a reload leaves them unchanged.
const memo = new CompileMemo();

self.onmessage = async (ev: MessageEvent<JobRequest>) => {
  await niced;
  const { reply, transfer, tail } = await compileJob(ev.data, {}, memo);
  self.postMessage(reply, transfer);
  if (tail) {
    const t = tail();
    self.postMessage(t.reply, t.transfer);
  }
};
