// Privileged: runs `router doctor` and `router tproxy-rules` for real inside a lab's router namespace.
import assert from "node:assert/strict";
import { Lab } from "./harness.ts";

const DOCTOR = new URL("../../cli/doctor.ts", import.meta.url).pathname;
const TPROXY = new URL("../../cli/tproxy_rules.ts", import.meta.url).pathname;

interface DoctorJson {
  ok: boolean;
  checks: { id: string; status: string; required: boolean; fix?: string }[];
}

async function doctor(lab: Lab): Promise<{ code: number; doc: DoctorJson }> {
  const r = await lab.run("router", [
    Deno.execPath(),
    "run",
    "-A",
    DOCTOR,
    "--json",
    "--interfaces",
    lab.ifaces.routerLan,
  ]);
  return { code: r.code, doc: JSON.parse(r.stdout) as DoctorJson };
}

Deno.test("doctor fails before and passes after `tproxy-rules --apply`, and again fails after --remove", async () => {
  const lab = await Lab.create();
  try {
    const before = await doctor(lab);
    assert.equal(before.code, 1);
    assert.equal(before.doc.ok, false);
    const missing = before.doc.checks.filter((c) => c.status === "MISSING").map((c) => c.id);
    assert.deepEqual(missing.sort(), [
      "ip_rule_ipv4",
      "ip_rule_ipv6",
      "nft_table",
      "route_ipv4",
      "route_ipv6",
    ]);
    assert.equal(before.doc.checks.find((c) => c.id === "nft_tproxy")?.status, "OK");

    const apply = [
      Deno.execPath(),
      "run",
      "-A",
      TPROXY,
      "--apply",
      "--sysctl",
      "--interfaces",
      "eth1",
    ];
    for (let i = 0; i < 2; i++) {
      const r = await lab.run("router", apply);
      assert.equal(r.code, 0, r.stderr);
    }
    const after = await doctor(lab);
    assert.equal(after.code, 0, JSON.stringify(after.doc.checks.filter((c) => c.status !== "OK")));
    assert.equal(after.doc.ok, true);

    const remove = [Deno.execPath(), "run", "-A", TPROXY, "--remove"];
    for (let i = 0; i < 2; i++) {
      const r = await lab.run("router", remove);
      assert.equal(r.code, 0, r.stderr);
    }
    assert.equal((await doctor(lab)).code, 1);
  } finally {
    await lab.destroy();
  }
});

Deno.test("tproxy-rules --apply leaves other nft tables and ip rules of the box untouched", async () => {
  const lab = await Lab.create();
  try {
    const box =
      "table inet box_divert {\n  chain pre {\n    type filter hook prerouting priority -160; policy accept;\n" +
      "    ip dscp ef meta mark set 0x40\n  }\n}\n";
    await lab.runOk("router", ["nft", "-f", "-"], { stdin: box });
    await lab.runOk("router", [
      "ip",
      "rule",
      "add",
      "pref",
      "90",
      "fwmark",
      "0x40",
      "lookup",
      "140",
    ]);
    const o = await lab.applyTproxy();
    await lab.applyTproxy();
    await lab.removeTproxy(o);
    const tables = await lab.runOk("router", ["nft", "list", "tables"]);
    assert.match(tables, /table inet box_divert/);
    assert.doesNotMatch(tables, /vpn_router/);
    assert.match(await lab.runOk("router", ["ip", "rule", "show"]), /fwmark 0x40 lookup 140/);
  } finally {
    await lab.destroy();
  }
});
