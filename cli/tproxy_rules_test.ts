import assert from "node:assert/strict";
import {
  applyTproxyRules,
  type CommandResult,
  counterNames,
  defaultTproxyOptions,
  parseCidr,
  parseTproxyArgs,
  removeTproxyRules,
  renderTproxyRules,
  type RunCommand,
  type TproxyRulesOptions,
} from "./tproxy_rules.ts";

function opts(p: Partial<TproxyRulesOptions> = {}): TproxyRulesOptions {
  return { ...defaultTproxyOptions(), ...p };
}

/** `ip rule add|del` selectors as `ip -j rule show` prints them (keys in one order). */
function ruleJson(args: string[]): Record<string, unknown> {
  const r: Record<string, unknown> = {};
  const at = (k: string) => args.indexOf(k);
  const arg = (k: string) => args[at(k) + 1]!;
  r.priority = Number(arg("pref"));
  if (at("fwmark") >= 0) {
    const [v, m] = arg("fwmark").split("/");
    r.fwmark = "0x" + Number(v).toString(16);
    if (m !== undefined && Number(m) !== 0xffffffff) r.fwmask = "0x" + Number(m).toString(16);
  }
  if (at("iif") >= 0) r.iif = arg("iif");
  if (at("lookup") >= 0) r.table = arg("lookup");
  if (at("goto") >= 0) r.goto = Number(arg("goto"));
  if (at("nop") >= 0) r.nop = null;
  r.protocol = arg("protocol");
  return r;
}

/** A fake kernel: nft tables by name, ip rules and table-100 routes per family. */
class FakeKernel {
  tables = new Set<string>();
  rules: Record<string, Record<string, unknown>[]> = { "-4": [], "-6": [] };
  routes: Record<string, Record<string, unknown>[]> = { "-4": [], "-6": [] };
  calls: { argv: string[]; netns?: string | undefined }[] = [];

