import assert from "node:assert/strict";
import { fakeHandlers, tempSocketPath } from "./_fake_handlers.ts";
import { IpcServer } from "./server.ts";

const script = new URL("./python/test_client.py", import.meta.url).pathname;

Deno.test("python AsyncRustRouterClient passes its unittest suite against a live IpcServer", async () => {
  const { dir, path } = await tempSocketPath();
  const { handlers } = fakeHandlers({
    connectionsList: (p) =>
      p.outbound === "hang" ? new Promise(() => {}) : { connections: [], total: p.limit ?? 0 },
  });
  const server = await IpcServer.listen({ path, handlers });
  try {
    const child = new Deno.Command("python3", {
      args: ["-W", "error::RuntimeWarning", script, path],
      stdout: "piped",
      stderr: "piped",
      env: { PYTHONDONTWRITEBYTECODE: "1" },
    }).spawn();
    // Bounded: the suite takes well under a second; kill it if it hangs.
    const killer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    const out = await child.output();
    clearTimeout(killer);
    const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, text);
    assert.match(text, /Ran 10 tests/);
    assert.match(text, /\nOK/);
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});
