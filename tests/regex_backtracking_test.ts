// A domain_regex that backtracks exponentially on some names must not hold
// the router's thread: the router's V8 flags (ROUTER_V8_FLAGS, baked into
// dist/router by build.sh) rerun such a match in V8's linear-time engine, and
// config validation refuses what that engine cannot run (backreferences,
// lookaround; RE2, as sing-box). Runs `router route-test` offline with the
// production flags on a name made to blow up the pattern.
import assert from "node:assert/strict";
import { join } from "node:path";
import { ROUTER_V8_FLAGS } from "../core/v8_flags.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

Deno.test("a domain_regex that backtracks exponentially on a name still answers, with the router's V8 flags", async () => {
  const dir = await Deno.makeTempDir({ prefix: "router-regex-" });
  try {
    const config = join(dir, "router.json");
    await Deno.writeTextFile(
      config,
      JSON.stringify({
        inbounds: [],
        outbounds: [{ type: "direct", tag: "direct" }, { type: "block", tag: "blocked" }],
        route: {
          rules: [{ domain_regex: ["^([a-z0-9-]+)*\\.example\\.com$"], outbound: "blocked" }],
          final: "direct",
        },
      }),
    );
    // Every way of splitting the 60 letters is tried before ".org" fails: 2^59 of them.
    const evil = `${"a".repeat(60)}.example.org`;
    const routeTest = async (domain: string) => {
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          `--v8-flags=${ROUTER_V8_FLAGS}`,
          MAIN,
          "route-test",
          "--config",
          config,
          "--dst",
          "192.0.2.1:443",
          "--domain",
          domain,
          "--json",
        ],
        stdout: "piped",
        stderr: "piped",
        stdin: "null",
      }).spawn();
      // Not a timing assertion: without the flags this match would run for years.
      const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
      const out = await child.output();
      clearTimeout(timer);
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      return JSON.parse(new TextDecoder().decode(out.stdout)) as { outbound: string };
    };
    assert.equal((await routeTest(evil)).outbound, "direct");
    assert.equal((await routeTest("www.example.com")).outbound, "blocked");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
