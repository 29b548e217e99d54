/**
 * Shared types of the data plane. `core/` imports nothing from its siblings,
 * so every other folder can depend on it without cycles.
 *
 * @module
 */

/** Transport protocol of a flow. */
export type Network = "tcp" | "udp";

/** Application protocol found by a sniffer. */
export type SniffedProtocol = "tls" | "http" | "quic";

/**
 * An IP endpoint. `addr` holds the raw address bytes: 4 bytes for IPv4, 16
 * for IPv6. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are normalised to
 * 4 bytes by the inbound before anything else sees them.
 */
export interface Endpoint {
  readonly addr: Uint8Array;
  readonly port: number;
}

/**
 * What the rule engine sees of a flow. Built by the inbound (addresses,
 * mark, DSCP) and completed by the sniffer (domain, protocol).
 */
export interface FlowMeta {
  readonly network: Network;
  /** Tag of the inbound that accepted the flow. */
  readonly inbound: string;
  readonly source: Endpoint;
  readonly destination: Endpoint;
  /** Sniffed server name (TLS/QUIC SNI or HTTP Host), lower-case, no port. */
  domain?: string | undefined;
  protocol?: SniffedProtocol | undefined;
  /** Netfilter mark of the first packet (SO_MARK of the accepted socket / SO_RCVMARK cmsg). */
  mark?: number | undefined;
  /** DSCP of the first packet (0..63), where known. */
  dscp?: number | undefined;
}

/** The rule engine's answer for one flow. */
export interface Decision {
  /** Outbound tag. */
  readonly outbound: string;
  /** Index into `route.rules` of the matching rule, or null when `final` applied. */
  readonly rule: number | null;
}
