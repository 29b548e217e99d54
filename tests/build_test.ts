// Builds the shipped programs with build.sh (into a temporary directory) and
// runs them: whichever artifact this machine can make (a `deno compile`
// executable, or a bundle + launcher without network), `router` must start,
// serve IPC and reload on its config worker, and `slim` must answer --help.
// Needs root for the router's transparent sockets (loopback only).
import assert from "node:assert/strict";
import { join } from "node:path";
import { IpcClient } from "../ipc/client.ts";
import { ROUTER_V8_FLAGS } from "../core/v8_flags.ts";

const ROOT = new URL("../", import.meta.url).pathname;

async function run(cmd: string, args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(cmd, { args, env, cwd: ROOT, stdin: "null" }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("build.sh makes a router that starts, reloads on its config worker, and a slim that runs", async () => {
  const dir = await Deno.makeTempDir({ prefix: "router-build-" });
  const dist = join(dir, "dist");
  let router: Deno.ChildProcess | null = null;
  try {
    const built = await run("bash", ["build.sh"], { DIST: dist });
    assert.equal(built.code, 0, built.stderr);
    assert.match(built.stdout + built.stderr, /build\.sh: .*\/router: /);

    const help = await run(join(dist, "slim"), ["--help"]);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /slim/);

    const sock = join(dir, "ipc.sock");
    const config = join(dir, "router.json");
    const free = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (free.addr as Deno.NetAddr).port;
    free.close();
    const cfg = (domain: string) => ({
      log: { level: "info" },
      inbounds: [{ type: "tproxy", tag: "in", listen: "127.0.0.1", listen_port: port }],
      outbounds: [{ type: "direct", tag: "direct" }, { type: "block", tag: "block" }],
      route: { rules: [{ domain: [domain], outbound: "block" }], final: "direct" },
      ipc: { path: sock },
    });
    await Deno.writeTextFile(config, JSON.stringify(cfg("a.example")));
    router = new Deno.Command(join(dist, "router"), {
      args: ["run", "--config", config],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    let ipc: IpcClient | null = null;
    for (let i = 0; i < 200 && !ipc; i++) {
      try {
        ipc = await IpcClient.connect(sock);
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    assert.ok(ipc, "the built router opened its IPC socket");
    assert.equal((await ipc.status()).rules, 1);
    try {
      await Deno.writeTextFile(config, JSON.stringify(cfg("b.example")));
      const r = await ipc.reload({ path: config });
      assert.equal(r.rules, 1);
      assert.equal(r.rules_reused, false, "the rule changed: compiled anew");
      assert.equal(r.compiled_on, "worker", "the build carries the config worker");
      const t = await ipc.routeTest({ dst: "192.0.2.1:443", domain: "b.example" });
      assert.equal(t.outbound, "block");
    } finally {
      ipc.close();
    }
  } finally {
    if (router) {
      try {
        router.kill("SIGTERM");
      } catch { /* exited already: the status below says how */ }
      const { code } = await router.status;
      const err = new TextDecoder().decode(
        await new Response(router.stderr).arrayBuffer().catch(() => new ArrayBuffer(0)),
      );
      assert.equal(code, 0, err);
      assert.doesNotMatch(err, /Uncaught|config worker failed/, err);
    }
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("build.sh with REQUIRE_COMPILE=1 never falls back to a launcher; ONLY builds one program", async () => {
  const dir = await Deno.makeTempDir({ prefix: "router-build-strict-" });
  try {
    const r = await run("bash", ["build.sh"], { DIST: dir, ONLY: "slim", REQUIRE_COMPILE: "1" });
    const names = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assert.ok(!names.includes("router"), `ONLY=slim built the router too: ${names}`);
    assert.ok(!names.some((n) => n.endsWith(".bundle.js")), `a launcher was made: ${names}`);
    if (r.code === 0) {
      // A machine that can reach a denort runtime: the real executable.
      assert.match(r.stdout, /slim: self-contained executable/);
    } else {
      // No runtime to compile against (this development VM has no network).
      assert.match(r.stderr, /deno compile failed for slim \(REQUIRE_COMPILE=1\)/);
      assert.ok(!names.includes("slim"), "nothing half-made is left as slim");
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("build.sh, the router task and the benches run the router with the same V8 flags", async () => {
  const build = await Deno.readTextFile(join(ROOT, "build.sh"));
  const baked = build.match(/"router main\.ts [^"]*--v8-flags=(\S+?)"/)?.[1];
  const task = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json"))).tasks.router as string;
  const tasked = task.match(/--v8-flags=(\S+)/)?.[1];
  assert.equal(baked, ROUTER_V8_FLAGS, "build.sh");
  assert.equal(tasked, ROUTER_V8_FLAGS, "deno.json tasks.router");
  assert.match(ROUTER_V8_FLAGS, /--optimize-for-size/);
  assert.match(ROUTER_V8_FLAGS, /--no-concurrent-marking/);
  assert.match(ROUTER_V8_FLAGS, /--enable-experimental-regexp-engine-on-excessive-backtracks/);
});
