import assert from "node:assert/strict";
import { formatIp, parseIp } from "../core/ip.ts";
import {
  DnsStreamReader,
  MAX_DNS_ANSWERS,
  MAX_DNS_STREAM_MESSAGES,
  readDnsAnswers,
} from "./dns.ts";

function name(n: string): number[] {
  const out: number[] = [];
  for (const l of n.split(".")) out.push(l.length, ...new TextEncoder().encode(l));
  return [...out, 0];
}
const u16 = (n: number) => [n >> 8, n & 255];
const u32 = (n: number) => [(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];

interface Rr {
  owner: number[];
  type: number;
  ttl?: number;
  cls?: number;
  data: number[];
}

/** A DNS message: header flags, one question for `q` (type A), then `answers`. */
function message(
  q: string,
  answers: Rr[],
  opts: { flags?: number; qd?: number; qclass?: number } = {},
): Uint8Array {
  return new Uint8Array([
    ...u16(0x1234),
    ...u16(opts.flags ?? 0x8180),
    ...u16(opts.qd ?? 1),
    ...u16(answers.length),
    ...u16(0),
    ...u16(0),
    ...name(q),
    ...u16(1),
    ...u16(opts.qclass ?? 1),
    ...answers.flatMap((a) => [
      ...a.owner,
      ...u16(a.type),
      ...u16(a.cls ?? 1),
      ...u32(a.ttl ?? 300),
      ...u16(a.data.length),
      ...a.data,
    ]),
  ]);
}
const QNAME = [0xc0, 12]; // a pointer to the question's name
const a = (ip: string, ttl = 300): Rr => ({ owner: QNAME, type: 1, ttl, data: [...parseIp(ip)!] });
const aaaa = (ip: string): Rr => ({ owner: QNAME, type: 28, data: [...parseIp(ip)!] });
const shown = (r: ReturnType<typeof readDnsAnswers>) =>
  r && { name: r.name, addresses: r.addresses.map((x) => `${formatIp(x.addr)}/${x.ttl}`) };

Deno.test("readDnsAnswers() maps every A and AAAA of a response to the question's name", () => {
  const r = readDnsAnswers(
    message("WWW.Example.COM", [a("93.184.216.34", 60), aaaa("2001:db8::7")]),
  );
  assert.deepEqual(shown(r), {
    name: "www.example.com",
    addresses: ["93.184.216.34/60", "2001:db8::7/300"],
  });
});

Deno.test("readDnsAnswers(): through a CNAME chain the addresses still map to the name asked for", () => {
  // www.example.com CNAME edge.cdn.example.net; edge.cdn.example.net (compressed) A 192.0.2.9.
  const question = 12;
  const cnameData = name("edge.cdn.example.net");
  const msg = message("www.example.com", [
    { owner: [0xc0, question], type: 5, data: cnameData },
  ]);
  // The CNAME's rdata starts after: header 12 + question + owner 2 + type/class/ttl/len 10.
  const target = 12 + name("www.example.com").length + 4 + 2 + 10;
  const withA = new Uint8Array([
    ...msg.slice(0, 6),
    ...u16(2),
    ...msg.slice(8),
    0xc0,
    target,
    ...u16(1),
    ...u16(1),
    ...u32(30),
    ...u16(4),
    192,
    0,
    2,
    9,
  ]);
  assert.deepEqual(shown(readDnsAnswers(withA)), {
    name: "www.example.com",
    addresses: ["192.0.2.9/30"],
  });
});

Deno.test("readDnsAnswers() reads only successful responses to one IN question", () => {
  const ok = [a("192.0.2.1")];
  assert.equal(readDnsAnswers(message("x.example", ok, { flags: 0x0100 })), null, "a query");
  assert.equal(readDnsAnswers(message("x.example", ok, { flags: 0x8183 })), null, "NXDOMAIN");
  assert.equal(readDnsAnswers(message("x.example", ok, { flags: 0x8380 })), null, "truncated");
  assert.equal(readDnsAnswers(message("x.example", ok, { qd: 2 })), null, "two questions");
  assert.equal(readDnsAnswers(message("x.example", ok, { qclass: 3 })), null, "class CH");
  assert.equal(readDnsAnswers(message("x.example", [])), null, "no answer");
  assert.equal(readDnsAnswers(message("1.2.3.4", ok)), null, "not a host name");
  assert.equal(readDnsAnswers(message("bad_name!.example", ok)), null, "bad characters");
  const chaos = { owner: QNAME, type: 1, cls: 3, data: [1, 2, 3, 4] };
  const short = { owner: QNAME, type: 1, data: [1, 2, 3] };
  assert.equal(readDnsAnswers(message("x.example", [chaos, short])), null, "no IN A of 4 bytes");
});

Deno.test("readDnsAnswers(): TTLs with the top bit count as 0; at most MAX_DNS_ANSWERS records", () => {
  assert.deepEqual(shown(readDnsAnswers(message("x.example", [a("192.0.2.1", 0x80000000)]))), {
    name: "x.example",
    addresses: ["192.0.2.1/0"],
  });
  const many = Array.from({ length: 100 }, (_, i) => a(`10.0.${i >> 8}.${i & 255}`));
  assert.equal(readDnsAnswers(message("x.example", many))!.addresses.length, MAX_DNS_ANSWERS);
});

Deno.test("readDnsAnswers() survives cut, looping and random messages", () => {
  const full = message("www.example.com", [a("192.0.2.1"), aaaa("2001:db8::1")]);
  for (let n = 0; n < full.length; n++) {
    const r = readDnsAnswers(full.subarray(0, n));
    // Cut inside the last record: the first may still be read.
    if (r !== null) assert.deepEqual(shown(r)!.addresses, ["192.0.2.1/300"], `cut at ${n}`);
  }
  // A question name that points at itself, or forward.
  const loop = message("x.example", [a("192.0.2.1")]);
  loop.set([0xc0, 12], 12);
  assert.equal(readDnsAnswers(loop), null);
  loop.set([0xc0, 40], 12);
  assert.equal(readDnsAnswers(loop), null);
  // Owner names that loop are skipped as malformed, not followed.
  const badOwner = message("x.example", [{ owner: [0x80, 1], type: 1, data: [1, 2, 3, 4] }]);
  assert.equal(readDnsAnswers(badOwner), null);
  let seed = 7;
  const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
  for (let i = 0; i < 20_000; i++) {
    const m = full.slice();
    for (let k = 0; k < 1 + (i % 6); k++) m[rand() % m.length] = rand();
    readDnsAnswers(m); // must not throw
    readDnsAnswers(new Uint8Array(Array.from({ length: rand() % 80 }, rand)));
  }
});

/** `msgs` as one DNS-over-TCP byte stream (each after its 2-byte length). */
function stream(msgs: Uint8Array[]): Uint8Array {
  return new Uint8Array(msgs.flatMap((m) => [...u16(m.length), ...m]));
}

/** Feeds `bytes` to a reader in chunks of the given sizes (cycled); the messages it gave, copied. */
function readStream(bytes: Uint8Array, sizes: number[]): { msgs: Uint8Array[]; open: boolean } {
  const r = new DnsStreamReader();
  const msgs: Uint8Array[] = [];
  let open = true;
  for (let at = 0, k = 0; at < bytes.length; k++) {
    const n = sizes[k % sizes.length]!;
    open = r.push(bytes.subarray(at, at + n), (m) => msgs.push(m.slice()));
    at += n;
  }
  return { msgs, open };
}

Deno.test("DnsStreamReader splits a TCP stream into messages, however it is cut", () => {
  const msgs = [
    message("one.example", [a("192.0.2.1")]),
    message("two.example", [aaaa("2001:db8::2"), a("192.0.2.2")]),
    message("three.example", [a("192.0.2.3")]),
  ];
  const bytes = stream(msgs);
  for (const sizes of [[bytes.length], [1], [2], [3, 7], [msgs[0]!.length + 2], [5, 1, 64]]) {
    const got = readStream(bytes, sizes);
    assert.deepEqual(got.msgs, msgs, `chunks of ${sizes}`);
    assert.equal(got.open, true);
    assert.deepEqual(
      got.msgs.map((m) => readDnsAnswers(m)!.name),
      ["one.example", "two.example", "three.example"],
    );
  }
  // A message cut by the end of the stream is never delivered.
  assert.deepEqual(readStream(bytes.subarray(0, bytes.length - 1), [4]).msgs, msgs.slice(0, 2));
});

Deno.test("DnsStreamReader stops at a length too short for DNS and after MAX_DNS_STREAM_MESSAGES", () => {
  const one = message("x.example", [a("192.0.2.1")]);
  const junk = new Uint8Array([0, 5, 1, 2, 3, 4, 5, ...stream([one])]);
  for (const sizes of [[junk.length], [1], [2]]) {
    const got = readStream(junk, sizes);
    assert.deepEqual(got, { msgs: [], open: false }, `chunks of ${sizes}`);
  }
  const many = stream(Array.from({ length: MAX_DNS_STREAM_MESSAGES + 5 }, () => one));
  const got = readStream(many, [100]);
  assert.equal(got.msgs.length, MAX_DNS_STREAM_MESSAGES);
  assert.equal(got.open, false);
  // Whatever comes, at most one message is held: random streams never throw.
  let seed = 11;
  const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
  for (let i = 0; i < 2_000; i++) {
    const bytes = new Uint8Array(Array.from({ length: rand() * 4 }, rand));
    readStream(bytes, [1 + rand() % 40]);
  }
});
