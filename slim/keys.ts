/**
 * WireGuard keys with WebCrypto X25519: 32-byte keys as base64, the format of
 * `wg genkey` / `wg pubkey`.
 *
 * @module
 */

/** A private/public WireGuard key pair, base64. */
export interface KeyPair {
  readonly privateKey: string;
  readonly publicKey: string;
}

/** DER prefix of a PKCS#8 X25519 private key; the 32 raw bytes follow it. */
const PKCS8_X25519_PREFIX = new Uint8Array([
  0x30,
  0x2e,
  0x02,
  0x01,
  0x00,
  0x30,
  0x05,
  0x06,
  0x03,
  0x2b,
  0x65,
  0x6e,
  0x04,
  0x22,
  0x04,
  0x20,
]);

function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

function fromBase64(text: string): Uint8Array {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function base64UrlToBase64(text: string): string {
  const s = text.replace(/-/g, "+").replace(/_/g, "/");
  return s + "=".repeat((4 - (s.length % 4)) % 4);
}

/** Clamps a Curve25519 scalar as `wg genkey` does. */
function clamp(k: Uint8Array): Uint8Array {
  k[0] = k[0]! & 248;
  k[31] = (k[31]! & 127) | 64;
  return k;
}

/** Generates a new key pair (the private key clamped like `wg genkey`). */
export async function generateKeyPair(): Promise<KeyPair> {
  const kp = await crypto.subtle.generateKey({ name: "X25519" }, true, [
    "deriveBits",
  ]) as CryptoKeyPair;
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", kp.privateKey));
  const raw = clamp(pkcs8.slice(PKCS8_X25519_PREFIX.length));
  // Clamping does not change the public key (X25519 clamps internally).
  return { privateKey: toBase64(raw), publicKey: await publicKeyOf(toBase64(raw)) };
}

/** Derives the public key of a base64 private key, like `wg pubkey`. */
export async function publicKeyOf(privateKey: string): Promise<string> {
  const raw = fromBase64(privateKey);
  if (raw.length !== 32) {
    throw new RangeError("Cannot derive public key: private key is not 32 bytes");
  }
  const der = new Uint8Array(PKCS8_X25519_PREFIX.length + 32);
  der.set(PKCS8_X25519_PREFIX);
  der.set(raw, PKCS8_X25519_PREFIX.length);
  const key = await crypto.subtle.importKey("pkcs8", der, { name: "X25519" }, true, [
    "deriveBits",
  ]);
  const jwk = await crypto.subtle.exportKey("jwk", key);
  if (typeof jwk.x !== "string") throw new TypeError("Cannot derive public key: no x in JWK");
  return base64UrlToBase64(jwk.x);
}
