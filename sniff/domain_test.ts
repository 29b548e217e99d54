import assert from "node:assert/strict";
import { normalizeDomain } from "./domain.ts";

Deno.test("normalizeDomain() lower-cases and strips one trailing dot", () => {
  assert.equal(normalizeDomain("WWW.Example.COM."), "www.example.com");
  assert.equal(normalizeDomain("a_b-c.example"), "a_b-c.example");
  assert.equal(normalizeDomain("localhost"), "localhost");
});

Deno.test("normalizeDomain() rejects empty labels, bad characters and IP literals", () => {
  for (
    const bad of ["", ".", "a..b", ".a", "a.b..", "exa mple.com", "a/b", "é.com", "1.2.3.4", "::1"]
  ) {
    assert.equal(normalizeDomain(bad), undefined, JSON.stringify(bad));
  }
});

Deno.test("normalizeDomain() enforces 63-byte labels and 253-byte names", () => {
  const label63 = "a".repeat(63);
  assert.equal(normalizeDomain(`${label63}.com`), `${label63}.com`);
  assert.equal(normalizeDomain(`${label63}a.com`), undefined);
  const name253 = [label63, label63, label63, "a".repeat(61)].join(".");
  assert.equal(name253.length, 253);
  assert.equal(normalizeDomain(name253), name253);
  assert.equal(normalizeDomain(name253 + "."), name253);
  assert.equal(normalizeDomain(name253 + "a"), undefined);
});
