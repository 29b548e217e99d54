/**
 * systemd's service notification (`sd_notify(3)`): one datagram of
 * `KEY=value` lines to the `AF_UNIX` socket named by `$NOTIFY_SOCKET` (a path,
 * or `@name` in the abstract namespace). `router run` sends `READY=1` with
 * its `MAINPID` once it routes: a `Type=notify` unit then starts only when the
 * listeners are up, and a successor started with `--replace` (by
 * `router upgrade` from `ExecReload=`) becomes the unit's main process, so
 * systemd keeps supervising the new router while the old one drains.
 *
 * @module
 */

import { errnoView, libc } from "./libc.ts";
import { close, send, SOCK_DGRAM, socket } from "./socket.ts";

const AF_UNIX = 1;
/** `sizeof(sun_path)`. */
const SUN_PATH_MAX = 108;
const encoder = new TextEncoder();

/** `struct sockaddr_un` for `path` (`@name`: abstract), and its length for connect/bind. */
export function unixSockaddr(path: string): Uint8Array {
  const abstract = path.startsWith("@");
  const name = encoder.encode(abstract ? path.slice(1) : path);
  // Abstract: a NUL, then the name, no terminator; a path: the bytes and a NUL.
  const len = 1 + name.length;
  if (name.length === 0 || len > SUN_PATH_MAX) {
    throw new RangeError(
      `unix socket name ${JSON.stringify(path)}: empty or longer than 107 bytes`,
    );
  }
  const sa = new Uint8Array(2 + len);
  sa[0] = AF_UNIX; // sa_family (little-endian u16)
  sa.set(name, abstract ? 3 : 2);
  return sa;
}

/**
 * Sends `state` (e.g. `"READY=1\nMAINPID=42"`) to the service manager.
 * False when `$NOTIFY_SOCKET` is not set (not started by systemd with
 * notification); throws an `Error` naming the socket when sending fails.
 */
export function sdNotify(state: string, socketPath = Deno.env.get("NOTIFY_SOCKET")): boolean {
  if (socketPath === undefined || socketPath === "") return false;
  const sa = unixSockaddr(socketPath);
  const fd = socket(AF_UNIX, SOCK_DGRAM);
  try {
    const E = errnoView();
    if (libc().connect(fd, sa, sa.length) < 0) {
      throw new Error(`NOTIFY_SOCKET ${socketPath}: connect: errno ${E[0]}`);
    }
    const msg = encoder.encode(state);
    if (send(fd, msg) !== msg.length) throw new Error(`NOTIFY_SOCKET ${socketPath}: short send`);
    return true;
  } finally {
    close(fd);
  }
}
