/**
 * `router upgrade` on real processes (root: the TPROXY listener needs
 * IP_TRANSPARENT; loopback only): a router started with `$NOTIFY_SOCKET`
 * tells the "service manager" it is ready and its pid; `router upgrade`
 * starts a successor from the running router's own command line with
 * `--replace`, which takes over the IPC socket and reports itself as the
 * main pid; the old router drains and exits 0.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { IpcClient } from "../ipc/client.ts";
import { close } from "../ffi/socket.ts";
import { notifyListener } from "../ffi/_test_util.ts";
import { successorArgv } from "../cli/ipc_commands.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** `dir/router.json`: a TPROXY inbound on loopback, the IPC socket `dir/router.sock`. */
async function writeConfig(dir: string): Promise<{ sock: string; config: string }> {
  const sock = join(dir, "router.sock"), config = join(dir, "router.json");
  await Deno.writeTextFile(
    config,
    JSON.stringify({
      log: { level: "warn" },
      inbounds: [{ type: "tproxy", tag: "in", listen: "127.0.0.1", listen_port: freePort() }],
      outbounds: [{ type: "direct", tag: "direct" }],
      route: { final: "direct" },
      ipc: { path: sock },
    }),
  );
  return { sock, config };
}

/** Whether process `pid` exists (and is not a zombie). */
function alive(pid: number): boolean {
  try {
    return !/^\S+ \(.*\) Z/.test(Deno.readTextFileSync(`/proc/${pid}/stat`));
  } catch {
    return false;
  }
}

/** What `stream` holds within 2 s (then it is cancelled), as text. */
async function firstChunk(stream: ReadableStream<Uint8Array>): Promise<string> {
  const reader = stream.getReader();
  const timer = new Promise<null>((r) => setTimeout(() => r(null), 2_000));
  const got = await Promise.race([reader.read(), timer]);
  await reader.cancel();
  return got && got.value ? new TextDecoder().decode(got.value) : "";
}

/** The next notification, waiting up to `ms`. */
async function nextNotification(l: { next(): string | null }, ms = 20_000): Promise<string> {
  const end = Date.now() + ms;
  for (;;) {
    const m = l.next();
    if (m !== null) return m;
    if (Date.now() > end) throw new Error("no notification");
    await new Promise((r) => setTimeout(r, 50));
  }
}

Deno.test("successorArgv() keeps the router's command line and adds --replace, once", () => {
  assert.deepEqual(
    successorArgv(["/usr/local/bin/router", "run", "--config", "/etc/r.json"], "10m"),
    ["/usr/local/bin/router", "run", "--config", "/etc/r.json", "--replace", "--drain", "10m"],
  );
  assert.deepEqual(
    successorArgv(
      [
        "deno",
        "run",
        "-A",
        "main.ts",
        "run",
        "-c",
        "run",
        "--replace",
        "--drain",
        "5m",
        "--drain=1s",
      ],
      "30s",
    ),
    ["deno", "run", "-A", "main.ts", "run", "-c", "run", "--replace", "--drain", "30s"],
  );
  assert.equal(successorArgv(["/usr/bin/router", "status"], "1s"), null);
});

