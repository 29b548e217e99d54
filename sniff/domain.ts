/**
 * Server-name normalisation shared by the sniffers.
 *
 * @module
 */

/** Longest accepted name, without the trailing dot (RFC 1035). */
export const MAX_DOMAIN_LENGTH = 253;

/** Longest accepted label (RFC 1035). */
const MAX_LABEL_LENGTH = 63;

/**
 * Normalises a server name taken from the wire: lower-cases ASCII, strips one
 * trailing dot, and checks length (≤ 253), label length (1..63) and label
 * characters (`a-z 0-9 - _`; underscore is tolerated because real names carry
 * it). A name whose last label is all digits (an IPv4 literal, or not a host
 * name at all) is rejected. Returns `undefined` for anything invalid.
 *
 * @example
 * ```ts
 * normalizeDomain("WWW.Example.COM."); // "www.example.com"
 * normalizeDomain("1.2.3.4"); // undefined
 * ```
 */
export function normalizeDomain(raw: string): string | undefined {
  let name = raw.endsWith(".") ? raw.slice(0, -1) : raw;
  if (name.length === 0 || name.length > MAX_DOMAIN_LENGTH) return undefined;
  name = name.toLowerCase();
  let labelLen = 0;
  let labelAllDigits = true;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c === 0x2e) { // "."
      if (labelLen === 0) return undefined;
      labelLen = 0;
      labelAllDigits = true;
      continue;
    }
    const digit = c >= 0x30 && c <= 0x39;
    const ok = digit || (c >= 0x61 && c <= 0x7a) || c === 0x2d || c === 0x5f;
    if (!ok) return undefined;
    if (!digit) labelAllDigits = false;
    if (++labelLen > MAX_LABEL_LENGTH) return undefined;
  }
  if (labelLen === 0 || labelAllDigits) return undefined;
  return name;
}

/**
 * Decodes bytes as Latin-1 (one char per byte), so that invalid or non-ASCII
 * bytes survive to {@linkcode normalizeDomain} and get rejected there.
 */
export function latin1(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]!);
  return s;
}
