import assert from "node:assert/strict";
import { FAKE_STATUS, fakeHandlers, fakeRouteTest, tempSocketPath } from "../ipc/_fake_handlers.ts";
import { IpcServer } from "../ipc/server.ts";
import type { IpcHandlers } from "../ipc/server.ts";
import type { StatsParams, StatsResult } from "../ipc/protocol.ts";
import {
  formatUptime,
  type IpcCommandDeps,
  type RouteTester,
  runReload,
  runRouteTest,
  runStatus,
  runStop,
} from "./ipc_commands.ts";

class Sink {
  chunks: Uint8Array[] = [];
  write(p: Uint8Array): Promise<number> {
    this.chunks.push(p.slice());
    return Promise.resolve(p.length);
  }
  get text(): string {
    return new TextDecoder().decode(
      this.chunks.reduce((a, b) => {
        const c = new Uint8Array(a.length + b.length);
        c.set(a);
        c.set(b, a.length);
        return c;
      }, new Uint8Array()),
    );
  }
}

interface Io {
  deps: IpcCommandDeps;
  out: Sink;
  err: Sink;
}

function io(stdin = "", extra: Partial<IpcCommandDeps> = {}): Io {
  const out = new Sink(), err = new Sink();
  return {
    out,
    err,
    deps: {
      stdout: out,
      stderr: err,
      stdin: ReadableStream.from([new TextEncoder().encode(stdin)]),
      env: () => undefined,
      cwd: () => "/work/dir",
      ...extra,
    },
  };
}

