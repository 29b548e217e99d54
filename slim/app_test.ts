import assert from "node:assert/strict";
import { createLogger } from "../core/log.ts";
import { createApp } from "./app.ts";
import { FakeKernel } from "./kernel_fake.ts";
import { SlimService } from "./service.ts";
import { Store } from "./store.ts";

const TOKEN = "test-token-0123456789abcdef";
const PUB_A = "fop46ZtOc1AWheBRdBg4ppivSJ7yWStTNNFU1I7grhQ=";
const PUB_B = "iZvZo4a1XG9obYr3bnEmjoDRotskw0OLIjrHnqOP6Uo=";
const PRIV = "ZFGxdOk+bsKjwE5/XmYuY/odahFHU53HTAIzswsnVi8=";
const PSK = "cIRiHggAAYEAznYoPwYAUTTbdcarkc7YOcNq6DDGzWU=";

function setup(opts: { livenessProbe?: boolean; maxBodyBytes?: number } = {}) {
  const kernel = new FakeKernel();
  const store = new Store(":memory:");
  const logger = createLogger({ level: "error", write: () => {} });
  const service = new SlimService({
    store,
    kernel,
    logger,
    table: "vpn_slim",
    peersOnly: true,
    defaultMtu: 1420,
    defaultKeepalive: 25,
    listenPortRange: [51820, 51822],
    maxPeers: 10,
    maxRules: 10,
    pruneUnknownInterfaces: true,
    now: () => new Date("2026-01-01T00:00:00Z"),
  });
  const app = createApp({
    service,
    token: TOKEN,
    maxBodyBytes: opts.maxBodyBytes ?? 4096,
    livenessProbe: opts.livenessProbe ?? true,
    logger,
  });
  async function call(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ) {
    const init: RequestInit = {
      method,
      headers: {
        authorization: `Bearer ${TOKEN}`,
        ...(body !== undefined ? { "content-type": "application/json" } : {}),
        ...headers,
      },
    };
    if (body !== undefined) init.body = typeof body === "string" ? body : JSON.stringify(body);
    const res = await app.fetch(new Request(`http://slim${path}`, init));
    const text = await res.text();
    return { status: res.status, headers: res.headers, text, json: JSON.parse(text) };
  }
  return { kernel, store, service, app, call };
}

const peerA = {
  tag: "a",
  peer_public_key: PUB_A,
  address: ["10.200.1.1/24"],
  allowed_ips: ["10.200.1.2/32"],
};
const peerB = {
  tag: "b",
  peer_public_key: PUB_B,
  address: ["10.200.2.1/24"],
  allowed_ips: ["10.200.2.2/32", "192.168.50.0/24"],
  endpoint: "192.0.2.10:51820",
};

Deno.test("app rejects requests without or with a wrong bearer token (401)", async () => {
  const { app, call } = setup();
  const none = await app.fetch(new Request("http://slim/api/peers"));
  assert.equal(none.status, 401);
  assert.match(none.headers.get("www-authenticate") ?? "", /^Bearer/);
  assert.equal((await none.json()).error.code, "unauthorized");
  for (const path of ["/api/health", "/api/openapi.json", "/api/forwarding/rules", "/nope"]) {
    const r = await call("GET", path, undefined, { authorization: `Bearer ${TOKEN}x` });
    assert.equal(r.status, 401, path);
  }
  const basic = await call("GET", "/api/peers", undefined, { authorization: `Basic ${TOKEN}` });
  assert.equal(basic.status, 401);
});

Deno.test("app serves the liveness probe without a token only when enabled", async () => {
  const on = setup();
  const r = await on.app.fetch(new Request("http://slim/api/health/live"));
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), { status: "ok" });
  const off = setup({ livenessProbe: false });
  assert.equal((await off.app.fetch(new Request("http://slim/api/health/live"))).status, 401);
});

Deno.test("GET /api/health reports counts and ok status", async () => {
  const { call } = setup();
  const r = await call("GET", "/api/health");
  assert.equal(r.status, 200);
  assert.equal(r.json.status, "ok");
  assert.equal(r.json.peers, 0);
  assert.deepEqual(r.json.problems, []);
  assert.equal(r.headers.get("content-type"), "application/json; charset=utf-8");
});

