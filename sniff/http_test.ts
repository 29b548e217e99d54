import assert from "node:assert/strict";
import { fixtureBytes, manifest, mutate, randomBytes, rng } from "./_test_util.ts";
import { hostFromAuthority, HTTP_METHODS, sniffHttp } from "./http.ts";

const enc = new TextEncoder();
const http = (s: string, max?: number) =>
  sniffHttp(enc.encode(s), max === undefined ? {} : { maxHeaderBytes: max });
const httpFixtures = manifest("http");

Deno.test("sniffHttp() gives each real client's fixture its expected result", () => {
  assert.ok(httpFixtures.length >= 8);
  for (const f of httpFixtures) {
    const r = sniffHttp(fixtureBytes("http", f.file));
    assert.equal(r.status, f.expect.status, f.file);
    if (r.status === "found") {
      assert.equal(r.protocol, "http");
      assert.equal(r.domain, f.expect.domain ?? undefined, f.file);
    }
  }
});

Deno.test("sniffHttp() on every truncation says need_more or the full answer, never another", () => {
  for (const f of httpFixtures) {
    const b = fixtureBytes("http", f.file);
    const full = sniffHttp(b);
    let needMore = 0;
    for (let n = 0; n < b.length; n++) {
      const r = sniffHttp(b.subarray(0, n));
      if (r.status === "need_more") needMore++;
      else assert.deepEqual(r, full, `${f.file}[0,${n})`);
    }
    assert.ok(needMore > 10, f.file); // at least the request line needs more
  }
});

Deno.test("sniffHttp() accepts every listed method and strips the port", () => {
  for (const m of HTTP_METHODS) {
    const target = m === "CONNECT" ? "h.example:443" : "/";
    assert.deepEqual(http(`${m} ${target} HTTP/1.1\r\nHost: h.example:8080\r\n\r\n`), {
      status: "found",
      protocol: "http",
      domain: "h.example",
    }, m);
  }
});

Deno.test("sniffHttp() reads Host in any case, with spaces, after other headers, with bare LF", () => {
  assert.equal(
    (http("GET / HTTP/1.1\nAccept: */*\nhOsT:   Mixed.Example.  \n\n") as { domain?: string })
      .domain,
    "mixed.example",
  );
});

Deno.test("sniffHttp() gives IP-literal hosts no name, brackets and ports included", () => {
  for (const host of ["[::1]:8080", "[2001:db8::1]", "192.0.2.7:80", "192.0.2.7", "[::1]x"]) {
    assert.deepEqual(http(`GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`), {
      status: "found",
      protocol: "http",
      domain: undefined,
    }, host);
  }
});

Deno.test("hostFromAuthority() strips userinfo and port and rejects junk ports", () => {
  assert.equal(hostFromAuthority("user:pw@a.example:81"), "a.example");
  assert.equal(hostFromAuthority("a.example:http"), undefined);
  assert.equal(hostFromAuthority("a.example:"), undefined);
  assert.equal(hostFromAuthority("a.example:123456"), undefined);
});

Deno.test("sniffHttp() prefers the absolute-form authority over Host", () => {
  assert.equal(
    (http("GET HTTP://Abs.Example:8080/x HTTP/1.1\r\nHost: other.example\r\n\r\n") as {
      domain?: string;
    }).domain,
    "abs.example",
  );
});

Deno.test("sniffHttp() finds HTTP without a name when Host is missing", () => {
  assert.deepEqual(http("GET / HTTP/1.0\r\nAccept: */*\r\n\r\n"), {
    status: "found",
    protocol: "http",
    domain: undefined,
  });
});

Deno.test("sniffHttp() rejects other protocols", () => {
  const cases = [
    "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "SSH-2.0-OpenSSH_9.2\r\n",
    "get / HTTP/1.1\r\n",
    "GETS / HTTP/1.1\r\n",
    "GET / HTTP/2\r\nHost: a\r\n\r\n",
    "GET / FTP/1.0\r\n",
    "GET  / HTTP/1.1\r\n",
    "GET /\x01 HTTP/1.1\r\n",
    "\x16\x03\x01",
    "EHLO mail.example\r\n",
  ];
  for (const c of cases) assert.deepEqual(http(c), { status: "not_this" }, JSON.stringify(c));
});

Deno.test("sniffHttp() asks for more on a method prefix", () => {
  for (const c of ["", "G", "CONNEC", "OPTIONS", "DELETE /", "GET / HTTP/1.1\r\nHo"]) {
    assert.deepEqual(http(c), { status: "need_more" }, JSON.stringify(c));
  }
});

Deno.test("sniffHttp() bounds the header bytes", () => {
  const longLine = "GET /" + "a".repeat(200) + " HTTP/1.1\r\n";
  assert.deepEqual(http(longLine, 100), { status: "not_this" });
  const manyHeaders = "GET / HTTP/1.1\r\n" + "X-Pad: 0123456789\r\n".repeat(20) +
    "Host: late.example\r\n\r\n";
  assert.deepEqual(http(manyHeaders, 200), {
    status: "found",
    protocol: "http",
    domain: undefined,
  });
  assert.equal((http(manyHeaders) as { domain?: string }).domain, "late.example");
  // Below the bound and incomplete: wait.
  assert.deepEqual(http("GET / HTTP/1.1\r\nX-Pad: 1\r\n", 200), { status: "need_more" });
});

Deno.test("sniffHttp() never throws on random or mutated input", () => {
  const rand = rng(0xbeef);
  const seeds = httpFixtures.map((f) => fixtureBytes("http", f.file));
  for (let i = 0; i < 4000; i++) {
    const input = i % 4 === 0 ? randomBytes(rand, 400) : mutate(seeds[i % seeds.length]!, rand);
    const r = sniffHttp(input, { maxHeaderBytes: 256 + Math.floor(rand() * 2048) });
    assert.ok(["found", "need_more", "not_this"].includes(r.status));
    if (r.status === "found" && r.domain !== undefined) assert.match(r.domain, /^[a-z0-9_.-]+$/);
  }
});
