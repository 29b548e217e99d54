/**
 * Lowers the scheduling priority of the calling thread (Linux: `renice` on
 * the thread id from `/proc/thread-self`), so a background worker yields the
 * CPU to the data-plane thread. Best effort: returns false when it cannot.
 *
 * @module
 */

/** Default niceness for background work (0 = normal, 19 = lowest). */
export const BACKGROUND_NICE = 10;

/** Renices the calling thread to `nice`; false when not possible (not Linux, no `renice`). */
export async function lowerThreadPriority(nice = BACKGROUND_NICE): Promise<boolean> {
  let tid: string;
  try {
    tid = Deno.readLinkSync("/proc/thread-self").split("/").pop() ?? "";
  } catch {
    return false;
  }
  if (!/^\d+$/.test(tid)) return false;
  return await renice(nice, [tid]);
}

/** `renice -n nice -p tids...` (an argv array); false when it cannot run or fails. */
async function renice(nice: number, tids: readonly string[]): Promise<boolean> {
  try {
    const out = await new Deno.Command("renice", {
      args: ["-n", String(nice), "-p", ...tids],
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success;
  } catch {
    return false;
  }
}

/**
 * Renices V8's shared helper threads ("V8 DefaultWorker": concurrent garbage
 * collection and JIT compilation for every isolate of the process) to
 * `nice`, so the data-plane thread wins the CPU over the garbage collection
 * a reload causes. Returns how many threads were reniced (0 when not
 * possible).
 */
export async function lowerV8HelperPriority(nice = BACKGROUND_NICE): Promise<number> {
  const tids: string[] = [];
  try {
    for (const e of Deno.readDirSync("/proc/self/task")) {
      if (!/^\d+$/.test(e.name)) continue;
      let comm = "";
      try {
        comm = Deno.readTextFileSync(`/proc/self/task/${e.name}/comm`);
      } catch {
        continue;
      }
      if (comm.startsWith("V8 DefaultWorke")) tids.push(e.name);
    }
  } catch {
    return 0;
  }
  if (tids.length === 0) return 0;
  return await renice(nice, tids) ? tids.length : 0;
}
