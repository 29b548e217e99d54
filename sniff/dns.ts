/**
 * Reads the addresses a DNS response gives for its question (RFC 1035
 * wire format, UDP payload): for `dns_reverse_mapping`, which remembers
 * which name a client looked up for an address, so that a later flow to
 * that address without a sniffed name (SSH, a game, any protocol that is
 * not TLS, HTTP or QUIC) is matched by domain rules. Pure and bounded;
 * never throws.
 *
 * Only a successful response (QR set, RCODE 0, not truncated) with exactly
 * one question of class IN is read. Every A and AAAA record of its answer
 * section maps to the *question's* name, whatever name the record is owned
 * by: through a CNAME chain (`www.example.com` → `cdn.example.net` → A),
 * the client asked for `www.example.com`, and that is the name its rules
 * are written for.
 *
 * Over TCP (RFC 1035 §4.2.2, RFC 7766) each message follows its 2-byte
 * length: {@linkcode DnsStreamReader} splits one direction of such a
 * connection into messages.
 *
 * @module
 */

import { latin1, normalizeDomain } from "./domain.ts";

/** One address of a response and how long it may be believed. */
export interface DnsAddress {
  /** 4 bytes (A) or 16 (AAAA); a copy. */
  readonly addr: Uint8Array;
  /** The record's TTL, seconds. */
  readonly ttl: number;
}

/** What {@linkcode readDnsAnswers} found. */
export interface DnsAnswers {
  /** The question's name, normalised (lower case, no trailing dot). */
  readonly name: string;
  readonly addresses: DnsAddress[];
}

/** Answer records looked at per response (the rest are ignored). */
export const MAX_DNS_ANSWERS = 64;

const TYPE_A = 1, TYPE_AAAA = 28, CLASS_IN = 1;

/**
 * The question's name and the A / AAAA addresses of a DNS response, or
 * null when `msg` is not a successful response to one IN question, is cut
 * short or malformed, or gives no address.
 */
export function readDnsAnswers(msg: Uint8Array): DnsAnswers | null {
  if (msg.length < 12) return null;
  const flags = (msg[2]! << 8) | msg[3]!;
  // QR = 1 (response), TC = 0, RCODE = 0.
  if ((flags & 0x8000) === 0 || (flags & 0x0200) !== 0 || (flags & 0x000f) !== 0) return null;
  const qd = (msg[4]! << 8) | msg[5]!, an = (msg[6]! << 8) | msg[7]!;
  if (qd !== 1 || an === 0) return null;
  const q = readName(msg, 12);
  if (q === null || q.end + 4 > msg.length) return null;
  if (((msg[q.end + 2]! << 8) | msg[q.end + 3]!) !== CLASS_IN) return null;
  const name = normalizeDomain(q.name);
  if (name === undefined) return null;
  const addresses: DnsAddress[] = [];
  let off = q.end + 4;
  for (let i = 0; i < Math.min(an, MAX_DNS_ANSWERS); i++) {
    const end = skipName(msg, off);
    if (end < 0 || end + 10 > msg.length) break;
    const type = (msg[end]! << 8) | msg[end + 1]!;
    const cls = (msg[end + 2]! << 8) | msg[end + 3]!;
    const ttl = ((msg[end + 4]! << 24) | (msg[end + 5]! << 16) | (msg[end + 6]! << 8) |
      msg[end + 7]!) >>> 0;
    const len = (msg[end + 8]! << 8) | msg[end + 9]!;
    const data = end + 10;
    if (data + len > msg.length) break;
    if (
      cls === CLASS_IN && ((type === TYPE_A && len === 4) || (type === TYPE_AAAA && len === 16))
    ) {
      // RFC 2181 §8: a TTL with the top bit set counts as 0.
      addresses.push({ addr: msg.slice(data, data + len), ttl: ttl > 0x7fffffff ? 0 : ttl });
    }
    off = data + len;
  }
  return addresses.length > 0 ? { name, addresses } : null;
}

