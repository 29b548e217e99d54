/**
 * Protocol sniffers: TLS SNI, HTTP Host and QUIC Initial SNI, plus the TCP
 * peek loop. Every sniffer is pure and bounded and reports "need more data"
 * as a value, never by throwing.
 *
 * @module
 */

export * from "./result.ts";
export * from "./domain.ts";
export * from "./tls.ts";
export * from "./http.ts";
export * from "./quic_crypto.ts";
export * from "./quic.ts";
export * from "./sniff.ts";