Deno.test("router upgrade: a successor from the running router's command line takes over and tells systemd it is the main pid", async () => {
  const dir = await Deno.makeTempDir({ prefix: "router-upgrade-" });
  const notify = notifyListener(join(dir, "notify"));
  const { sock, config } = await writeConfig(dir);
  const env = { NOTIFY_SOCKET: join(dir, "notify") };
  const first = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "run", "--config", "router.json"], // relative: run in `dir`
    cwd: dir,
    env,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  let newPid = 0, stray = 0;
  let upgradeOut: ReadableStream<Uint8Array> | undefined;
  try {
    assert.equal(
      await nextNotification(notify),
      `READY=1\nMAINPID=${first.pid}\nSTATUS=routing (0 rules)`,
    );
    // The successor inherits upgrade's stdout and stderr (its log goes where upgrade's output
    // went): read upgrade's one line and its exit code, not the pipes' ends.
    const upgrade = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN, "upgrade", "--socket", sock, "--drain", "0s", "--json"],
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    upgradeOut = upgrade.stdout;
    const lines = upgrade.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const { value: out } = await lines.read();
    lines.releaseLock();
    assert.equal((await upgrade.status).code, 0, out);
    const r = JSON.parse(out!);
    assert.equal(r.old_pid, first.pid);
    newPid = r.new_pid;
    assert.notEqual(newPid, first.pid);
    assert.match(await nextNotification(notify), new RegExp(`^READY=1\nMAINPID=${newPid}\n`));
    const ipc = await IpcClient.connect(sock);
    try {
      assert.equal((await ipc.status()).pid, newPid, "the successor answers on the socket");
    } finally {
      await ipc.close();
    }
    assert.equal((await first.status).code, 0, "the old router drained and exited 0");
    // One that starts but does not take over in time (its config names another socket) is
    // stopped: never two routers.
    const other = join(dir, "other.sock");
    await Deno.writeTextFile(config, (await Deno.readTextFile(config)).replace(sock, other));
    const slow = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN, "upgrade", "--socket", sock, "--wait", "3s"],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    assert.equal((await slow.status).code, 1);
    // Upgrade's own message; not the pipe's end (a stray router would hold it open).
    const slowErr = await firstChunk(slow.stderr);
    stray = Number(
      /new router \(pid (\d+)\) had not taken over after 3 s/.exec(slowErr)?.[1],
    );
    assert.ok(stray > 0, slowErr);
    for (let i = 0; i < 100 && alive(stray); i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(alive(stray), false, "the stray router was stopped");
    // A router that cannot start (its config broken since) leaves the running one alone.
    await Deno.writeTextFile(config, "{ broken");
    const bad = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN, "upgrade", "--socket", sock],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).output(); // the failed successor has exited: the pipes end
    assert.equal(bad.code, 1);
    assert.match(new TextDecoder().decode(bad.stderr), /exited with code 1 before taking over/);
    const still = await IpcClient.connect(sock);
    try {
      assert.equal((await still.status()).pid, newPid);
    } finally {
      await still.close();
    }
  } finally {
    try {
      first.kill("SIGTERM");
    } catch { /* exited */ }
    if (stray > 0 && alive(stray)) Deno.kill(stray, "SIGTERM"); // a failed test's leftover
    if (newPid) {
      try {
        Deno.kill(newPid, "SIGTERM");
      } catch { /* exited */ }
      for (let i = 0; i < 100; i++) {
        try {
          Deno.kill(newPid, "SIGCONT"); // probe: throws once it is gone
          await new Promise((r) => setTimeout(r, 50));
        } catch {
          break;
        }
      }
    }
    await first.status;
    await upgradeOut?.cancel().catch(() => {});
    close(notify.fd);
    await Deno.remove(dir, { recursive: true });
  }
});

const systemdAnalyze = (() => {
  try {
    return new Deno.Command("systemd-analyze", { args: ["--version"] }).outputSync().success;
  } catch {
    return false;
  }
})();

Deno.test({
  name:
    "examples/vpn-router.service passes systemd-analyze verify (Type=notify, ExecReload=router upgrade)",
  ignore: !systemdAnalyze,
  fn: async () => {
    const unit = await Deno.readTextFile(
      new URL("../examples/vpn-router.service", import.meta.url),
    );
    assert.match(unit, /^Type=notify$/m);
    assert.match(unit, /^NotifyAccess=all$/m);
    assert.match(unit, /^ExecReload=\/usr\/local\/bin\/router upgrade /m);
    const dir = await Deno.makeTempDir();
    try {
      // The router is not installed here: point its commands at an executable that is.
      const path = join(dir, "vpn-router.service");
      await Deno.writeTextFile(path, unit.replaceAll("/usr/local/bin/router", "/bin/true"));
      const r = await new Deno.Command("systemd-analyze", { args: ["verify", path] }).output();
      const err = new TextDecoder().decode(r.stderr);
      assert.equal(r.code, 0, err);
      assert.equal(err.trim(), "", err);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("router upgrade refuses a router that is PID 1 (a container's): its successor would end with it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "router-upgrade-pid1-" });
  const { sock } = await writeConfig(dir);
  // PID 1 of a new PID namespace, as in a container.
  const init = new Deno.Command("unshare", {
    // --kill-child: when unshare goes (SIGKILL below), the router gets SIGTERM.
    args: [
      "--fork",
      "--pid",
      "--mount-proc",
      "--kill-child=SIGTERM",
      Deno.execPath(),
      "run",
      "-A",
      MAIN,
      "run",
      "--config",
      "router.json",
    ],
    cwd: dir,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    let pid = 0;
    for (let i = 0; i < 200 && pid === 0; i++) {
      try {
        const c = await IpcClient.connect(sock);
        pid = (await c.status()).pid;
        await c.close();
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    assert.equal(pid, 1, "the router is its namespace's PID 1");
    const up = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN, "upgrade", "--socket", sock],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.equal(up.code, 1);
    assert.match(new TextDecoder().decode(up.stderr), /the router is PID 1 \(a container\?\)/);
  } finally {
    init.kill("SIGKILL");
    await init.status;
    await Deno.remove(dir, { recursive: true });
  }
});
