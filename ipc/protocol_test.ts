import assert from "node:assert/strict";
import {
  flowFromRouteTest,
  IpcError,
  parseRequest,
  parseResponse,
  validateParams,
  validateRouteTest,
} from "./protocol.ts";

function invalidParams(f: () => unknown, field: string): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof IpcError);
    assert.equal(e.code, "invalid_params");
    assert.ok(e.message.startsWith(field + ":"), `message "${e.message}" should name ${field}`);
    return true;
  });
}

Deno.test("parseRequest() accepts a request and drops null params", () => {
  assert.deepEqual(parseRequest('{"id":1,"method":"ping","params":null}'), {
    ok: true,
    request: { id: 1, method: "ping" },
  });
  assert.deepEqual(parseRequest('{"id":"a","method":"reload","params":{"path":"/x"}}'), {
    ok: true,
    request: { id: "a", method: "reload", params: { path: "/x" } },
  });
});

Deno.test("parseRequest() answers bad JSON with parse_error and id null", () => {
  const r = parseRequest('{"id":1,"method":');
  assert.equal(r.ok, false);
  if (!r.ok) {
    assert.equal(r.response.id, null);
    assert.equal(r.response.error.code, "parse_error");
  }
});

Deno.test("parseRequest() rejects bad shapes with invalid_request, echoing a readable id", () => {
  const cases: [string, string | number | null, string][] = [
    ["[1,2]", null, "request"],
    ['{"method":"ping"}', null, "id"],
    ['{"id":1.5,"method":"ping"}', null, "id"],
    [`{"id":"${"x".repeat(129)}","method":"ping"}`, null, "id"],
    ['{"id":7}', 7, "method"],
    ['{"id":7,"method":""}', 7, "method"],
    ['{"id":7,"method":"ping","extra":1}', 7, "extra"],
  ];
  for (const [line, id, field] of cases) {
    const r = parseRequest(line);
    assert.equal(r.ok, false, line);
    if (r.ok) continue;
    assert.equal(r.response.id, id, line);
    assert.equal(r.response.error.code, "invalid_request", line);
    assert.ok(r.response.error.message.startsWith(field + ":"), r.response.error.message);
  }
});

Deno.test("parseResponse() reads results and errors and rejects unknown codes", () => {
  assert.deepEqual(parseResponse('{"id":3,"result":{"pong":true}}'), {
    id: 3,
    result: { pong: true },
  });
  assert.deepEqual(
    parseResponse('{"id":null,"error":{"code":"line_too_long","message":"m"}}'),
    { id: null, error: { code: "line_too_long", message: "m" } },
  );
  for (const bad of ["nope", '{"id":1}', '{"id":1,"error":{"code":"weird","message":"m"}}']) {
    assert.throws(
      () => parseResponse(bad),
      (e) => e instanceof IpcError && e.code === "bad_response",
    );
  }
});

Deno.test("validateParams() accepts no params for ping/status/outbounds.list and rejects extras", () => {
  for (const m of ["ping", "status", "outbounds.list"] as const) {
    assert.equal(validateParams(m, undefined), undefined);
    assert.equal(validateParams(m, {}), undefined);
    invalidParams(() => validateParams(m, { x: 1 }), "params.x");
  }
  invalidParams(() => validateParams("status", [1]), "params");
});

Deno.test("validateParams('reload') wants exactly one of path or config", () => {
  assert.deepEqual(validateParams("reload", { path: "/etc/r.json", close_removed: true }), {
    path: "/etc/r.json",
    close_removed: true,
  });
  assert.deepEqual(validateParams("reload", { config: { route: {} } }), { config: { route: {} } });
  invalidParams(() => validateParams("reload", {}), "params");
  invalidParams(() => validateParams("reload", { path: "/a", config: {} }), "params");
  invalidParams(() => validateParams("reload", { path: 3 }), "params.path");
  invalidParams(() => validateParams("reload", { path: "x".repeat(4097) }), "params.path");
  invalidParams(() => validateParams("reload", { config: [] }), "params.config");
  invalidParams(
    () => validateParams("reload", { path: "/a", close_removed: "yes" }),
    "params.close_removed",
  );
  invalidParams(() => validateParams("reload", { path: "/a", force: true }), "params.force");
});

