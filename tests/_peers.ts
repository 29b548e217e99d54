/**
 * Command lines and config files of the real SOCKS5 peers the tests run:
 * Debian's `microsocks` and dante-server (`danted`). Shared by the loopback
 * test (`tests/socks5_peers_test.ts`) and the netns labs
 * (`tests/netns/_kinds_lab.ts`), which start and wait for them their own way
 * (a plain child process vs one inside a namespace).
 *
 * Internal to the tests (the leading `_`); nothing runs at import.
 *
 * @module
 */

/**
 * `microsocks` on `127.0.0.1:port`; with `auth`, username/password
 * (RFC 1929) is required.
 */
export function microsocksArgv(port: number, auth?: readonly [string, string]): string[] {
  const argv = ["microsocks", "-i", "127.0.0.1", "-p", String(port)];
  if (auth) argv.push("-u", auth[0], "-P", auth[1]);
  return argv;
}

/**
 * A `danted.conf`: listens on `127.0.0.1:port`, no authentication, clients
 * from 127.0.0.0/8 only, egress from the `external` addresses (IPv6
 * destinations are allowed when one of them is IPv6). Logs to stderr.
 */
export function danteConfig(port: number, external: readonly string[]): string {
  if (external.length === 0) throw new RangeError("danteConfig: external: empty");
  return [
    "logoutput: stderr",
    `internal: 127.0.0.1 port = ${port}`,
    ...external.map((a) => `external: ${a}`),
    "socksmethod: none",
    "clientmethod: none",
    "user.privileged: root",
    "user.unprivileged: nobody",
    "client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }",
    "socks pass { from: 0.0.0.0/0 to: 0.0.0.0/0 }",
    // IPv6 targets; UDP replies are matched from the target to the client.
    ...(external.some((a) => a.includes(":"))
      ? ["socks pass { from: 0.0.0.0/0 to: ::/0 }", "socks pass { from: ::/0 to: 0.0.0.0/0 }"]
      : []),
    "",
  ].join("\n");
}

/** `danted` in the foreground with config `confPath`, one child process, pid file `pidPath`. */
export function danteArgv(confPath: string, pidPath: string): string[] {
  return ["danted", "-f", confPath, "-N", "1", "-p", pidPath];
}
