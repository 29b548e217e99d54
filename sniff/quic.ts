/**
 * QUIC Initial sniffer: removes Initial packet protection (v1 and v2), reads
 * CRYPTO frames, reassembles the TLS ClientHello across coalesced packets and
 * datagrams, and reports its server name. Bounded; never throws.
 *
 * @module
 */

import {
  decryptPayload,
  deriveClientInitialKeys,
  headerMask,
  type InitialKeys,
  QUIC_VERSIONS,
  type QuicVersionParams,
} from "./quic_crypto.ts";
import { found, NEED_MORE, NOT_THIS, type SniffResult } from "./result.ts";
import { DEFAULT_MAX_HANDSHAKE_BYTES, sniffClientHelloMessage } from "./tls.ts";

/** Options of {@linkcode QuicSniffer}. */
export interface QuicSniffOptions {
  /** Datagrams looked at before giving up. Default 8. */
  maxDatagrams?: number;
  /** Highest CRYPTO stream offset (and buffered bytes) accepted. Default 64 KiB. */
  maxCryptoBytes?: number;
  /** Bound on the ClientHello body, as for TLS. Default 16 KiB. */
  maxHandshakeBytes?: number;
}

/** Default of {@linkcode QuicSniffOptions.maxDatagrams}. */
export const DEFAULT_MAX_DATAGRAMS = 8;
/** Default of {@linkcode QuicSniffOptions.maxCryptoBytes}. */
export const DEFAULT_MAX_CRYPTO_BYTES = 64 * 1024;

const MAX_CID = 20;
const MIN_CLIENT_DCID = 8;
const SAMPLE_LEN = 16;
const TAG_LEN = 16;

