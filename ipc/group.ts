/**
 * Group name → gid, read from `/etc/group` (no NSS, no FFI), for the IPC
 * socket's `group` option.
 *
 * @module
 */

/**
 * Finds the gid of `group` in the text of an `/etc/group` file
 * (`name:password:gid:members` lines). Returns null when absent.
 */
export function findGroupId(groupFileText: string, group: string): number | null {
  for (const line of groupFileText.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const fields = line.split(":");
    if (fields[0] !== group || fields.length < 3) continue;
    const gid = fields[2]!;
    if (!/^\d{1,10}$/.test(gid)) continue;
    const n = Number(gid);
    if (n <= 0xffff_ffff) return n;
  }
  return null;
}

/**
 * Resolves a group given as a gid (number or digits) or a name looked up in
 * `groupFile`. Throws a `TypeError` naming the group when it is unknown.
 */
export async function resolveGroupId(
  group: string | number,
  groupFile = "/etc/group",
): Promise<number> {
  if (typeof group === "number" || /^\d+$/.test(group)) {
    const n = Number(group);
    if (!Number.isInteger(n) || n < 0 || n > 0xffff_ffff) {
      throw new RangeError(`ipc.group: ${group}: gid out of range`);
    }
    return n;
  }
  const text = await Deno.readTextFile(groupFile);
  const gid = findGroupId(text, group);
  if (gid === null) throw new TypeError(`ipc.group: "${group}": no such group in ${groupFile}`);
  return gid;
}
