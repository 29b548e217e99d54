/**
 * `ip_is_private` / `source_ip_is_private`: an address is private when it is
 * not public in sing-box's sense — unspecified, loopback, RFC 1918 / ULA,
 * link-local unicast, or multicast.
 *
 * @module
 */

/** True for 0.0.0.0, 127/8, 10/8, 172.16/12, 192.168/16, 169.254/16, 224/4, ::, ::1, fc00::/7, fe80::/10, ff00::/8. */
export function isPrivateIp(a: Uint8Array): boolean {
  if (a.length === 4) {
    const b0 = a[0]!, b1 = a[1]!;
    if (b0 === 0 && b1 === 0 && a[2] === 0 && a[3] === 0) return true;
    return b0 === 127 || b0 === 10 || (b0 === 172 && (b1 & 0xf0) === 16) ||
      (b0 === 192 && b1 === 168) || (b0 === 169 && b1 === 254) || (b0 & 0xf0) === 224;
  }
  const b0 = a[0]!;
  if ((b0 & 0xfe) === 0xfc || b0 === 0xff || (b0 === 0xfe && (a[1]! & 0xc0) === 0x80)) return true;
  for (let i = 0; i < 15; i++) if (a[i] !== 0) return false;
  return a[15] === 0 || a[15] === 1;
}