Deno.test("GET /api/openapi.json documents every endpoint", async () => {
  const { call } = setup();
  const r = await call("GET", "/api/openapi.json");
  assert.equal(r.status, 200);
  assert.equal(r.json.openapi, "3.1.0");
  for (
    const p of [
      "/api/health",
      "/api/peers",
      "/api/peers/{tag}",
      "/api/peers/{tag}/connect",
      "/api/peers/{tag}/disconnect",
      "/api/forwarding/rules",
      "/api/forwarding/rules/{id}",
    ]
  ) assert.ok(r.json.paths[p], p);
});

Deno.test("POST /api/peers creates wg-peer-{tag} with generated keys, never returning the private key", async () => {
  const { call, kernel, store } = setup();
  const r = await call("POST", "/api/peers", peerA);
  assert.equal(r.status, 201);
  assert.equal(r.json.interface, "wg-peer-a");
  assert.equal(r.json.listen_port, 51820);
  assert.equal(r.json.mtu, 1420);
  assert.equal(r.json.persistent_keepalive_interval, 25);
  assert.equal(r.json.enabled, true);
  assert.equal(r.json.status.up, true);
  assert.match(r.json.public_key, /^[A-Za-z0-9+/]{43}=$/);
  const stored = store.getPeer("a")!;
  assert.ok(!r.text.includes(stored.privateKey));
  assert.ok(!("private_key" in r.json));
  assert.equal(kernel.interfaces.get("wg-peer-a")?.peer.privateKey, stored.privateKey);
  const list = await call("GET", "/api/peers");
  assert.equal(list.status, 200);
  assert.equal(list.json.length, 1);
  assert.ok(!list.text.includes(stored.privateKey));
});

Deno.test("POST /api/peers derives the public key of a given private key and hides the PSK", async () => {
  const { call } = setup();
  const r = await call("POST", "/api/peers", { ...peerB, private_key: PRIV, pre_shared_key: PSK });
  assert.equal(r.status, 201);
  assert.equal(r.json.public_key, PUB_A);
  assert.equal(r.json.has_pre_shared_key, true);
  assert.equal(r.json.endpoint, "192.0.2.10:51820");
  for (const text of [r.text, (await call("GET", "/api/peers/b")).text]) {
    assert.ok(!text.includes(PRIV));
    assert.ok(!text.includes(PSK));
  }
});

Deno.test("POST /api/peers validates input and names the field", async () => {
  const { call } = setup();
  const cases: [unknown, string][] = [
    [{ ...peerA, tag: "toolong8" }, "tag"],
    [{ ...peerA, tag: "Bad!" }, "tag"],
    [{ ...peerA, colour: "red" }, "colour"],
    [{ ...peerA, allowed_ips: ["10.0.0.0/33"] }, "allowed_ips[0]"],
    [{ ...peerA, address: [] }, "address"],
    [{ ...peerA, peer_public_key: "short" }, "peer_public_key"],
    [{ tag: "a", address: ["10.0.0.1/24"], allowed_ips: [] }, "peer_public_key"],
    [{ ...peerA, endpoint: "host" }, "endpoint"],
    [{ ...peerA, listen_port: 70000 }, "listen_port"],
    [{ ...peerA, mtu: 100 }, "mtu"],
    [[1, 2], "body"],
  ];
  for (const [body, field] of cases) {
    const r = await call("POST", "/api/peers", body);
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.equal(r.json.error.code, "invalid_request");
    assert.equal(r.json.error.field, field);
    assert.ok(r.json.error.message.startsWith(`${field}: `), r.json.error.message);
  }
  const huge = await call("POST", "/api/peers", {
    ...peerA,
    allowed_ips: Array.from({ length: 300 }, (_, i) => `10.0.${i % 256}.1/32`),
  });
  assert.equal(huge.status, 413); // the 4 KiB body limit trips first
});

Deno.test("POST bodies: bad JSON is 400, wrong type 415, too large 413", async () => {
  const { app, call } = setup({ maxBodyBytes: 1024 });
  const bad = await call("POST", "/api/peers", "{not json");
  assert.equal(bad.status, 400);
  assert.equal(bad.json.error.code, "invalid_json");
  const type = await call("POST", "/api/peers", JSON.stringify(peerA), {
    "content-type": "text/plain",
  });
  assert.equal(type.status, 415);
  const big = await call("POST", "/api/peers", { ...peerA, pad: "x".repeat(2000) });
  assert.equal(big.status, 413);
  assert.equal(big.json.error.code, "payload_too_large");
  // A streamed body without Content-Length is cut off at the limit too.
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      for (let i = 0; i < 8; i++) c.enqueue(new Uint8Array(512).fill(32));
      c.close();
    },
  });
  const res = await app.fetch(
    new Request("http://slim/api/peers", {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: stream,
    }),
  );
  assert.equal(res.status, 413);
});

