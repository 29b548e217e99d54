import assert from "node:assert/strict";
import { Issues } from "../config/config_error.ts";
import { cidr } from "../config/values.ts";
import { CIDR_V6, parseCidrInto, ParsedCidrPool } from "./cidr_text.ts";

/** What parseCidrInto() says, as [bytes of the prefix's family, prefix] or null. */
function fast(s: string): [number[], number] | null {
  const out = new Uint8Array(16).fill(0xaa);
  const r = parseCidrInto(s, out);
  if (r < 0) return null;
  const v6 = (r & CIDR_V6) !== 0, prefix = r & 0xff;
  // Compare with host bits cleared, as the config parser stores them.
  const bytes = [...out.subarray(0, v6 ? 16 : 4)].map((b, i) => {
    const bits = prefix - i * 8;
    return bits >= 8 ? b : bits <= 0 ? 0 : b & ((0xff << (8 - bits)) & 0xff);
  });
  return [bytes, prefix];
}

function slow(s: string): [number[], number] | null {
  const c = cidr(s, "x", new Issues());
  return c ? [[...c.addr], c.prefix] : null;
}

Deno.test("parseCidrInto() reads IPv4, IPv6 and mapped prefixes like the config parser", () => {
  for (
    const s of [
      "10.0.0.0/8",
      "1.2.3.4",
      "0.0.0.0/0",
      "255.255.255.255/32",
      "2001:db8::/32",
      "::/0",
      "::1",
      "1::",
      "fe80::1:2/64",
      "1:2:3:4:5:6:7:8/128",
      "::ffff:192.168.0.0/112",
      "::ffff:c0a8:0/104",
      "::ffff:1.2.3.4",
      "2001:DB8::/048",
    ]
  ) {
    assert.deepEqual(fast(s), slow(s), s);
    assert.notEqual(fast(s), null, s);
  }
  assert.deepEqual(fast("::ffff:192.168.0.0/112"), [[192, 168, 0, 0], 16]);
});

Deno.test("parseCidrInto() rejects what the config parser rejects", () => {
  for (
    const s of [
      "",
      "10.0.0.0/33",
      "::/129",
      "01.2.3.4",
      "1.2.3",
      "1.2.3.4.5",
      "256.1.1.1",
      "1.2.3.4/",
      "1.2.3.4/1234",
      "1.2.3.4/8/9",
      ":1::",
      "1:::2",
      "1::2::3",
      "1:2:3:4:5:6:7:8:9",
      "1:2:3:4:5:6:7::8",
      "1:2:3:4:5:6:7",
      "12345::",
      "1:",
      "g::",
      "::ffff:1.2.3",
    ]
  ) {
    assert.equal(fast(s), null, s);
    assert.equal(slow(s), null, s);
  }
});

Deno.test("parseCidrInto() agrees with the config parser on 200,000 random strings", () => {
  let seed = 12345;
  const rnd = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff;
    return seed % n;
  };
  const alphabet = "0123456789abcdefABCDEFg:./";
  const pieces = ["::", ":", ".", "/", "ffff", "0", "1", "255", "256", "db8", "/24", "/96", "/120"];
  let valid = 0;
  for (let n = 0; n < 200_000; n++) {
    let s = "";
    const len = rnd(14);
    for (let i = 0; i < len; i++) {
      s += rnd(3) === 0 ? pieces[rnd(pieces.length)] : alphabet[rnd(alphabet.length)];
    }
    const want = slow(s);
    assert.deepEqual(fast(s), want, JSON.stringify(s));
    if (want) valid++;
  }
  assert.ok(valid > 1000, `only ${valid} valid strings generated`);
});

Deno.test("ParsedCidrPool keeps each group's prefixes as parseCidrInto() reads them; abort() drops one", () => {
  const pool = new ParsedCidrPool();
  const read = (g: ReturnType<ParsedCidrPool["end"]>) =>
    Array.from({ length: g.count }, (_, i) => {
      const r = g.res[g.from + i]!, len = (r & CIDR_V6) !== 0 ? 16 : 4;
      return [[...g.addr.subarray(16 * (g.from + i), 16 * (g.from + i) + len)], r];
    });
  const expect = (s: string) => {
    const out = new Uint8Array(16), r = parseCidrInto(s, out);
    return [[...out.subarray(0, (r & CIDR_V6) !== 0 ? 16 : 4)], r];
  };
  pool.begin(2);
  assert.ok(pool.add("10.1.0.0/16") && pool.add("2001:db8::/32"));
  const a = pool.end();
  pool.begin(2);
  assert.ok(pool.add("192.168.0.0/24"));
  assert.equal(pool.add("10.0.0.0/33"), false);
  pool.abort();
  pool.begin(1);
  assert.ok(pool.add("172.16.0.0/12"));
  const b = pool.end();
  pool.begin(5000); // more than a chunk: a chunk of its own
  for (let i = 0; i < 5000; i++) assert.ok(pool.add(`::ffff:10.${i >> 8}.${i & 255}.0/120`));
  const c = pool.end();
  assert.deepEqual(read(a), [expect("10.1.0.0/16"), expect("2001:db8::/32")]);
  assert.deepEqual(read(b), [expect("172.16.0.0/12")]);
  assert.equal(b.from, a.from + 2, "the aborted group's room is reused");
  assert.equal(c.count, 5000);
  assert.deepEqual(read(c)[4999], expect("::ffff:10.19.135.0/120"));
});
