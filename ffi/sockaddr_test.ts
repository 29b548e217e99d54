import assert from "node:assert/strict";
import { decodeOriginalDst, decodeSockaddr, encodeSockaddr, encodeSockaddr6 } from "./sockaddr.ts";
import { parseIp } from "../core/ip.ts";

Deno.test("encodeSockaddr() lays out sockaddr_in as family LE, port BE, address", () => {
  const b = encodeSockaddr({ addr: new Uint8Array([10, 1, 2, 3]), port: 0x1f90 });
  assert.deepEqual([...b], [2, 0, 0x1f, 0x90, 10, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0]);
});

Deno.test("encodeSockaddr() lays out sockaddr_in6 with the address at offset 8", () => {
  const b = encodeSockaddr({ addr: parseIp("2001:db8::1")!, port: 443 });
  assert.equal(b.length, 28);
  assert.deepEqual([...b.subarray(0, 8)], [10, 0, 1, 187, 0, 0, 0, 0]);
  assert.deepEqual([...b.subarray(8, 24)], [...parseIp("2001:db8::1")!]);
  assert.deepEqual([...b.subarray(24)], [0, 0, 0, 0]);
});

Deno.test("decodeSockaddr() round-trips both families", () => {
  for (const text of ["192.0.2.7", "2001:db8::42"]) {
    const ep = { addr: parseIp(text)!, port: 65535 };
    assert.deepEqual(decodeSockaddr(encodeSockaddr(ep)), ep);
  }
});

Deno.test("decodeSockaddr() normalises IPv4-mapped IPv6 to 4 bytes", () => {
  const b = encodeSockaddr6({ addr: new Uint8Array([127, 0, 0, 1]), port: 80 });
  assert.equal(b.length, 28);
  assert.deepEqual(decodeSockaddr(b), { addr: new Uint8Array([127, 0, 0, 1]), port: 80 });
});

Deno.test("decodeSockaddr() honours the kernel's length and rejects unknown families", () => {
  const b = new Uint8Array(128);
  b.set(encodeSockaddr({ addr: new Uint8Array([1, 2, 3, 4]), port: 5 }));
  assert.deepEqual(decodeSockaddr(b, 16).port, 5);
  assert.throws(() => decodeSockaddr(new Uint8Array([1, 0, 0, 0]), 4), /unknown family 1/);
  assert.throws(() => decodeSockaddr(new Uint8Array([10, 0, 0, 0]), 4), /need 24/);
});

Deno.test("encodeSockaddr() rejects bad ports and address lengths", () => {
  assert.throws(() => encodeSockaddr({ addr: new Uint8Array(4), port: 65536 }), RangeError);
  assert.throws(() => encodeSockaddr({ addr: new Uint8Array(5), port: 1 }), /5 bytes/);
});

Deno.test("decodeOriginalDst() reads SO_ORIGINAL_DST (sockaddr_in) and IP6T_SO_ORIGINAL_DST bytes", () => {
  // As the kernel writes them for getsockopt(SOL_IP, 80) / getsockopt(SOL_IPV6, 80).
  const v4 = new Uint8Array([2, 0, 0x01, 0xbb, 93, 184, 216, 34, 0, 0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual(decodeOriginalDst(v4), { addr: new Uint8Array([93, 184, 216, 34]), port: 443 });
  const v6 = new Uint8Array(28);
  v6.set([10, 0, 0, 80]);
  v6.set(parseIp("2606:2800::1")!, 8);
  assert.deepEqual(decodeOriginalDst(v6), { addr: parseIp("2606:2800::1")!, port: 80 });
});