  run: RunCommand = (argv, o = {}) => {
    this.calls.push({ argv: [...argv], netns: o.netns });
    return Promise.resolve(this.#exec([...argv], o.stdin ?? ""));
  };

  #exec(a: string[], stdin: string): CommandResult {
    const ok = (stdout = ""): CommandResult => ({ code: 0, stdout, stderr: "" });
    if (a[0] === "nft") {
      for (const line of stdin.split("\n")) {
        const del = /^delete table inet (\w+)$/.exec(line);
        const add = /^table inet (\w+) \{/.exec(line);
        if (del) {
          if (!this.tables.has(del[1]!)) return { code: 1, stdout: "", stderr: "No such file" };
          this.tables.delete(del[1]!);
        } else if (add) this.tables.add(add[1]!);
      }
      return ok();
    }
    if (a[0] === "ip" && a[1] === "-j") {
      const fam = a[2]!;
      if (a[3] === "rule") return ok(JSON.stringify(this.rules[fam]));
      if (this.routes[fam]!.length === 0) {
        return { code: 2, stdout: "", stderr: "Error: ipv4: FIB table does not exist." };
      }
      return ok(JSON.stringify(this.routes[fam]));
    }
    if (a[0] === "ip") {
      const fam = a[1]!, verb = a[3]!;
      const arg = (k: string) => a[a.indexOf(k) + 1]!;
      if (a[2] === "rule" && verb === "add") {
        this.rules[fam]!.push(ruleJson(a.slice(4)));
        return ok();
      }
      if (a[2] === "rule" && verb === "del") {
        const want = JSON.stringify(ruleJson(a.slice(4)));
        const i = this.rules[fam]!.findIndex((r) => JSON.stringify(r) === want);
        if (i < 0) return { code: 2, stdout: "", stderr: "RTNETLINK answers: No such file" };
        this.rules[fam]!.splice(i, 1);
        return ok();
      }
      if (a[2] === "route" && verb === "add") {
        this.routes[fam]!.push({
          type: "local",
          dst: "default",
          dev: "lo",
          protocol: arg("proto"),
        });
        return ok();
      }
      if (a[2] === "route" && verb === "del") {
        this.routes[fam] = [];
        return ok();
      }
    }
    if (a[0] === "sysctl") return ok();
    return { code: 127, stdout: "", stderr: `unexpected ${a.join(" ")}` };
  }

  snapshot(): string {
    return JSON.stringify([[...this.tables].sort(), this.rules, this.routes]);
  }
}

Deno.test("renderTproxyRules() replaces only its own table and steers tcp+udp v4+v6 to the port with the mark", () => {
  const r = renderTproxyRules(opts());
  const lines = r.nft.split("\n");
  assert.deepEqual(lines.slice(0, 3), [
    "table inet vpn_router {}",
    "delete table inet vpn_router",
    "table inet vpn_router {",
  ]);
  assert.ok(!r.nft.includes("flush"));
  assert.match(r.nft, /type filter hook prerouting priority mangle; policy accept;/);
  assert.match(r.nft, /iifname "lo" return/);
  assert.match(r.nft, /meta mark & 0x000000ff == 0x000000ff counter name "skipped" return/);
  assert.match(r.nft, /fib daddr type \{ local, broadcast, anycast, multicast \}/);
  // The TPROXY bit is ORed in: marks the box set earlier survive.
  assert.match(
    r.nft,
    /meta l4proto tcp socket transparent 1 meta mark set meta mark \| 0x00000001/,
  );
  assert.ok(!/meta mark set 0x/.test(r.nft), "never replaces the whole mark");
  for (const [f, to] of [["ipv4", "ip to 127.0.0.1:7893"], ["ipv6", "ip6 to \\[::1\\]:7893"]]) {
    for (const p of ["tcp", "udp"]) {
      assert.match(
        r.nft,
        new RegExp(
          `meta nfproto ${f} meta l4proto ${p} tproxy ${to} meta mark set meta mark \\| 0x00000001`,
        ),
      );
    }
  }
  // Skip, bypass and divert come before any tproxy rule.
  const first = lines.findIndex((l) => l.includes("tproxy "));
  for (const k of ["skipped", "@bypass4", "@bypass6", "socket transparent"]) {
    assert.ok(lines.findIndex((l) => l.includes(k)) < first, k);
  }
  const v4 = r.ipRules.filter((x) => x[1] === "-4").map((x) => x.slice(3).join(" "));
  assert.deepEqual(v4, [
    "add pref 101 nop protocol 250",
    "add pref 98 iif lo fwmark 0x000000ff/0x000000ff goto 101 protocol 250",
    "add pref 99 iif lo fwmark 0x00000001/0x00000001 lookup main protocol 250",
    "add pref 100 fwmark 0x00000001/0x00000001 lookup 100 protocol 250",
    "add local 0.0.0.0/0 dev lo table 100 proto 250",
  ]);
  const v6 = r.ipRules.filter((x) => x[1] === "-6").map((x) => x.slice(3).join(" "));
  assert.deepEqual(v6, v4.map((x) => x.replace("0.0.0.0/0", "::/0")));
  const fw = r.sysctls.find((s) => s.key === "net.ipv4.tcp_fwmark_accept");
  assert.deepEqual([fw?.value, fw?.required], ["1", false], "safe with the guards: advised");
});

Deno.test("renderTproxyRules() honours interfaces, family, network, table name and extra bypass", () => {
  const r = renderTproxyRules(opts({
    interfaces: ["eth1", "wg0"],
    family: "ipv4",
    network: "udp",
    tableName: "edge_tp",
    port: 12345,
    mark: 0x20,
    table: 200,
    skipMark: 0,
    bypass: ["10.1.2.3/8", "192.168.7.7"],
  }));
  assert.match(r.nft, /^table inet edge_tp \{\}\ndelete table inet edge_tp\n/);
  assert.match(r.nft, /iifname != \{ "eth1", "wg0" \} return/);
  assert.ok(!r.nft.includes("ip6"), "no IPv6 rules");
  assert.ok(!r.nft.includes("meta l4proto tcp"), "no TCP rules");
  assert.ok(!r.nft.includes("socket transparent"), "no DIVERT for UDP");
  assert.ok(!r.nft.includes('skipped" return'), "skip rule off");
  assert.match(r.nft, /10\.0\.0\.0\/8, 192\.168\.7\.7\/32/);
  assert.match(r.nft, /tproxy ip to 127\.0\.0\.1:12345 meta mark set meta mark \| 0x00000020/);
  // skip_mark 0: no skip goto and no nop target; guard + tproxy rule + route.
  assert.deepEqual(r.ipRules.map((x) => x.slice(4).join(" ")), [
    "pref 99 iif lo fwmark 0x00000020/0x00000020 lookup main protocol 250",
    "pref 100 fwmark 0x00000020/0x00000020 lookup 200 protocol 250",
    "local 0.0.0.0/0 dev lo table 200 proto 250",
  ]);
  assert.ok(!r.sysctls.some((s) => s.key === "net.ipv4.tcp_fwmark_accept"), "UDP only");
  assert.deepEqual(counterNames(opts({ family: "ipv4", network: "udp" })), [
    "skipped",
    "bypassed",
    "tproxy_udp4",
  ]);
});

Deno.test("renderTproxyRules() rejects bad options naming the field", () => {
  const bad: [Partial<TproxyRulesOptions>, RegExp][] = [
    [{ port: 0 }, /^RangeError: port: 0/],
    [{ mark: 0 }, /Error: mark: 0:/],
    [{ mark: 0x1ff }, /Error: mark: .*skip_mark/],
    [{ table: 254 }, /Error: table: 254: reserved/],
    [{ rulePriority: 2 }, /Error: rule_priority: 2: must be an integer in 3\.\.32764/],
    [{ tableName: "x y" }, /Error: table_name: "x y"/],
    [{ interfaces: ["eth0", "a-very-long-interface-name"] }, /Error: interfaces\[1\]/],
    [
      { bypass: ["10.0.0.0/8", "10.0.0.0/33"] },
      /Error: bypass\[1\]: "10\.0\.0\.0\/33": prefix out of range/,
    ],
    [{ bypass: ["nope"] }, /Error: bypass\[0\]: "nope": not an IP/],
    [{ listen6: "127.0.0.1" }, /Error: listen6/],
    [{ network: "sctp" as "tcp" }, /Error: network/],
  ];
  for (const [p, re] of bad) assert.throws(() => renderTproxyRules(opts(p)), re);
});

Deno.test("parseCidr() clears host bits and rejects out-of-range prefixes", () => {
  assert.deepEqual(parseCidr("2001:db8::1/32", "x"), ["ipv6", "2001:db8::/32"]);
  assert.deepEqual(parseCidr("10.9.8.7/20", "x"), ["ipv4", "10.9.0.0/20"]);
  assert.throws(
    () => parseCidr("::/129", "f[2]"),
    /^RangeError: f\[2\]: "::\/129": prefix out of range/,
  );
});

Deno.test("parseTproxyArgs() maps flags to options and modes", () => {
  const p = parseTproxyArgs([
    "--port",
    "9000",
    "--mark",
    "0x10",
    "--interfaces",
    "eth1, wg0",
    "--network",
    "tcp",
    "--apply",
    "--netns",
    "ns1",
  ]);
  assert.equal(p.mode, "apply");
  assert.equal(p.opts.port, 9000);
  assert.equal(p.opts.mark, 16);
  assert.deepEqual(p.opts.interfaces, ["eth1", "wg0"]);
  assert.equal(p.netns, "ns1");
  assert.equal(parseTproxyArgs([]).mode, "print");
  assert.throws(() => parseTproxyArgs(["--apply", "--remove"]), /exclude/);
  assert.throws(() => parseTproxyArgs(["--port", "80x"]), /--port: "80x"/);
  assert.throws(() => parseTproxyArgs(["--bogus"]));
});

Deno.test("applyTproxyRules() twice leaves the same state and adds the ip rules/route once", async () => {
  const k = new FakeKernel();
  const first = await applyTproxyRules(opts(), k.run, { netns: "nsX" });
  const s1 = k.snapshot();
  const second = await applyTproxyRules(opts(), k.run, { netns: "nsX" });
  assert.equal(k.snapshot(), s1);
  assert.equal(first.actions.length, 1 + 2 * (4 + 1));
  assert.deepEqual(second.actions, ["nft: replaced table inet vpn_router"]);
  assert.deepEqual(k.rules["-4"]!.map((r) => r.priority), [101, 98, 99, 100]);
  assert.equal(k.routes["-6"]!.length, 1);
  assert.ok(k.calls.every((c) => c.netns === "nsX"), "every command ran in the namespace");
  assert.ok(!k.calls.some((c) => c.argv[0] === "sysctl"), "sysctls only on request");
});

Deno.test("applyTproxyRules() adds the goto target and guards before the fwmark rule", async () => {
  const k = new FakeKernel();
  await applyTproxyRules(opts({ family: "ipv6" }), k.run);
  const adds = k.calls.filter((c) => c.argv[2] === "rule" && c.argv[3] === "add");
  assert.deepEqual(adds.map((c) => c.argv[5]), ["101", "98", "99", "100"]);
});

Deno.test("applyTproxyRules() reuses an equivalent rule of the box and removeTproxyRules() keeps it", async () => {
  const k = new FakeKernel();
  k.rules["-4"]!.push({
    priority: 100,
    fwmark: "0x1",
    fwmask: "0x1",
    table: "100",
    protocol: "boot",
  });
  k.routes["-4"]!.push({ type: "local", dst: "default", dev: "lo", protocol: "boot" });
  await applyTproxyRules(opts({ family: "ipv4" }), k.run);
  assert.equal(k.rules["-4"]!.length, 4, "guards and target added, fwmark rule not duplicated");
  assert.equal(k.routes["-4"]!.length, 1, "no duplicate route");
  await removeTproxyRules(opts({ family: "ipv4" }), k.run);
  assert.deepEqual(k.rules["-4"]!.map((r) => r.protocol), ["boot"], "box's rule untouched");
  assert.equal(k.routes["-4"]!.length, 1, "box's route untouched");
  assert.equal(k.tables.size, 0);
});

Deno.test("applyTproxyRules() replaces our full-mask rule of an earlier version, not the box's", async () => {
  const k = new FakeKernel();
  const legacy = { priority: 100, fwmark: "0x1", table: "100", protocol: "250" };
  const boxs = { priority: 60, fwmark: "0x1", table: "100", protocol: "boot" };
  k.rules["-4"]!.push(legacy, boxs);
  const rep = await applyTproxyRules(opts({ family: "ipv4" }), k.run);
  assert.ok(
    rep.actions.includes("ip -4 rule del pref 100 fwmark 0x00000001 lookup 100 protocol 250"),
  );
  assert.ok(!k.rules["-4"]!.includes(legacy));
  assert.ok(k.rules["-4"]!.includes(boxs));
  assert.equal(k.rules["-4"]!.length, 5);
});

Deno.test("removeTproxyRules() removes what apply added and succeeds when nothing is there", async () => {
  const k = new FakeKernel();
  k.tables.add("other_table");
  await applyTproxyRules(opts(), k.run, { setSysctls: true });
  assert.ok(k.calls.some((c) => c.argv.join(" ") === "sysctl -qw net.ipv4.ip_forward=1"));
  await removeTproxyRules(opts(), k.run);
  assert.deepEqual([...k.tables], ["other_table"]);
  assert.deepEqual(k.rules, { "-4": [], "-6": [] });
  assert.deepEqual(k.routes, { "-4": [], "-6": [] });
  const again = await removeTproxyRules(opts(), k.run);
  assert.deepEqual(again.actions, ["nft: deleted table inet vpn_router"]);
});

Deno.test("applyTproxyRules() surfaces a failing nft transaction with its stderr", async () => {
  const run: RunCommand = (argv) =>
    Promise.resolve(
      argv[0] === "nft"
        ? { code: 1, stdout: "", stderr: "Error: Could not process rule: No such file" }
        : { code: 0, stdout: "[]", stderr: "" },
    );
  await assert.rejects(
    applyTproxyRules(opts(), run),
    /nft -f -: exit 1: Error: Could not process rule/,
  );
});