Deno.test("validateRouteTest() checks every field and normalises the domain", () => {
  assert.deepEqual(
    validateRouteTest({
      dst: "[2001:db8::1]:443",
      domain: "WWW.Netflix.COM.",
      src: "10.0.0.2",
      network: "udp",
      protocol: "quic",
      mark: 0x100,
      dscp: 46,
      inbound: "tproxy-in",
    }),
    {
      dst: "[2001:db8::1]:443",
      domain: "www.netflix.com",
      src: "10.0.0.2",
      network: "udp",
      protocol: "quic",
      mark: 256,
      dscp: 46,
      inbound: "tproxy-in",
    },
  );
  invalidParams(() => validateRouteTest({}), "params.dst");
  invalidParams(() => validateRouteTest({ dst: "1.2.3.4" }), "params.dst");
  invalidParams(() => validateRouteTest({ dst: "1.2.3.4:99999" }), "params.dst");
  invalidParams(() => validateRouteTest({ dst: "1.2.3.4:1", src: "nope" }), "params.src");
  invalidParams(() => validateRouteTest({ dst: "1.2.3.4:1", network: "sctp" }), "params.network");
  invalidParams(() => validateRouteTest({ dst: "1.2.3.4:1", protocol: "ssh" }), "params.protocol");
  invalidParams(() => validateRouteTest({ dst: "1.2.3.4:1", mark: -1 }), "params.mark");
  invalidParams(() => validateRouteTest({ dst: "1.2.3.4:1", mark: 2 ** 32 }), "params.mark");
  invalidParams(() => validateRouteTest({ dst: "1.2.3.4:1", dscp: 64 }), "params.dscp");
  invalidParams(() => validateRouteTest({ dst: "1.2.3.4:1", dns: "no" }), "params.dns");
  assert.deepEqual(validateRouteTest({ dst: "1.2.3.4:1", dns: false }), {
    dst: "1.2.3.4:1",
    dns: false,
  });
  invalidParams(
    () => validateRouteTest({ dst: "1.2.3.4:1", domain: "a".repeat(300) }),
    "params.domain",
  );
  invalidParams(() => validateRouteTest({ dst: "1.2.3.4:1", domain: "a b" }), "params.domain");
  invalidParams(() => validateRouteTest({ dst: "1.2.3.4:1", inbound: "" }), "params.inbound");
  invalidParams(() => validateRouteTest({ dst: "1.2.3.4:1", port: 1 }), "params.port");
  invalidParams(() => validateRouteTest({ dst: 5 }, "--"), "--dst");
});

Deno.test("validateParams(shutdown): optional drain_ms, bounded to a day", () => {
  assert.deepEqual(validateParams("shutdown", undefined), {});
  assert.deepEqual(validateParams("shutdown", { drain_ms: 0 }), { drain_ms: 0 });
  assert.deepEqual(validateParams("shutdown", { drain_ms: 86_400_000 }), { drain_ms: 86_400_000 });
  invalidParams(() => validateParams("shutdown", { drain_ms: 86_400_001 }), "params.drain_ms");
  invalidParams(() => validateParams("shutdown", { drain_ms: "5m" }), "params.drain_ms");
  invalidParams(() => validateParams("shutdown", { now: true }), "params.now");
});

Deno.test("validateParams(stats): optional rules and limit, named on error", () => {
  assert.deepEqual(validateParams("stats", undefined), {});
  assert.deepEqual(validateParams("stats", { rules: true, limit: 5 }), { rules: true, limit: 5 });
  invalidParams(() => validateParams("stats", { rules: "yes" }), "params.rules");
  invalidParams(() => validateParams("stats", { limit: -1 }), "params.limit");
  invalidParams(() => validateParams("stats", { limit: 1.5 }), "params.limit");
  invalidParams(() => validateParams("stats", { top: 3 }), "params.top");
  assert.deepEqual(validateParams("stats", {}), {});
});

Deno.test("validateParams('connections.*') bounds limit and wants id xor outbound", () => {
  assert.deepEqual(validateParams("connections.list", undefined), {});
  assert.deepEqual(validateParams("connections.list", { limit: 10, outbound: "wg" }), {
    limit: 10,
    outbound: "wg",
  });
  invalidParams(() => validateParams("connections.list", { limit: 0 }), "params.limit");
  invalidParams(() => validateParams("connections.list", { limit: 1e9 }), "params.limit");
  assert.deepEqual(validateParams("connections.close", { id: 5 }), { id: 5 });
  assert.deepEqual(validateParams("connections.close", { outbound: "x" }), { outbound: "x" });
  invalidParams(() => validateParams("connections.close", {}), "params");
  invalidParams(() => validateParams("connections.close", { id: 1, outbound: "x" }), "params");
  invalidParams(() => validateParams("connections.close", { id: "1" }), "params.id");
});

Deno.test("flowFromRouteTest() fills defaults and unmaps IPv4-mapped addresses", () => {
  const f = flowFromRouteTest({ dst: "[::ffff:1.2.3.4]:443", src: "10.0.0.1" }, {
    inbound: "tproxy-in",
  });
  assert.equal(f.network, "tcp");
  assert.equal(f.inbound, "tproxy-in");
  assert.deepEqual([...f.destination.addr], [1, 2, 3, 4]);
  assert.equal(f.destination.port, 443);
  assert.deepEqual([...f.source.addr], [10, 0, 0, 1]);
  assert.equal(f.source.port, 0);
  const g = flowFromRouteTest({ dst: "[2001:db8::1]:80", mark: 7, dscp: 1, network: "udp" });
  assert.equal(g.source.addr.length, 16);
  assert.equal(g.mark, 7);
  assert.equal(g.dscp, 1);
  assert.equal(g.network, "udp");
});