Deno.test("POST /api/peers refuses a taken tag or listen port (409) and runs out of ports", async () => {
  const { call } = setup();
  assert.equal((await call("POST", "/api/peers", peerA)).status, 201);
  const dupTag = await call("POST", "/api/peers", { ...peerB, tag: "a" });
  assert.equal(dupTag.status, 409);
  assert.equal(dupTag.json.error.code, "conflict");
  const dupPort = await call("POST", "/api/peers", { ...peerB, listen_port: 51820 });
  assert.equal(dupPort.status, 409);
  assert.equal((await call("POST", "/api/peers", { ...peerB, tag: "b" })).status, 201);
  assert.equal((await call("POST", "/api/peers", { ...peerB, tag: "c" })).status, 201);
  const full = await call("POST", "/api/peers", { ...peerB, tag: "d" });
  assert.equal(full.status, 409);
  assert.match(full.json.error.message, /No free listen port/);
});

Deno.test("POST /api/peers: a kernel failure is a 500 and leaves no state behind", async () => {
  const { call, kernel, store } = setup();
  kernel.failPeers.add("a");
  const r = await call("POST", "/api/peers", peerA);
  assert.equal(r.status, 500);
  assert.equal(r.json.error.code, "kernel_error");
  assert.match(r.json.error.message, /wg-peer-a/);
  assert.equal(store.getPeer("a"), null);
  assert.equal(kernel.interfaces.has("wg-peer-a"), false);
});

Deno.test("GET /api/peers/{tag} shows live state; unknown is 404, invalid is 400", async () => {
  const { call, kernel } = setup();
  await call("POST", "/api/peers", peerA);
  const live = kernel.interfaces.get("wg-peer-a")!;
  live.live = { ...live.live, latestHandshake: 1767225600, rxBytes: 10, txBytes: 20 };
  const r = await call("GET", "/api/peers/a");
  assert.equal(r.status, 200);
  assert.equal(r.json.status.latest_handshake, "2026-01-01T00:00:00.000Z");
  assert.equal(r.json.status.rx_bytes, 10);
  assert.equal(r.json.status.tx_bytes, 20);
  assert.equal((await call("GET", "/api/peers/zz")).status, 404);
  const bad = await call("GET", "/api/peers/UPPER");
  assert.equal(bad.status, 400);
  assert.equal(bad.json.error.field, "tag");
});

Deno.test("POST /api/peers/{tag}/disconnect and /connect bring the interface down and up", async () => {
  const { call, kernel, store } = setup();
  await call("POST", "/api/peers", peerA);
  const down = await call("POST", "/api/peers/a/disconnect");
  assert.equal(down.status, 200);
  assert.equal(down.json.enabled, false);
  assert.equal(kernel.interfaces.get("wg-peer-a")?.live.up, false);
  assert.equal(store.getPeer("a")?.enabled, false);
  const up = await call("POST", "/api/peers/a/connect");
  assert.equal(up.json.enabled, true);
  assert.equal(kernel.interfaces.get("wg-peer-a")?.live.up, true);
  assert.equal((await call("POST", "/api/peers/zz/connect")).status, 404);
  kernel.failPeers.add("a");
  const fail = await call("POST", "/api/peers/a/disconnect");
  assert.equal(fail.status, 500);
  assert.equal(store.getPeer("a")?.enabled, true);
  const health = await call("GET", "/api/health");
  assert.equal(health.json.status, "degraded");
  assert.equal(health.json.problems[0].id, "a");
});

