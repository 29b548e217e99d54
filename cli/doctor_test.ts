import assert from "node:assert/strict";
import {
  type DoctorCheck,
  type DoctorEnv,
  doctorExitCode,
  type DoctorOptions,
  formatDoctor,
  hasNetAdmin,
  runDoctor,
} from "./doctor.ts";
import type { CommandResult } from "./tproxy_rules.ts";

const OPTS: DoctorOptions = {
  mark: 1,
  table: 100,
  tableName: "vpn_router",
  family: "both",
  interfaces: ["eth1"],
};

/** `ip -j rule show` of a box after `router tproxy-rules --apply` (measured shape). */
const OUR_RULES = [
  { priority: 0, src: "all", table: "local" },
  {
    priority: 98,
    src: "all",
    fwmark: "0xff",
    fwmask: "0xff",
    iif: "lo",
    goto: 101,
    protocol: "250",
  },
  {
    priority: 99,
    src: "all",
    fwmark: "0x1",
    fwmask: "0x1",
    iif: "lo",
    table: "main",
    protocol: "250",
  },
  { priority: 100, src: "all", fwmark: "0x1", fwmask: "0x1", table: "100", protocol: "250" },
  { priority: 101, src: "all", nop: null, protocol: "250" },
  { priority: 32766, src: "all", table: "main" },
];

/** A healthy box; tests break one thing at a time. */
function healthy(): { files: Map<string, string>; cmds: Map<string, CommandResult> } {
  const ok = (stdout = ""): CommandResult => ({ code: 0, stdout, stderr: "" });
  const files = new Map<string, string>([
    ["/proc/self/status", "Name:\tx\nCapEff:\t000001ffffffffff\n"],
    ["/proc/sys/net/ipv4/ip_forward", "1\n"],
    ["/proc/sys/net/ipv6/conf/all/forwarding", "1\n"],
    ["/proc/sys/net/ipv4/tcp_fwmark_accept", "1\n"],
    ["/proc/sys/net/ipv4/conf/all/rp_filter", "0\n"],
    ["/proc/sys/net/ipv4/conf/default/rp_filter", "2\n"],
    ["/proc/sys/net/ipv4/conf/eth1/rp_filter", "0\n"],
    ["/proc/sys/net/ipv4/conf/all/route_localnet", "0\n"],
    ["/proc/sys/net/ipv4/ip_nonlocal_bind", "0\n"],
    ["/proc/sys/net/ipv6/ip_nonlocal_bind", "0\n"],
  ]);
  const rule = JSON.stringify(OUR_RULES);
  const route = JSON.stringify([{ type: "local", dst: "default", dev: "lo", protocol: "250" }]);
  const cmds = new Map<string, CommandResult>([
    ["nft --version", ok("nftables v1.0.6")],
    ["nft -c -f -", ok()],
    ["nft list table inet vpn_router", ok("table inet vpn_router {}")],
    ["ip -j -4 rule show", ok(rule)],
    ["ip -j -6 rule show", ok(rule)],
    ["ip -j -4 route show table 100", ok(route)],
    ["ip -j -6 route show table 100", ok(route)],
  ]);
  return { files, cmds };
}

function env(h: ReturnType<typeof healthy>): DoctorEnv {
  return {
    readFile: (p) => Promise.resolve(h.files.get(p) ?? null),
    run: (argv) =>
      Promise.resolve(
        h.cmds.get(argv.join(" ")) ?? { code: 1, stdout: "", stderr: `fake: ${argv.join(" ")}` },
      ),
  };
}

function byId(checks: DoctorCheck[], id: string): DoctorCheck {
  const c = checks.find((x) => x.id === id);
  assert.ok(c, `check ${id} present`);
  return c;
}

Deno.test("runDoctor() passes every required check on a ready box", async () => {
  const checks = await runDoctor(OPTS, env(healthy()));
  assert.equal(doctorExitCode(checks), 0);
  assert.ok(checks.every((c) => c.status === "OK"), formatDoctor(checks));
  assert.match(formatDoctor(checks), /all required checks passed$/);
});

Deno.test("runDoctor() reports a missing policy rule and route with the command that fixes them", async () => {
  const h = healthy();
  h.cmds.set("ip -j -6 rule show", { code: 0, stdout: "[]", stderr: "" });
  h.cmds.set("ip -j -4 rule show", {
    code: 0,
    stdout: JSON.stringify(OUR_RULES.filter((r) => r.priority !== 99)),
    stderr: "",
  });
  h.cmds.set("ip -j -4 route show table 100", {
    code: 2,
    stdout: "",
    stderr: "Error: ipv4: FIB table does not exist.",
  });
  const checks = await runDoctor(OPTS, env(h));
  assert.equal(doctorExitCode(checks), 1);
  const rule6 = byId(checks, "ip_rule_ipv6");
  assert.equal(rule6.status, "MISSING");
  assert.equal(
    rule6.fix,
    [
      "ip -6 rule add pref 101 nop protocol 250",
      "ip -6 rule add pref 98 iif lo fwmark 0x000000ff/0x000000ff goto 101 protocol 250",
      "ip -6 rule add pref 99 iif lo fwmark 0x00000001/0x00000001 lookup main protocol 250",
      "ip -6 rule add pref 100 fwmark 0x00000001/0x00000001 lookup 100 protocol 250",
    ].join(" && "),
  );
  const rule4 = byId(checks, "ip_rule_ipv4");
  assert.equal(rule4.status, "MISSING", "the guard alone is missing");
  assert.match(rule4.detail, /missing: guard$/);
  assert.equal(
    rule4.fix,
    "ip -4 rule add pref 99 iif lo fwmark 0x00000001/0x00000001 lookup main protocol 250",
  );
  const route = byId(checks, "route_ipv4");
  assert.equal(route.status, "MISSING");
  assert.equal(route.fix, "ip -4 route add local 0.0.0.0/0 dev lo table 100 proto 250");
});

