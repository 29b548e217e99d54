import assert from "node:assert/strict";
import { ConfigError } from "./config_error.ts";
import { parseConfig } from "./parse_config.ts";
import type { RouterConfig } from "./schema.ts";

function withOutbounds(...outbounds: unknown[]): unknown {
  return {
    inbounds: [{ type: "tproxy", tag: "tproxy-in", listen_port: 7893 }],
    outbounds,
    route: { rules: [] },
  };
}

function parse(raw: unknown): RouterConfig {
  return parseConfig(raw, { baseDir: "/etc/vpn-router" });
}

function issues(raw: unknown): string[] {
  try {
    parse(raw);
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${e}`);
    return e.issues.map((i) => `${i.path}: ${i.message}`);
  }
  assert.fail("config was accepted");
}

const socks = { type: "socks", tag: "s", server: "127.0.0.1", server_port: 1080 };

Deno.test("parseConfig() reads health_check of direct and socks outbounds with defaults", () => {
  const c = parse(withOutbounds(
    { type: "direct", tag: "wg", health_check: { target: "10.0.0.1:53", interval: "10s" } },
    { ...socks, health_check: { timeout: "500ms" } },
    { type: "direct", tag: "plain" },
  ));
  const [wg, s, plain] = c.outbounds;
  assert.deepEqual(wg?.type === "direct" && wg.health_check, {
    target: "10.0.0.1:53",
    interval_ms: 10_000,
    timeout_ms: 3000,
  });
  assert.deepEqual(s?.type === "socks" && s.health_check, {
    target: null,
    interval_ms: 30_000,
    timeout_ms: 500,
  });
  assert.ok(plain?.type === "direct" && !("health_check" in plain), "absent when not configured");
});

Deno.test("parseConfig() accepts an IPv6 health_check target", () => {
  const c = parse(withOutbounds({
    type: "direct",
    tag: "d",
    health_check: { target: "[2001:db8::1]:443" },
  }));
  const d = c.outbounds[0];
  assert.equal(d?.type === "direct" && d.health_check?.target, "[2001:db8::1]:443");
});

Deno.test("parseConfig() names the path of each bad health_check field", () => {
  assert.deepEqual(
    issues(withOutbounds(
      { type: "direct", tag: "a", health_check: { target: "10.0.0.1" } },
      { type: "direct", tag: "b", health_check: { target: "10.0.0.1:0", interval: "0s" } },
      { type: "direct", tag: "c", health_check: { timeout: "soon", every: "1s" } },
      { ...socks, health_check: { target: "1.1.1.1:80" } },
      { type: "direct", tag: "e", health_check: "30s" },
      { type: "direct", tag: "f", health_check: { interval: "48h" } },
    )),
    [
      'outbounds[0].health_check.target: "10.0.0.1": expected IP:PORT or [IPv6]:PORT',
      'outbounds[1].health_check.target: "10.0.0.1:0": expected IP:PORT or [IPv6]:PORT',
      'outbounds[1].health_check.interval: "0s": must be greater than zero',
      "outbounds[2].health_check.every: unknown field",
      'outbounds[2].health_check.timeout: "soon": Cannot parse duration "soon": expected e.g. "300ms", "5m"',
      "outbounds[3].health_check.target: not supported on socks outbounds: the check is a SOCKS5 greeting to the server",
      "outbounds[4].health_check: expected an object, got string",
      'outbounds[5].health_check.interval: "48h": at most 24h',
    ],
  );
});