/** Messages a {@linkcode DnsStreamReader} reads from one stream before it stops. */
export const MAX_DNS_STREAM_MESSAGES = 64;

/**
 * Splits the bytes of one direction of a DNS-over-TCP connection, as they
 * come in chunks, into messages. It holds at most one message (≤ 65,535
 * bytes, copied only when it spans chunks) and stops for good after
 * {@linkcode MAX_DNS_STREAM_MESSAGES} messages or at a length too short for
 * a DNS header (not DNS), so a long-lived or foreign connection on port 53
 * costs nothing more.
 */
export class DnsStreamReader {
  readonly #len = new Uint8Array(2);
  #lenHave = 0;
  #msg: Uint8Array | null = null;
  #have = 0;
  #count = 0;
  #stopped = false;

  /** Whether it stopped (see the class doc). */
  get stopped(): boolean {
    return this.#stopped;
  }

  /**
   * Reads `chunk`; calls `onMessage` with each message it completes (a view
   * valid during the call). Returns false once stopped.
   */
  push(chunk: Uint8Array, onMessage: (msg: Uint8Array) => void): boolean {
    let i = 0;
    while (!this.#stopped && i < chunk.length) {
      if (this.#msg === null) {
        if (this.#lenHave < 2) {
          this.#len[this.#lenHave++] = chunk[i++]!;
          continue;
        }
        this.#lenHave = 0;
        const len = (this.#len[0]! << 8) | this.#len[1]!;
        if (len < 12) {
          this.#stopped = true;
          break;
        }
        if (chunk.length - i >= len) {
          // Whole in this chunk: no copy.
          i += len;
          this.#delivered(chunk.subarray(i - len, i), onMessage);
          continue;
        }
        this.#msg = new Uint8Array(len);
        this.#have = 0;
      }
      const take = Math.min(this.#msg.length - this.#have, chunk.length - i);
      this.#msg.set(chunk.subarray(i, i + take), this.#have);
      this.#have += take;
      i += take;
      if (this.#have === this.#msg.length) {
        const msg = this.#msg;
        this.#msg = null;
        this.#delivered(msg, onMessage);
      }
    }
    return !this.#stopped;
  }

  #delivered(msg: Uint8Array, onMessage: (msg: Uint8Array) => void): void {
    onMessage(msg);
    if (++this.#count >= MAX_DNS_STREAM_MESSAGES) this.#stopped = true;
  }
}

/** Bounds on a name: labels followed, including compression pointers. */
const MAX_NAME_STEPS = 128;

/**
 * The name at `off` (following compression pointers, each strictly
 * backwards, so no loop) and where it ends in `msg`; null when malformed.
 */
function readName(msg: Uint8Array, off: number): { name: string; end: number } | null {
  let name = "", end = -1, at = off;
  for (let step = 0; step < MAX_NAME_STEPS; step++) {
    if (at >= msg.length) return null;
    const n = msg[at]!;
    if (n === 0) return { name, end: end < 0 ? at + 1 : end };
    if ((n & 0xc0) === 0xc0) {
      if (at + 1 >= msg.length) return null;
      const to = ((n & 0x3f) << 8) | msg[at + 1]!;
      if (to >= at) return null;
      if (end < 0) end = at + 2;
      at = to;
      continue;
    }
    if ((n & 0xc0) !== 0 || at + 1 + n > msg.length) return null;
    name += (name === "" ? "" : ".") + latin1(msg.subarray(at + 1, at + 1 + n));
    if (name.length > 255) return null;
    at += 1 + n;
  }
  return null;
}

/** Where the name at `off` ends (a pointer ends it), or -1 when malformed. */
function skipName(msg: Uint8Array, off: number): number {
  let at = off;
  for (let step = 0; step < MAX_NAME_STEPS; step++) {
    if (at >= msg.length) return -1;
    const n = msg[at]!;
    if (n === 0) return at + 1;
    if ((n & 0xc0) === 0xc0) return at + 2 <= msg.length ? at + 2 : -1;
    if ((n & 0xc0) !== 0) return -1;
    at += 1 + n;
  }
  return -1;
}