/** Reads a QUIC variable-length integer (RFC 9000 16); null past the end. */
export function readVarint(b: Uint8Array, p: number): [value: number, next: number] | null {
  if (p >= b.length) return null;
  const first = b[p]!;
  const len = 1 << (first >> 6);
  if (p + len > b.length) return null;
  let v = first & 0x3f;
  for (let i = 1; i < len; i++) v = v * 256 + b[p + i]!;
  return [v, p + len];
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The long-header fields of one packet within a datagram. */
interface LongPacket {
  readonly start: number;
  readonly end: number;
  readonly params: QuicVersionParams;
  readonly initial: boolean;
  readonly dcid: Uint8Array;
  /** Offset of the (protected) packet number; Initial packets only. */
  readonly pnOffset: number;
}

/**
 * Splits the long-header packets at `off` (RFC 9000 17.2). Returns null at a
 * short header, padding, an unknown version, a Retry or Version Negotiation
 * packet, or a malformed header: nothing after it can be parsed.
 */
function parseLongPacket(d: Uint8Array, off: number): LongPacket | null {
  if (off + 7 > d.length) return null;
  const b0 = d[off]!;
  if ((b0 & 0xc0) !== 0xc0) return null; // short header, padding, or fixed bit clear
  const version = ((d[off + 1]! << 24) | (d[off + 2]! << 16) | (d[off + 3]! << 8) | d[off + 4]!) >>>
    0;
  const params = QUIC_VERSIONS.get(version);
  if (!params) return null;
  const type = (b0 >> 4) & 0x03;
  if (type === params.retryType) return null;
  let p = off + 5;
  const dcil = d[p]!;
  if (dcil > MAX_CID || p + 1 + dcil >= d.length) return null;
  const dcid = d.subarray(p + 1, p + 1 + dcil);
  p += 1 + dcil;
  const scil = d[p]!;
  if (scil > MAX_CID) return null;
  p += 1 + scil;
  const initial = type === params.initialType;
  if (initial) {
    const token = readVarint(d, p);
    if (!token || token[1] + token[0] > d.length) return null;
    p = token[1] + token[0];
  }
  const length = readVarint(d, p);
  if (!length || length[1] + length[0] > d.length) return null;
  return { start: off, end: length[1] + length[0], params, initial, dcid, pnOffset: length[1] };
}

/**
 * Reassembles the CRYPTO stream from frames arriving at any offset, keeping
 * only the contiguous prefix and a bounded list of frames beyond it.
 */
class CryptoStream {
  #buf = new Uint8Array(2048);
  #len = 0;
  #pending: { off: number; data: Uint8Array }[] = [];
  #pendingBytes = 0;
  readonly #max: number;

  constructor(max: number) {
    this.#max = max;
  }

  /** The contiguous bytes from offset 0. */
  get bytes(): Uint8Array {
    return this.#buf.subarray(0, this.#len);
  }

  /** Adds one frame's data; false when a bound is exceeded. */
  add(off: number, data: Uint8Array): boolean {
    if (off + data.length > this.#max) return false;
    if (off + data.length <= this.#len) return true; // duplicate
    if (off > this.#len) {
      this.#pendingBytes += data.length;
      if (this.#pendingBytes > this.#max) return false;
      this.#pending.push({ off, data: data.slice() });
      return true;
    }
    this.#append(data.subarray(this.#len - off));
    for (let progressed = true; progressed;) {
      progressed = false;
      this.#pending = this.#pending.filter((f) => {
        if (f.off > this.#len) return true;
        if (f.off + f.data.length > this.#len) this.#append(f.data.subarray(this.#len - f.off));
        this.#pendingBytes -= f.data.length;
        progressed = true;
        return false;
      });
    }
    return true;
  }

  #append(data: Uint8Array): void {
    const need = this.#len + data.length;
    if (need > this.#buf.length) {
      const grown = new Uint8Array(Math.min(this.#max, Math.max(need, this.#buf.length * 2)));
      grown.set(this.#buf.subarray(0, this.#len));
      this.#buf = grown;
    }
    this.#buf.set(data, this.#len);
    this.#len = need;
  }
}

/** Frame types allowed in Initial packets (RFC 9000 12.4, Table 3). */
const FRAME_PADDING = 0x00;
const FRAME_PING = 0x01;
const FRAME_ACK = 0x02;
const FRAME_ACK_ECN = 0x03;
const FRAME_CRYPTO = 0x06;
const FRAME_CONNECTION_CLOSE = 0x1c;

/**
 * Walks the frames of a decrypted Initial payload, feeding CRYPTO data to
 * `crypto`. Returns "ok", "malformed" (bad encoding or a frame not allowed
 * in Initial packets; the frames before it are kept) or "overflow".
 */
function readFrames(pl: Uint8Array, crypto: CryptoStream): "ok" | "malformed" | "overflow" {
  let p = 0;
  const vi = (): number | null => {
    const r = readVarint(pl, p);
    if (!r) return null;
    p = r[1];
    return r[0];
  };
  while (p < pl.length) {
    const type = vi();
    if (type === null) return "malformed";
    switch (type) {
      case FRAME_PADDING:
        while (p < pl.length && pl[p] === 0) p++;
        break;
      case FRAME_PING:
        break;
      case FRAME_ACK:
      case FRAME_ACK_ECN: {
        // Largest Acknowledged, ACK Delay, ACK Range Count, First ACK Range
        if (vi() === null || vi() === null) return "malformed";
        const ranges = vi();
        if (ranges === null || vi() === null || ranges > pl.length) return "malformed";
        for (let i = 0; i < 2 * ranges; i++) if (vi() === null) return "malformed";
        if (type === FRAME_ACK_ECN) {
          for (let i = 0; i < 3; i++) if (vi() === null) return "malformed";
        }
        break;
      }
      case FRAME_CRYPTO: {
        const off = vi();
        const len = vi();
        if (off === null || len === null || p + len > pl.length) return "malformed";
        if (!crypto.add(off, pl.subarray(p, p + len))) return "overflow";
        p += len;
        break;
      }
      case FRAME_CONNECTION_CLOSE: {
        if (vi() === null || vi() === null) return "malformed";
        const reason = vi();
        if (reason === null || p + reason > pl.length) return "malformed";
        p += reason;
        break;
      }
      default:
        return "malformed";
    }
  }
  return "ok";
}

/**
 * Removes header protection and decrypts one Initial packet; null when it
 * does not authenticate (or is too short to).
 */
async function openInitial(
  d: Uint8Array,
  pkt: LongPacket,
  keys: InitialKeys,
): Promise<Uint8Array | null> {
  const sampleAt = pkt.pnOffset + 4;
  if (sampleAt + SAMPLE_LEN > pkt.end) return null;
  const mask = await headerMask(keys.hp, d.subarray(sampleAt, sampleAt + SAMPLE_LEN));
  const first = d[pkt.start]! ^ (mask[0]! & 0x0f);
  const pnLen = (first & 0x03) + 1;
  if (pkt.pnOffset + pnLen + TAG_LEN > pkt.end) return null;
  const aad = d.slice(pkt.start, pkt.pnOffset + pnLen);
  aad[0] = first;
  let pn = 0;
  for (let i = 0; i < pnLen; i++) {
    const byte = d[pkt.pnOffset + i]! ^ mask[1 + i]!;
    aad[pkt.pnOffset - pkt.start + i] = byte;
    pn = pn * 256 + byte;
  }
  // A client's first Initial packets have small numbers: the truncated
  // number is the full one (RFC 9000 A.3 with no packet received yet).
  return await decryptPayload(keys, pn, aad, d.subarray(pkt.pnOffset + pnLen, pkt.end));
}

/**
 * Sniffs the client Initial packets of one QUIC flow. Push the flow's
 * datagrams in arrival order until the result is `found` or `not_this`; the
 * caller enforces the time limit. Only the first Destination Connection ID
 * seen is followed; its keys are derived once.
 *
 * @example
 * ```ts
 * const s = new QuicSniffer();
 * let r = await s.push(firstDatagram);
 * if (r.status === "need_more") r = await s.push(secondDatagram);
 * ```
 */
export class QuicSniffer {
  readonly #maxDatagrams: number;
  readonly #maxHandshake: number;
  readonly #crypto: CryptoStream;
  #datagrams = 0;
  #result: SniffResult | null = null;
  #dcid: Uint8Array | null = null;
  #params: QuicVersionParams | null = null;
  #keys: Promise<InitialKeys> | null = null;
  #decrypted = false;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(opts: QuicSniffOptions = {}) {
    this.#maxDatagrams = opts.maxDatagrams ?? DEFAULT_MAX_DATAGRAMS;
    this.#maxHandshake = opts.maxHandshakeBytes ?? DEFAULT_MAX_HANDSHAKE_BYTES;
    this.#crypto = new CryptoStream(opts.maxCryptoBytes ?? DEFAULT_MAX_CRYPTO_BYTES);
  }

  /** The final result once reached, else null. */
  get result(): SniffResult | null {
    return this.#result;
  }

  /** Resolves once every datagram pushed so far has been looked at. */
  settled(): Promise<void> {
    return this.#queue.then(() => {});
  }

  /**
   * Feeds one datagram (copied, so the caller may reuse its buffer). Calls
   * are processed in order even when not awaited. Never rejects.
   */
  push(datagram: Uint8Array): Promise<SniffResult> {
    const copy = datagram.slice();
    const next = this.#queue.then(() => this.#pushOne(copy));
    this.#queue = next;
    return next;
  }

  async #pushOne(d: Uint8Array): Promise<SniffResult> {
    if (this.#result) return this.#result;
    this.#datagrams++;
    let r: SniffResult;
    try {
      r = await this.#process(d);
    } catch {
      r = this.#decrypted ? found("quic", undefined) : NOT_THIS; // not expected; never escape
    }
    if (r.status === "need_more" && this.#datagrams >= this.#maxDatagrams) {
      r = this.#decrypted ? found("quic", undefined) : NOT_THIS;
    }
    if (r.status !== "need_more") this.#result = r;
    return r;
  }

  async #process(d: Uint8Array): Promise<SniffResult> {
    let off = 0;
    let sawInitial = false;
    while (off < d.length) {
      const pkt = parseLongPacket(d, off);
      if (!pkt) break;
      off = pkt.end;
      if (!pkt.initial) continue;
      if (this.#dcid === null) {
        // A client's first Initial carries a DCID of at least 8 bytes (RFC 9000 7.2).
        if (pkt.dcid.length < MIN_CLIENT_DCID) return NOT_THIS;
        this.#dcid = pkt.dcid.slice();
        this.#params = pkt.params;
        this.#keys = deriveClientInitialKeys(pkt.params, this.#dcid);
      } else if (pkt.params !== this.#params || !sameBytes(pkt.dcid, this.#dcid)) {
        continue; // another connection ID: not followed
      }
      sawInitial = true;
      const payload = await openInitial(d, pkt, await this.#keys!);
      if (payload === null) {
        if (!this.#decrypted) return NOT_THIS;
        continue; // e.g. a corrupted copy: the other packets may still complete the hello
      }
      this.#decrypted = true;
      const frames = readFrames(payload, this.#crypto);
      if (frames === "overflow") return found("quic", undefined);
    }
    if (this.#dcid === null && off === 0) return NOT_THIS; // first datagram is no QUIC long header
    if (!sawInitial || !this.#decrypted) return NEED_MORE;
    const r = sniffClientHelloMessage(this.#crypto.bytes, "quic", {
      maxHandshakeBytes: this.#maxHandshake,
    });
    // Once a packet authenticated the flow is QUIC, whatever the TLS layer says.
    return r.status === "not_this" ? found("quic", undefined) : r;
  }
}
