import assert from "node:assert/strict";
import { findSubject, type Subject, v2rayTproxyConfig } from "./subjects.ts";

Deno.test("v2rayTproxyConfig() builds a dokodemo-door TPROXY inbound and marks the given outbound", () => {
  const c = v2rayTproxyConfig(7893, 255, "tcp", { tag: "out", protocol: "freedom" }) as {
    inbounds: { port: number; settings: unknown; streamSettings: unknown }[];
    outbounds: unknown[];
  };
  assert.equal(c.inbounds[0]!.port, 7893);
  assert.deepEqual(c.inbounds[0]!.settings, { network: "tcp", followRedirect: true });
  assert.deepEqual(c.inbounds[0]!.streamSettings, { sockopt: { tproxy: "tproxy" } });
  assert.deepEqual(c.outbounds, [{
    tag: "out",
    protocol: "freedom",
    streamSettings: { sockopt: { mark: 255 } },
  }]);
});

Deno.test("findSubject() returns the named subject and rejects an unknown name naming --subjects", () => {
  const mk = (name: string): Subject => ({ name, setup: () => Promise.resolve("unused") });
  const subjects = [mk("kernel"), mk("router")];
  assert.equal(findSubject(subjects, "router"), subjects[1]);
  assert.throws(
    () => findSubject(subjects, "nope"),
    /--subjects: "nope": unknown \(kernel,router\)/,
  );
});
