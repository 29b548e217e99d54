/**
 * The answer every sniffer gives for the bytes seen so far.
 *
 * @module
 */

import type { SniffedProtocol } from "../core/types.ts";

/**
 * Result of a sniffer:
 * - `found`: the protocol is certain; `domain` is the validated, lower-case
 *   server name, or `undefined` when the protocol carries none (no SNI, no
 *   Host, an IP literal, an invalid name, or a message beyond the size bound).
 * - `need_more`: the bytes so far are a prefix of something this sniffer
 *   could recognise; call again with more bytes.
 * - `not_this`: the bytes are not this protocol (or are malformed).
 */
export type SniffResult =
  | { status: "found"; protocol: SniffedProtocol; domain: string | undefined }
  | { status: "need_more" }
  | { status: "not_this" };

/** The shared `need_more` result. */
export const NEED_MORE: SniffResult = Object.freeze({ status: "need_more" });

/** The shared `not_this` result. */
export const NOT_THIS: SniffResult = Object.freeze({ status: "not_this" });

/** Builds a `found` result. */
export function found(protocol: SniffedProtocol, domain: string | undefined): SniffResult {
  return { status: "found", protocol, domain };
}
