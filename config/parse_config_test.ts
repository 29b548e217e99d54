import assert from "node:assert/strict";
import { ConfigError } from "./config_error.ts";
import { parseConfig } from "./parse_config.ts";
import { MAX_LOGICAL_DEPTH } from "./rule_parser.ts";
import type { RouterConfig } from "./schema.ts";

const base = () => ({
  inbounds: [{ type: "tproxy", tag: "tproxy-in", listen_port: 7893 }],
  outbounds: [{ type: "direct", tag: "direct" }, { type: "block", tag: "block" }],
  route: { rules: [] as unknown[], final: "direct" },
});

function parse(raw: unknown): RouterConfig {
  return parseConfig(raw, { baseDir: "/etc/vpn-router" });
}

/** The issues of a config that must fail, as "path: message" lines. */
function issues(raw: unknown): string[] {
  try {
    parse(raw);
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${e}`);
    assert.equal(e.message, e.issues.map((i) => `${i.path}: ${i.message}`).join("\n"));
    return e.issues.map((i) => `${i.path}: ${i.message}`);
  }
  assert.fail("config was accepted");
}

function withRules(...rules: unknown[]) {
  const c = base();
  c.route.rules = rules;
  return c;
}

Deno.test("parseConfig() fills defaults and converts durations to ms", () => {
  const c = parse(base());
  assert.equal(c.log.level, "info");
  assert.deepEqual(c.inbounds[0], {
    type: "tproxy",
    tag: "tproxy-in",
    listen: "::",
    listen_port: 7893,
    network: ["tcp", "udp"],
    mode: "tproxy",
    sniff: true,
    sniff_timeout_ms: 300,
    udp_timeout_ms: 300_000,
    udp_timeout_dns_ms: 10_000,
    udp_timeout_quic_ms: 30_000,
    udp_max_sessions: 65536,
    udp_mapping: "endpoint_independent",
    udp_filtering: "address_port_dependent",
    tcp_idle_timeout_ms: 600_000,
  });
  assert.equal(c.route.default_mark, 255);
  assert.equal(c.route.dns_reverse_mapping, false);
  assert.equal(c.route.geoip, null);
  assert.deepEqual(c.ipc, { path: "/run/vpn-router/router.sock", mode: 0o600, group: null });
});

Deno.test("parseConfig() normalises outbounds", () => {
  const c = parse({
    outbounds: [
      {
        type: "socks",
        tag: "xray-jp",
        kind: "xray",
        server: "127.0.0.1",
        server_port: 37101,
        pool: { size: 16, max_idle: "20s" },
        connect_timeout: "2s",
        routing_mark: "0xc8",
      },
      { type: "direct", tag: "ovpn", kind: "openvpn", bind_interface: "tun10", dscp: 46 },
    ],
  });
  assert.deepEqual(c.outbounds[0], {
    type: "socks",
    tag: "xray-jp",
    kind: "xray",
    server: "127.0.0.1",
    server_port: 37101,
    version: "5",
    username: null,
    password: null,
    pool: { size: 16, max_idle_ms: 20_000 },
    domain_strategy: "ip",
    routing_mark: 200,
    dscp: null,
    connect_timeout_ms: 2000,
  });
  assert.equal(c.outbounds[1]!.type === "direct" && c.outbounds[1]!.bind_interface, "tun10");
  assert.equal(c.route.final, "xray-jp", "final defaults to the first outbound");
});

Deno.test("parseConfig() takes per-protocol UDP timeouts", () => {
  const c = parse({
    inbounds: [{
      type: "tproxy",
      tag: "tp",
      listen_port: 7893,
      udp_timeout_dns: "3s",
      udp_timeout_quic: "1m",
    }],
    outbounds: [{ type: "direct", tag: "direct" }],
  });
  assert.equal(c.inbounds[0]!.udp_timeout_dns_ms, 3000);
  assert.equal(c.inbounds[0]!.udp_timeout_quic_ms, 60_000);
  assert.throws(
    () =>
      parse({
        inbounds: [{ type: "tproxy", tag: "tp", listen_port: 7893, udp_timeout_dns: "x" }],
        outbounds: [{ type: "direct", tag: "direct" }],
      }),
    /inbounds\[0\]\.udp_timeout_dns: /,
  );
});

Deno.test("parseConfig() names a bad pool.max_idle by its path", () => {
  assert.throws(
    () =>
      parse({
        outbounds: [{
          type: "socks",
          tag: "s",
          server: "127.0.0.1",
          server_port: 1080,
          pool: { size: 4, max_idle: "soon" },
        }],
      }),
    /outbounds\[0\]\.pool\.max_idle: /,
  );
});

Deno.test("parseConfig() reports a CIDR prefix out of range with its exact path", () => {
  const rules = Array.from({ length: 12 }, () => ({ domain: "x.com", outbound: "direct" }));
  const c = withRules(...rules, {
    ip_cidr: ["1.0.0.0/8", "2.0.0.0/8", "::/0", "10.0.0.0/33"],
    outbound: "direct",
  });
  assert.deepEqual(issues(c), ['route.rules[12].ip_cidr[3]: "10.0.0.0/33": prefix out of range']);
});

Deno.test("parseConfig() reports each kind of rule error at its path", () => {
  const got = issues(withRules(
    { ip_cidr: "10.0.0.300/8", outbound: "direct" },
    { ip_cidr: ["2001:db8::/129"], outbound: "direct" },
    { domain_regex: ["(unclosed"], outbound: "direct" },
    { port: [80, 70000], outbound: "direct" },
    { port_range: ["2000:1000", "x"], outbound: "direct" },
    { domain: "x.com", outbound: "nowhere" },
    { domain: "x.com" },
    { domain: "x.com", colour: "red", outbound: "direct" },
    { process_name: ["curl"], outbound: "direct" },
    { network: "sctp", protocol: "bittorrent", outbound: "direct" },
    { inbound: "nope-in", rule_set: "nope-set", outbound: "direct" },
    { fwmark: ["0x100/0xff00", "0x1/0x2", "z"], dscp: 64, outbound: "direct" },
    { domain: 5, invert: "yes", outbound: "direct" },
    { geoip: "cn", outbound: "direct" },
    { domain: "x.com", action: "sniff" },
    {
      type: "logical",
      mode: "xor",
      rules: [{ domain: "a", outbound: "direct" }],
      outbound: "direct",
    },
  ));
  assert.deepEqual(got, [
    'route.rules[0].ip_cidr: "10.0.0.300/8": invalid IP address',
    'route.rules[1].ip_cidr[0]: "2001:db8::/129": prefix out of range',
    'route.rules[2].domain_regex[0]: "(unclosed": invalid regular expression: ' +
    `Invalid regular expression: /(unclosed/: Unterminated group`,
    "route.rules[3].port[1]: 70000: out of range (0..65535)",
    'route.rules[4].port_range[0]: "2000:1000": start is greater than end',
    'route.rules[4].port_range[1]: "x": expected "from:to", ":to" or "from:"',
    'route.rules[5].outbound: "nowhere": no outbound with this tag',
    'route.rules[6].outbound: missing: a rule needs an outbound (or action "reject")',
    "route.rules[7].colour: unknown field",
    "route.rules[8].process_name: field is not supported by vpn-router",
    'route.rules[9].network: "sctp": expected one of tcp, udp',
    'route.rules[9].protocol: "bittorrent": expected one of tls, http, quic',
    'route.rules[10].inbound: "nope-in": no inbound with this tag',
    'route.rules[10].rule_set: "nope-set": no rule set with this tag (declare it in route.rule_set)',
    'route.rules[11].fwmark[1]: "0x1/0x2": value has bits outside the mask',
    'route.rules[11].fwmark[2]: "z": expected a mark such as 256, "0x100" or "0x100/0xff00"',
    "route.rules[11].dscp: 64: out of range (0..63)",
    "route.rules[12].domain: expected a string, got number",
    "route.rules[12].invert: expected a boolean, got string",
    'route.rules[13].geoip: "cn": needs a GeoIP database (route.geoip.path)',
    'route.rules[14].action: "sniff": not supported (supported: "route", "reject"; sniffing is set per inbound)',
    'route.rules[15].mode: "xor": expected one of and, or',
    "route.rules[15].rules[0].outbound: only a top-level rule takes an outbound or action",
  ]);
});

Deno.test("parseConfig() reports errors outside the rules, all at once", () => {
  const got = issues({
    inbounds: [
      { type: "tproxy", tag: "in", listen_port: 0, sniff_timeout: "soon" },
      { type: "tproxy", tag: "in", listen: "localhost", listen_port: 1, udp_mapping: "cone" },
      {
        type: "tproxy",
        tag: "in3",
        listen_port: 2,
        udp_mapping: "per_destination",
        udp_filtering: "endpoint_independent",
      },
      { type: "tproxy", tag: "in4", listen_port: 3, udp_filtering: "full" },
    ],
    outbounds: [
      { type: "direct", tag: "d", bind_interface: "a/b", inet4_bind_address: "::1" },
      { type: "socks", tag: "d", server: "127.0.0.1", server_port: 1080, username: "u" },
      { type: "vless", tag: "v" },
      { type: "block", tag: "@reject" },
    ],
    route: {
      final: "nope",
      default_mark: -1,
      auto_detect_interface: true,
      dns_reverse_mapping: "yes",
    },
    ipc: { path: "relative.sock", mode: "rw" },
    dns: {},
  });
  assert.deepEqual(got, [
    "dns: field is not supported by vpn-router",
    "inbounds[0].listen_port: 0: out of range (1..65535)",
    'inbounds[0].sniff_timeout: "soon": Cannot parse duration "soon": expected e.g. "300ms", "5m"',
    'inbounds[1].listen: "localhost": not an IPv4 or IPv6 address',
    'inbounds[1].udp_mapping: "cone": expected one of endpoint_independent, per_destination',
    'inbounds[2].udp_filtering: "endpoint_independent" needs udp_mapping "endpoint_independent" (a per-destination socket only hears its destination)',
    'inbounds[3].udp_filtering: "full": expected one of address_port_dependent, endpoint_independent',
    'outbounds[0].bind_interface: "a/b": not a valid interface name (1..15 characters, no "/", ":" or spaces)',
    'outbounds[0].inet4_bind_address: "::1": not an IPv4 address',
    "outbounds[1].password: username and password go together",
    'outbounds[2].type: "vless": expected one of direct, socks, block',
    'outbounds[3].tag: "@reject": tags starting with "@" are reserved',
    "route.auto_detect_interface: field is not supported by vpn-router",
    'route.final: "nope": no outbound with this tag',
    "route.default_mark: -1: out of range (0..4294967295)",
    "route.dns_reverse_mapping: expected a boolean, got string",
    'ipc.path: "relative.sock": must be an absolute path',
    'ipc.mode: "rw": expected an octal mode string such as "0600" or "0660"',
  ]);
});

Deno.test("parseConfig() reports duplicate tags", () => {
  const c = base();
  c.outbounds.push({ type: "direct", tag: "direct" });
  assert.deepEqual(issues(c), ['outbounds[2].tag: "direct": duplicate tag']);
});

Deno.test("parseConfig() maps action reject to implicit block outbounds", () => {
  const c = parse(withRules(
    { domain: "a.com", action: "reject" },
    { domain: "b.com", action: "reject", method: "drop" },
    { domain: "c.com", action: "route", outbound: "block" },
  ));
  assert.deepEqual(c.route.rules.map((r) => r.outbound), ["@reject", "@reject-drop", "block"]);
  assert.deepEqual(c.outbounds.slice(2), [
    { type: "block", tag: "@reject", mode: "reset", implicit: true },
    { type: "block", tag: "@reject-drop", mode: "drop", implicit: true },
  ]);
});

Deno.test("parseConfig() normalises rule values", () => {
  const c = parse(withRules({
    domain: "Example.COM",
    ip_cidr: ["10.1.2.3/8", "::ffff:192.168.0.0/112"],
    port: 443,
    port_range: [":100", "8000:"],
    fwmark: [256],
    outbound: "direct",
  }));
  const m = c.route.rules[0]!.match;
  assert.equal(m.type, "default");
  if (m.type !== "default") return;
  assert.deepEqual(m.domain, ["example.com"]);
  assert.deepEqual(m.ip_cidr.map((x) => [[...x.addr], x.prefix]), [
    [[10, 0, 0, 0], 8],
    [[192, 168, 0, 0], 16],
  ]);
  assert.deepEqual(m.port, [{ from: 443, to: 443 }, { from: 0, to: 100 }, {
    from: 8000,
    to: 65535,
  }]);
  assert.deepEqual(m.fwmark, [{ value: 256, mask: 0xffffffff }]);
});

Deno.test("parseConfig() resolves geoip and rule-set paths against baseDir", () => {
  const c = base() as Record<string, unknown> & ReturnType<typeof base>;
  Object.assign(c.route, {
    geoip: { path: "country.mmdb" },
    rule_set: [
      { type: "local", tag: "a", format: "source", path: "sets/a.json" },
      { type: "local", tag: "b", path: "/abs/b.json" },
    ],
  });
  const parsed = parse(c);
  assert.deepEqual(parsed.route.geoip, { path: "/etc/vpn-router/country.mmdb" });
  assert.deepEqual(parsed.route.rule_set.map((s) => s.type === "local" && s.path), [
    "/etc/vpn-router/sets/a.json",
    "/abs/b.json",
  ]);
});

Deno.test("parseConfig() rejects unsupported rule-set kinds", () => {
  const c = base();
  Object.assign(c.route, {
    rule_set: [
      { type: "remote", tag: "r", url: "https://x" },
      { type: "local", tag: "b", format: "binary", path: "b.srs" },
    ],
  });
  assert.deepEqual(issues(c), [
    "route.rule_set[0].url: field is not supported by vpn-router",
    'route.rule_set[0].type: "remote": expected one of local, inline',
    'route.rule_set[1].format: "binary": expected one of source',
  ]);
});

Deno.test("parseConfig() refuses domain_regex backreferences and lookaround (RE2 syntax, as sing-box)", () => {
  const refused = [
    ["(a)\\1", "backreferences"],
    ["(?<n>a)\\k<n>", "backreferences"],
    ["^a(?=b)", "lookaheads"],
    ["^a(?!b)", "lookaheads"],
    ["(?<=a)b$", "lookbehinds"],
    ["(?<!a)b$", "lookbehinds"],
  ];
  const got = issues(withRules(
    ...refused.map(([re]) => ({ domain_regex: re, outbound: "direct" })),
  ));
  assert.deepEqual(
    got,
    refused.map(([re, what], i) =>
      `route.rules[${i}].domain_regex: ${
        JSON.stringify(re)
      }: ${what} are not supported (RE2 syntax, as sing-box)`
    ),
  );
  // Look-alikes that are not: escaped, inside a class, named groups.
  const accepted = ["\\\\1", "[\\1]", "^(?<name>[a-z]+)\\.com$", "\\(?=x", "[(?=]", "^(?:a|b)+$"];
  // parse() throws on any issue.
  const c = parse(withRules(...accepted.map((re) => ({ domain_regex: re, outbound: "direct" }))));
  assert.equal(c.route.rules.length, accepted.length);
});

Deno.test("parseConfig() refuses logical rules nested more than MAX_LOGICAL_DEPTH deep, at their path", () => {
  const nest = (levels: number) => {
    let r: Record<string, unknown> = { domain: ["x.com"] };
    for (let i = 0; i < levels; i++) r = { type: "logical", mode: "and", rules: [r] };
    return { ...r, outbound: "direct" };
  };
  assert.equal(parse(withRules(nest(MAX_LOGICAL_DEPTH))).route.rules.length, 1);
  // Thousands deep ran out of stack ("Maximum call stack size exceeded", no path).
  for (const levels of [MAX_LOGICAL_DEPTH + 1, 20_000]) {
    assert.deepEqual(issues(withRules(nest(levels))), [
      `route${
        ".rules[0]".repeat(MAX_LOGICAL_DEPTH + 1)
      }: logical rules nested more than ${MAX_LOGICAL_DEPTH} deep`,
    ]);
  }
});