async function withRouter(
  f: (path: string, calls: ReturnType<typeof fakeHandlers>["calls"]) => Promise<void>,
  overrides: Partial<IpcHandlers> = {},
): Promise<void> {
  const { dir, path } = await tempSocketPath();
  const { handlers, calls } = fakeHandlers(overrides);
  const server = await IpcServer.listen({ path, handlers });
  try {
    await f(path, calls);
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("runStatus() prints a human summary with uptime, flows, rules and outbound states", async () => {
  await withRouter(async (path) => {
    const t = io();
    assert.equal(await runStatus(["--socket", path], t.deps), 0);
    const text = t.out.text;
    assert.match(text, /up 1h 2m 3s/);
    assert.match(text, /rules: +3 \(final: direct\)/);
    assert.match(text, /flows: +12 active \(8 tcp, 4 udp\), 3456 since start/);
    assert.match(text, /wg-us +direct\/wireguard +up +7/);
    assert.match(text, /xray-jp +socks\/xray +down +0 +refused/);
    assert.match(text, /reload: +2026-01-01T01:00:00\.000Z ok in 4\.2 ms, 1 rule compiled/);
    assert.match(text, /memory: +rss 80\.0 MiB, JS heap 9\.0\/12\.0 MiB, external 3\.0 MiB/);
    assert.match(
      text,
      /udp: +tproxy-in: 4\/65536 sessions, 40 created, 36 expired, 0 evicted, 9 dropped, 3 reply sockets, 2 shared sockets, 1 socks associations, 5 unsolicited dropped, 4 opened by remotes, 2 failed fast \(outbound down\)/,
    );
    assert.equal(t.err.text, "");
  });
});

Deno.test("runStatus(--json) prints the status object", async () => {
  await withRouter(async (path) => {
    const t = io();
    assert.equal(await runStatus(["--json", "--socket", path], t.deps), 0);
    assert.deepEqual(JSON.parse(t.out.text), FAKE_STATUS);
  });
});

Deno.test("runStatus(--rules N) asks stats for the N most hit rules and lists them", async () => {
  const rules = [
    { rule: 4, outbound: "block", hits: 9 },
    { rule: 0, outbound: "wg-us", hits: 2 },
    { rule: null, outbound: "direct", hits: 30 },
  ];
  const asked: StatsParams[] = [];
  const stats = (p: StatsParams) => {
    asked.push(p);
    const base = fakeHandlers().handlers.stats({}) as StatsResult;
    return { ...base, ...(p.rules ? { rules, rules_hit: 5 } : {}) };
  };
  await withRouter(async (path) => {
    const t = io();
    assert.equal(await runStatus(["--rules", "2", "--socket", path], t.deps), 0);
    assert.deepEqual(asked, [{ rules: true, limit: 2 }]);
    assert.match(
      t.out.text,
      /hits: +rule #4 -> block: 9\n +rule #0 -> wg-us: 2\n +final -> direct: 30\n +\(5 rules with hits, 2 shown\)/,
    );
    const j = io();
    assert.equal(await runStatus(["--rules", "2", "--json", "--socket", path], j.deps), 0);
    const out = JSON.parse(j.out.text);
    assert.deepEqual([out.rules_hits, out.rules_hit, out.rules], [rules, 5, FAKE_STATUS.rules]);
    const bad = io();
    assert.equal(await runStatus(["--rules", "lots", "--socket", path], bad.deps), 2);
    assert.match(bad.err.text, /--rules: "lots": expected a count/);
  }, { stats });
});

Deno.test("runStop() asks the router to shut down, with --drain as drain_ms", async () => {
  await withRouter(async (path) => {
    const t = io();
    assert.equal(await runStop(["--drain", "90s", "--socket", path], t.deps), 0);
    assert.equal(
      t.out.text,
      "router (pid 4242) stopping: its 12 open TCP flows may go on for 90 s\n",
    );
    const now = io();
    assert.equal(await runStop(["--json", "--socket", path], now.deps), 0);
    assert.deepEqual(JSON.parse(now.out.text), { pid: 4242, flows: 12, drain_ms: 0 });
    for (const bad of ["soon", "25h"]) {
      const b = io();
      assert.equal(await runStop(["--drain", bad, "--socket", path], b.deps), 2);
      assert.match(b.err.text, new RegExp(`--drain: "${bad}"`));
    }
  });
});

Deno.test("runStatus() uses VPN_ROUTER_SOCKET and reports an unreachable router", async () => {
  await withRouter(async (path) => {
    const t = io("", { env: (n) => (n === "VPN_ROUTER_SOCKET" ? path : undefined) });
    assert.equal(await runStatus([], t.deps), 0);
  });
  const t = io();
  assert.equal(await runStatus(["--socket", "/nonexistent/router.sock"], t.deps), 1);
  assert.match(t.err.text, /\/nonexistent\/router\.sock.*is the router running\?.*connect_failed/);
});

Deno.test("runStatus() answers a bad flag with usage and exit 2, --help with 0", async () => {
  const t = io();
  assert.equal(await runStatus(["--bogus"], t.deps), 2);
  assert.match(t.err.text, /bogus/);
  assert.match(t.err.text, /Usage: router status/);
  const h = io();
  assert.equal(await runStatus(["--help"], h.deps), 0);
  assert.match(h.out.text, /Usage: router status/);
});

Deno.test("runReload() sends an absolute path and prints what was loaded", async () => {
  await withRouter(async (path, calls) => {
    const t = io();
    assert.equal(
      await runReload(
        ["--socket", path, "--config", "conf/router.json", "--close-removed"],
        t.deps,
      ),
      0,
    );
    assert.deepEqual(calls.reload, [{ path: "/work/dir/conf/router.json", close_removed: true }]);
    assert.match(t.out.text, /reloaded \/work\/dir\/conf\/router\.json: 3 rules, 3 outbounds/);
    assert.match(t.out.text, /closed 2 flows/);
  });
});

Deno.test("runReload() says when only some rules were compiled, and when the data-plane thread compiled", async () => {
  await withRouter(async (path) => {
    const t = io();
    assert.equal(await runReload(["--socket", path, "--config", "edited.json"], t.deps), 0);
    assert.match(
      t.out.text,
      /3 rules, 3 outbounds in 1\.5 ms \(1 rule compiled, the others' indexes reused\)/,
    );
    assert.doesNotMatch(t.out.text, /data-plane thread/);
    const u = io();
    assert.equal(await runReload(["--socket", path, "--config", "main.json"], u.deps), 0);
    assert.match(
      u.out.text,
      /\(compiled on the data-plane thread: the config worker could not run\)/,
    );
    assert.doesNotMatch(u.out.text, /rules? compiled/);
  });
});

Deno.test("runReload() without --config reloads the file the router runs from", async () => {
  await withRouter(async (path, calls) => {
    const t = io();
    assert.equal(await runReload(["--socket", path], t.deps), 0);
    assert.deepEqual(calls.reload, [{ path: "/etc/vpn-router/router.json" }]);
  });
});

Deno.test("runReload() prints a rejected config's error naming the path and the field", async () => {
  await withRouter(async (path) => {
    const t = io();
    assert.equal(await runReload(["--socket", path, "-c", "/etc/vpn-router/bad.json"], t.deps), 1);
    assert.match(
      t.err.text,
      /reload of \/etc\/vpn-router\/bad\.json failed: route\.rules\[3\]\.ip_cidr\[0\]: "10\.0\.0\.0\/33": prefix out of range \[config_invalid\]/,
    );
    assert.equal(t.out.text, "");
  });
});

Deno.test("runRouteTest() prints the outbound and the matching rule from a running router", async () => {
  await withRouter(async (path, calls) => {
    const t = io();
    const code = await runRouteTest(
      ["--socket", path, "--dst", "1.2.3.4:443", "--domain", "WWW.netflix.com", "--mark", "0x100"],
      t.deps,
    );
    assert.equal(code, 0);
    assert.equal(
      t.out.text,
      'outbound: wg-us\nrule:     #0 {"domain_suffix":["netflix.com"],"outbound":"wg-us"}\n',
    );
    assert.deepEqual(calls.routeTest, [{
      dst: "1.2.3.4:443",
      domain: "www.netflix.com",
      mark: 256,
    }]);
    const f = io();
    assert.equal(await runRouteTest(["--socket", path, "--dst", "8.8.8.8:443"], f.deps), 0);
    assert.equal(f.out.text, "outbound: direct\nrule:     none matched; final applied\n");
    // The name the router's DNS answers gave the address is shown; --no-dns tests the address.
    const d = io();
    assert.equal(await runRouteTest(["--socket", path, "--dst", "10.53.53.9:443"], d.deps), 0);
    assert.match(
      d.out.text,
      /^outbound: wg-us\nrule: +#0 .*\nname: +dns\.netflix\.com \(from DNS answers\)\n$/,
    );
    const n = io();
    assert.equal(
      await runRouteTest(["--socket", path, "--dst", "10.53.53.9:443", "--no-dns"], n.deps),
      0,
    );
    assert.doesNotMatch(n.out.text, /name:/);
    assert.deepEqual(calls.routeTest.at(-1), { dst: "10.53.53.9:443", dns: false });
  });
});

Deno.test("runRouteTest() rejects a bad flow flag naming it, with exit 2", async () => {
  const t = io();
  assert.equal(await runRouteTest(["--dst", "1.2.3.4"], t.deps), 2);
  assert.match(t.err.text, /--dst: "1\.2\.3\.4": expected IP:PORT/);
  const m = io();
  assert.equal(await runRouteTest(["--dst", "1.2.3.4:1", "--dscp", "99"], m.deps), 2);
  assert.match(m.err.text, /--dscp: 99: expected an integer in 0\.\.63/);
  const d = io();
  assert.equal(await runRouteTest([], d.deps), 2);
  assert.match(d.err.text, /--dst IP:PORT is required/);
});

Deno.test("runRouteTest(--config) runs offline through the injected tester", async () => {
  const seen: string[] = [];
  const offline = (configPath: string): Promise<RouteTester> => {
    seen.push(configPath);
    return Promise.resolve({ test: fakeRouteTest });
  };
  const t = io("", { offline });
  assert.equal(
    await runRouteTest(["--config", "r.json", "--dst", "9.9.9.9:53", "--json"], t.deps),
    0,
  );
  assert.deepEqual(seen, ["/work/dir/r.json"]);
  assert.deepEqual(JSON.parse(t.out.text), {
    outbound: "block",
    rule: 1,
    rule_text: '{"port":[53],"outbound":"block"}',
    final: false,
  });
  const bad = io("", { offline: () => Promise.reject(new Error("route.final: unknown outbound")) });
  assert.equal(await runRouteTest(["-c", "/x.json", "--dst", "1.1.1.1:1"], bad.deps), 1);
  assert.match(bad.err.text, /cannot load \/x\.json: route\.final: unknown outbound/);
});

const BATCH_INPUT = [
  '{"dst":"1.1.1.1:443","domain":"www.netflix.com"}',
  '{"dst":"8.8.8.8:53","network":"udp"}',
  "{not json",
  '{"dst":"1.2.3.4"}',
  "",
  "x".repeat(70 * 1024),
  '{"dst":"10.9.9.9:80","src":"192.168.1.2:5555","mark":3,"dscp":10,"inbound":"tproxy-in"}',
  '{"dst":"[2001:db8::1]:443"}',
].join("\n");

function checkBatchOutput(text: string): void {
  const rows = text.trimEnd().split("\n").map((l) => JSON.parse(l));
  assert.equal(rows.length, 7, text);
  assert.deepEqual(rows[0], {
    line: 1,
    outbound: "wg-us",
    rule: 0,
    final: false,
    rule_text: '{"domain_suffix":["netflix.com"],"outbound":"wg-us"}',
  });
  assert.equal(rows[1].outbound, "block");
  assert.equal(rows[1].rule, 1);
  assert.equal(rows[2].line, 3);
  assert.match(rows[2].error, /Cannot parse JSON/);
  assert.deepEqual(rows[3], { line: 4, error: 'dst: "1.2.3.4": expected IP:PORT' });
  assert.equal(rows[4].line, 6);
  assert.match(rows[4].error, /line exceeds 65536 bytes/);
  assert.equal(rows[5].line, 7);
  assert.equal(rows[5].outbound, "xray-jp");
  assert.deepEqual(rows[6], { line: 8, outbound: "direct", rule: null, final: true });
}

Deno.test("runRouteTest(--batch) against a router reports bad lines in place and goes on", async () => {
  await withRouter(async (path, calls) => {
    const t = io(BATCH_INPUT);
    assert.equal(await runRouteTest(["--batch", "--socket", path], t.deps), 1);
    checkBatchOutput(t.out.text);
    assert.equal(calls.routeTest.length, 4);
    assert.deepEqual(calls.routeTest[2], {
      dst: "10.9.9.9:80",
      src: "192.168.1.2:5555",
      mark: 3,
      dscp: 10,
      inbound: "tproxy-in",
    });
  });
});

Deno.test("runRouteTest(--batch --config) gives the same answers offline", async () => {
  const t = io(BATCH_INPUT, { offline: () => Promise.resolve({ test: fakeRouteTest }) });
  assert.equal(await runRouteTest(["--batch", "--config", "r.json"], t.deps), 1);
  checkBatchOutput(t.out.text);
});

Deno.test("runRouteTest(--batch) keeps input order over many flows and exits 0 when all are good", async () => {
  await withRouter(async (path) => {
    const input = Array.from(
      { length: 500 },
      (_, i) => JSON.stringify({ dst: `10.0.${i >> 8}.${i & 255}:${i % 3 === 0 ? 53 : 80}` }),
    ).join("\n") + "\n";
    const t = io(input);
    assert.equal(await runRouteTest(["--batch", "--socket", path], t.deps), 0);
    const rows = t.out.text.trimEnd().split("\n").map((l) => JSON.parse(l));
    assert.equal(rows.length, 500);
    rows.forEach((r, i) => {
      assert.equal(r.line, i + 1);
      assert.equal(r.outbound, i % 3 === 0 ? "block" : "xray-jp");
    });
  });
});

Deno.test("runRouteTest(--batch) refuses flow flags and --socket with --config", async () => {
  const t = io();
  assert.equal(await runRouteTest(["--batch", "--dst", "1.1.1.1:1"], t.deps), 2);
  assert.match(t.err.text, /drop --dst/);
  const u = io();
  assert.equal(await runRouteTest(["--batch", "--socket", "/s", "--config", "/c"], u.deps), 2);
});

Deno.test("formatUptime() shows the units needed", () => {
  assert.equal(formatUptime(5), "5s");
  assert.equal(formatUptime(3723), "1h 2m 3s");
  assert.equal(formatUptime(90061), "1d 1h 1m 1s");
});

Deno.test("runRouteTest(--batch) carries the DNS-answer name per line; a line can turn it off", async () => {
  await withRouter(async (path, calls) => {
    const t = io('{"dst":"10.53.53.1:443"}\n{"dst":"10.53.53.1:443","dns":false}\n');
    assert.equal(await runRouteTest(["--batch", "--socket", path], t.deps), 0);
    const rows = t.out.text.trimEnd().split("\n").map((l) => JSON.parse(l));
    assert.equal(rows[0].dns_name, "dns.netflix.com");
    assert.equal(rows[0].outbound, "wg-us");
    assert.equal(rows[1].dns_name, undefined);
    assert.equal(calls.routeTest[1]!.dns, false);
    const b = io("");
    assert.equal(await runRouteTest(["--batch", "--no-dns", "--socket", path], b.deps), 2);
    assert.match(b.err.text, /drop --no-dns/);
  });
});
