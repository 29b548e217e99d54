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
  try {
    const out = await new Deno.Command("renice", {
      args: ["-n", String(nice), "-p", tid],
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success;
  } catch {
    return false;
  }
}
