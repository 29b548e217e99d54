import assert from "node:assert/strict";
import { DomainIndexBuilder, type DomainItems } from "./item_domain.ts";

const none: DomainItems = { domain: [], domain_suffix: [], domain_keyword: [], domain_regex: [] };

function lookup(items: Partial<DomainItems>[], name: string): number[] {
  const b = new DomainIndexBuilder();
  items.forEach((it, i) => b.add(i, { ...none, ...it }));
  const out = new Set<number>();
  b.build().lookup(name, (n) => out.add(n));
  return [...out].sort();
}

Deno.test("domain matches the exact name only", () => {
  assert.deepEqual(lookup([{ domain: ["x.com"] }], "x.com"), [0]);
  assert.deepEqual(lookup([{ domain: ["x.com"] }], "a.x.com"), []);
  assert.deepEqual(lookup([{ domain: ["x.com"] }], "ax.com"), []);
});

Deno.test('domain_suffix "x.com" matches the apex and subdomains, on label boundaries', () => {
  const rules = [{ domain_suffix: ["x.com"] }];
  assert.deepEqual(lookup(rules, "x.com"), [0]);
  assert.deepEqual(lookup(rules, "a.b.x.com"), [0]);
  assert.deepEqual(lookup(rules, "ax.com"), []);
  assert.deepEqual(lookup(rules, "x.com.cn"), []);
});

Deno.test('domain_suffix ".x.com" matches subdomains only', () => {
  const rules = [{ domain_suffix: [".x.com"] }];
  assert.deepEqual(lookup(rules, "x.com"), []);
  assert.deepEqual(lookup(rules, "a.x.com"), [0]);
  assert.deepEqual(lookup(rules, "ax.com"), []);
});

Deno.test("domain_keyword matches substrings; domain_regex matches patterns", () => {
  assert.deepEqual(lookup([{ domain_keyword: ["goo"] }], "www.google.com"), [0]);
  assert.deepEqual(lookup([{ domain_keyword: ["goo"] }], "gogo.com"), []);
  assert.deepEqual(lookup([{ domain_regex: ["^stun\\..+"] }], "stun.l.example"), [0]);
  assert.deepEqual(lookup([{ domain_regex: ["^stun\\..+"] }], "xstun.l.example"), []);
});

Deno.test("DomainIndex reports every rule node whose items match", () => {
  const rules = [
    { domain: ["a.x.com"] },
    { domain_suffix: ["com"] },
    { domain_keyword: ["x."] },
    { domain_suffix: [".a.x.com"] },
    { domain_regex: ["x\\.com$"] },
  ];
  assert.deepEqual(lookup(rules, "a.x.com"), [0, 1, 2, 4]);
  assert.deepEqual(lookup(rules, "b.a.x.com"), [1, 2, 3, 4]);
});