Deno.test("runDoctor() fails on a rule that sends marked packets to our table before the guards", async () => {
  const h = healthy();
  const early = { priority: 50, src: "all", fwmark: "0x1", table: "100" };
  h.cmds.set("ip -j -4 rule show", {
    code: 0,
    stdout: JSON.stringify([early, ...OUR_RULES]),
    stderr: "",
  });
  const checks = await runDoctor(OPTS, env(h));
  const c = byId(checks, "ip_rule_order_ipv4");
  assert.deepEqual([c.status, c.required, c.fix], ["WARN", true, "ip -4 rule del pref 50"]);
  assert.equal(doctorExitCode(checks), 1);
  assert.ok(!checks.some((x) => x.id === "ip_rule_order_ipv6"));
  // Harmless while accepted sockets do not inherit the mark: advice only.
  h.files.set("/proc/sys/net/ipv4/tcp_fwmark_accept", "0\n");
  const again = await runDoctor(OPTS, env(h));
  assert.equal(byId(again, "ip_rule_order_ipv4").required, false);
});

Deno.test("runDoctor() flags ip_forward=0 as required, tcp_fwmark_accept=0 and strict rp_filter as warnings", async () => {
  const h = healthy();
  h.files.set("/proc/sys/net/ipv4/tcp_fwmark_accept", "0\n");
  h.files.set("/proc/sys/net/ipv4/ip_forward", "0\n");
  h.files.set("/proc/sys/net/ipv4/conf/eth1/rp_filter", "1\n");
  const checks = await runDoctor(OPTS, env(h));
  const fw = byId(checks, "net.ipv4.tcp_fwmark_accept");
  assert.deepEqual([fw.status, fw.required, fw.fix], [
    "WARN",
    false,
    "sysctl -w net.ipv4.tcp_fwmark_accept=1",
  ]);
  assert.equal(byId(checks, "net.ipv4.ip_forward").fix, "sysctl -w net.ipv4.ip_forward=1");
  const rp = byId(checks, "net.ipv4.conf.eth1.rp_filter");
  assert.deepEqual([rp.status, rp.required], ["WARN", false]);
  assert.equal(rp.fix, "sysctl -w net.ipv4.conf.eth1.rp_filter=2");
  assert.equal(doctorExitCode(checks), 1);
});

Deno.test("runDoctor() only warns on optional problems (exit stays 0)", async () => {
  const h = healthy();
  h.files.set("/proc/sys/net/ipv4/conf/all/rp_filter", "1\n");
  h.files.set("/proc/sys/net/ipv4/conf/all/route_localnet", "1\n");
  const checks = await runDoctor(OPTS, env(h));
  assert.equal(byId(checks, "net.ipv4.conf.all.rp_filter").status, "WARN");
  const eth1 = byId(checks, "net.ipv4.conf.eth1.rp_filter");
  assert.equal(eth1.status, "WARN", "eth1=0 with all=1 is effectively strict");
  assert.equal(eth1.fix, "sysctl -w net.ipv4.conf.all.rp_filter=2");
  assert.equal(byId(checks, "net.ipv4.conf.default.rp_filter").status, "OK", "max(1, 2) is loose");
  assert.equal(byId(checks, "net.ipv4.conf.all.route_localnet").status, "WARN");
  assert.equal(doctorExitCode(checks), 0);
});

Deno.test("runDoctor() without nft or privileges fails and skips the nft probes", async () => {
  const h = healthy();
  h.cmds.delete("nft --version");
  h.files.set("/proc/self/status", "CapEff:\t0000000000000000\n");
  const checks = await runDoctor({ ...OPTS, family: "ipv4" }, env(h));
  assert.equal(byId(checks, "nft").status, "MISSING");
  assert.equal(byId(checks, "privileges").status, "MISSING");
  assert.ok(!checks.some((c) => c.id === "nft_tproxy"));
  assert.ok(!checks.some((c) => c.id.endsWith("ipv6")), "ipv6 checks skipped for family ipv4");
  assert.equal(doctorExitCode(checks), 1);
});

Deno.test("runDoctor() reports a kernel that rejects the tproxy probe", async () => {
  const h = healthy();
  h.cmds.set("nft -c -f -", {
    code: 1,
    stdout: "",
    stderr: "Error: Could not process rule: No such file or directory\n",
  });
  const c = byId(await runDoctor(OPTS, env(h)), "nft_tproxy");
  assert.equal(c.status, "MISSING");
  assert.match(c.detail, /No such file/);
  assert.match(c.fix ?? "", /modprobe nft_tproxy nft_socket/);
});

Deno.test("hasNetAdmin() reads bit 12 of CapEff", () => {
  assert.equal(hasNetAdmin("CapEff:\t0000000000001000\n"), true);
  assert.equal(hasNetAdmin("CapEff:\t0000000000000fff\n"), false);
  assert.equal(hasNetAdmin("no caps here"), false);
});