Deno.test("forwarding rules: POST renders the nft table, GET lists, DELETE removes", async () => {
  const { call, kernel } = setup();
  await call("POST", "/api/peers", peerA);
  await call("POST", "/api/peers", peerB);
  const r = await call("POST", "/api/forwarding/rules", {
    from: "a",
    to: "b",
    bidirectional: true,
    protocol: "tcp",
    ports: [22, "8000-8100"],
    comment: "ssh and web",
  });
  assert.equal(r.status, 201);
  assert.equal(r.json.id, 1);
  assert.deepEqual(r.json.ports, [22, "8000-8100"]);
  assert.match(
    kernel.ruleset!,
    /iifname "wg-peer-a" oifname "wg-peer-b" tcp dport \{ 22, 8000-8100 \} counter accept/,
  );
  assert.match(kernel.ruleset!, /iifname "wg-peer-b" oifname "wg-peer-a" tcp dport/);
  const list = await call("GET", "/api/forwarding/rules");
  assert.equal(list.json.length, 1);
  assert.equal(list.json[0].comment, "ssh and web");
  const del = await call("DELETE", "/api/forwarding/rules/1");
  assert.equal(del.status, 200);
  assert.doesNotMatch(kernel.ruleset!, /wg-peer-a" oifname "wg-peer-b/);
  assert.match(kernel.ruleset!, /counter drop comment "no forwarding rule"/);
  assert.equal((await call("DELETE", "/api/forwarding/rules/1")).status, 404);
  const badId = await call("DELETE", "/api/forwarding/rules/x1");
  assert.equal(badId.status, 400);
  assert.equal(badId.json.error.field, "id");
});

Deno.test("POST /api/forwarding/rules validates and refuses duplicates", async () => {
  const { call } = setup();
  await call("POST", "/api/peers", peerA);
  await call("POST", "/api/peers", peerB);
  const cases: [unknown, string][] = [
    [{ from: "a" }, "to"],
    [{ from: "a", to: "a" }, "to"],
    [{ from: "a", to: "zz" }, "to"],
    [{ from: "a", to: "b", ports: [80] }, "ports"],
    [{ from: "a", to: "b", protocol: "sctp" }, "protocol"],
    [{ from: "a", to: "b", protocol: "tcp", ports: ["90-80"] }, "ports[0]"],
    [{ from: "a", to: "b", bidirectional: "yes" }, "bidirectional"],
    [{ from: "a", to: "b", extra: 1 }, "extra"],
  ];
  for (const [body, field] of cases) {
    const r = await call("POST", "/api/forwarding/rules", body);
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.equal(r.json.error.field, field, JSON.stringify(body));
  }
  assert.equal((await call("POST", "/api/forwarding/rules", { from: "a", to: "b" })).status, 201);
  assert.equal((await call("POST", "/api/forwarding/rules", { from: "a", to: "b" })).status, 409);
});

Deno.test("POST /api/forwarding/rules: an nft failure is a 500 and the rule is not kept", async () => {
  const { call, kernel } = setup();
  await call("POST", "/api/peers", peerA);
  await call("POST", "/api/peers", peerB);
  kernel.failRuleset = (s) => s.includes("wg-peer-a");
  const r = await call("POST", "/api/forwarding/rules", { from: "a", to: "b" });
  assert.equal(r.status, 500);
  assert.equal(r.json.error.code, "kernel_error");
  assert.deepEqual((await call("GET", "/api/forwarding/rules")).json, []);
});

Deno.test("DELETE /api/peers/{tag} is refused (409) while rules use it, cascades on request", async () => {
  const { call, kernel, store } = setup();
  await call("POST", "/api/peers", peerA);
  await call("POST", "/api/peers", peerB);
  await call("POST", "/api/forwarding/rules", { from: "a", to: "b" });
  const refused = await call("DELETE", "/api/peers/a");
  assert.equal(refused.status, 409);
  assert.match(refused.json.error.message, /rule\(s\) 1/);
  assert.ok(kernel.interfaces.has("wg-peer-a"));
  const bad = await call("DELETE", "/api/peers/a?cascade=maybe");
  assert.equal(bad.status, 400);
  assert.equal(bad.json.error.field, "cascade");
  const ok = await call("DELETE", "/api/peers/a?cascade=true");
  assert.equal(ok.status, 200);
  assert.deepEqual(ok.json, { deleted: "a", deleted_rules: [1] });
  assert.equal(kernel.interfaces.has("wg-peer-a"), false);
  assert.deepEqual(store.listRules(), []);
  assert.doesNotMatch(kernel.ruleset!, /wg-peer-a"/);
  assert.equal((await call("DELETE", "/api/peers/b")).status, 200);
  assert.equal((await call("DELETE", "/api/peers/b")).status, 404);
});

Deno.test("app answers 405 with Allow for a wrong method and 404 for an unknown path", async () => {
  const { call } = setup();
  const r = await call("PUT", "/api/peers");
  assert.equal(r.status, 405);
  assert.equal(r.headers.get("allow"), "GET, POST");
  assert.equal((await call("GET", "/api/nothing")).status, 404);
  assert.equal((await call("DELETE", "/api/health")).status, 405);
});
