import assert from "node:assert/strict";
import { parseIp } from "../core/ip.ts";
import { isPrivateIp } from "./item_private.ts";

Deno.test("isPrivateIp() is true for non-public IPv4 ranges", () => {
  for (
    const ip of [
      "0.0.0.0",
      "127.0.0.1",
      "10.9.8.7",
      "172.16.0.1",
      "172.31.255.255",
      "192.168.1.1",
      "169.254.1.1",
      "224.0.0.1",
      "239.255.255.250",
    ]
  ) assert.equal(isPrivateIp(parseIp(ip)!), true, ip);
});

Deno.test("isPrivateIp() is false for public IPv4 addresses", () => {
  for (
    const ip of ["8.8.8.8", "172.32.0.1", "172.15.0.1", "192.169.0.1", "1.1.1.1", "100.64.0.1"]
  ) {
    assert.equal(isPrivateIp(parseIp(ip)!), false, ip);
  }
});

Deno.test("isPrivateIp() classifies IPv6 addresses", () => {
  for (const ip of ["::", "::1", "fc00::1", "fd12::1", "fe80::1", "ff02::1"]) {
    assert.equal(isPrivateIp(parseIp(ip)!), true, ip);
  }
  for (const ip of ["2001:db8::1", "2400:cb00::1", "::2", "fec0::1"]) {
    assert.equal(isPrivateIp(parseIp(ip)!), false, ip);
  }
});
