/**
 * QUIC Initial packet protection (RFC 9001 5, RFC 9369 3.3) over WebCrypto:
 * initial secrets with HKDF built from HMAC-SHA256, AES-128-GCM payload
 * decryption, and the AES-ECB header-protection mask emulated with one block
 * of AES-CBC under a zero IV.
 *
 * @module
 */

/** Parameters that differ between QUIC versions for Initial packets. */
export interface QuicVersionParams {
  readonly version: number;
  readonly salt: Uint8Array;
  /** HKDF labels for the packet key, IV and header-protection key. */
  readonly keyLabel: string;
  readonly ivLabel: string;
  readonly hpLabel: string;
  /** Long-header packet type bits of an Initial packet. */
  readonly initialType: number;
  /** Long-header packet type bits of a Retry packet (no Length field). */
  readonly retryType: number;
}

function hex(s: string): Uint8Array {
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/** QUIC v1 (RFC 9000 / RFC 9001 5.2). */
export const QUIC_V1: QuicVersionParams = Object.freeze({
  version: 0x00000001,
  salt: hex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a"),
  keyLabel: "quic key",
  ivLabel: "quic iv",
  hpLabel: "quic hp",
  initialType: 0b00,
  retryType: 0b11,
});

/** QUIC v2 (RFC 9369 3). */
export const QUIC_V2: QuicVersionParams = Object.freeze({
  version: 0x6b3343cf,
  salt: hex("0dede3def700a6db819381be6e269dcbf9bd2ed9"),
  keyLabel: "quicv2 key",
  ivLabel: "quicv2 iv",
  hpLabel: "quicv2 hp",
  initialType: 0b01,
  retryType: 0b00,
});

/** Versions whose Initial packets can be decrypted, by version number. */
export const QUIC_VERSIONS: ReadonlyMap<number, QuicVersionParams> = new Map([
  [QUIC_V1.version, QUIC_V1],
  [QUIC_V2.version, QUIC_V2],
]);

const encoder = new TextEncoder();

function buf(b: Uint8Array): Uint8Array<ArrayBuffer> {
  return b.buffer instanceof ArrayBuffer ? b as Uint8Array<ArrayBuffer> : new Uint8Array(b);
}

function hmacKey(key: Uint8Array): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", buf(key), { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
  ]);
}

async function hmacSha256(key: CryptoKey, data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.sign("HMAC", key, buf(data)));
}

/** HKDF-Extract with SHA-256: HMAC(salt, ikm). */
export async function hkdfExtract(salt: Uint8Array, ikm: Uint8Array): Promise<Uint8Array> {
  return hmacSha256(await hmacKey(salt), ikm);
}

/**
 * HKDF-Expand-Label of TLS 1.3 (RFC 8446 7.1) with SHA-256 and an empty
 * context, for `length` ≤ 32 (one HMAC block). `secret` may be a key already
 * imported for HMAC-SHA256, to expand several labels from one import.
 */
export async function hkdfExpandLabel(
  secret: Uint8Array | CryptoKey,
  label: string,
  length: number,
): Promise<Uint8Array> {
  if (length < 1 || length > 32) throw new RangeError(`hkdfExpandLabel: length ${length} > 32`);
  const full = encoder.encode("tls13 " + label);
  // struct { uint16 length; opaque label<7..255>; opaque context<0..255>; } || 0x01
  const info = new Uint8Array(2 + 1 + full.length + 1 + 1);
  info[0] = length >> 8;
  info[1] = length & 0xff;
  info[2] = full.length;
  info.set(full, 3);
  info[3 + full.length] = 0; // empty context
  info[4 + full.length] = 0x01; // HKDF-Expand counter T(1)
  const key = secret instanceof Uint8Array ? await hmacKey(secret) : secret;
  return (await hmacSha256(key, info)).subarray(0, length);
}

/** Raw client Initial key material for one Destination Connection ID. */
export interface InitialKeyMaterial {
  readonly clientSecret: Uint8Array;
  readonly key: Uint8Array;
  readonly iv: Uint8Array;
  readonly hp: Uint8Array;
}

/** Derives the client Initial secret, key, IV and header-protection key. */
export async function deriveClientInitialMaterial(
  params: QuicVersionParams,
  dcid: Uint8Array,
): Promise<InitialKeyMaterial> {
  const initial = await hkdfExtract(params.salt, dcid);
  const clientSecret = await hkdfExpandLabel(initial, "client in", 32);
  const secretKey = await hmacKey(clientSecret);
  const [key, iv, hp] = await Promise.all([
    hkdfExpandLabel(secretKey, params.keyLabel, 16),
    hkdfExpandLabel(secretKey, params.ivLabel, 12),
    hkdfExpandLabel(secretKey, params.hpLabel, 16),
  ]);
  return { clientSecret, key, iv, hp };
}

/** Imported client Initial keys, ready for packet unprotection. */
export interface InitialKeys {
  readonly aead: CryptoKey;
  readonly iv: Uint8Array;
  readonly hp: CryptoKey;
}

/** Derives and imports the client Initial keys for `dcid`. */
export async function deriveClientInitialKeys(
  params: QuicVersionParams,
  dcid: Uint8Array,
): Promise<InitialKeys> {
  const m = await deriveClientInitialMaterial(params, dcid);
  const [aead, hp] = await Promise.all([
    crypto.subtle.importKey("raw", buf(m.key), { name: "AES-GCM" }, false, ["decrypt"]),
    crypto.subtle.importKey("raw", buf(m.hp), { name: "AES-CBC" }, false, ["encrypt"]),
  ]);
  return { aead, iv: m.iv, hp };
}

const ZERO_IV = new Uint8Array(16);

/**
 * Header-protection mask: AES-ECB(hp, sample) for one 16-byte block, computed
 * as the first block of AES-CBC with a zero IV (CBC's first block is
 * E(k, sample XOR 0)).
 */
export async function headerMask(hp: CryptoKey, sample: Uint8Array): Promise<Uint8Array> {
  const out = await crypto.subtle.encrypt({ name: "AES-CBC", iv: ZERO_IV }, hp, buf(sample));
  return new Uint8Array(out, 0, 16);
}

/**
 * AES-128-GCM decryption of a packet payload (ciphertext with 16-byte tag);
 * null when authentication fails.
 */
export async function decryptPayload(
  keys: InitialKeys,
  packetNumber: number,
  aad: Uint8Array,
  ciphertext: Uint8Array,
): Promise<Uint8Array | null> {
  const nonce = new Uint8Array(keys.iv);
  for (let i = 0; i < 4; i++) nonce[11 - i]! ^= (packetNumber >>> (8 * i)) & 0xff;
  try {
    const out = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: nonce, additionalData: buf(aad), tagLength: 128 },
      keys.aead,
      buf(ciphertext),
    );
    return new Uint8Array(out);
  } catch {
    return null;
  }
}
