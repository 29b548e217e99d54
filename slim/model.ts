/**
 * The Slim Node's records (peers, forwarding rules), how API bodies become
 * them, and how they are shown as JSON. The peer JSON shape is the one the
 * Full Node's peer API shares (see docs/slim.md).
 *
 * @module
 */

import {
  expectArray,
  expectBoolean,
  expectInt,
  expectObject,
  expectString,
  formatPortSpec,
  parseCidr,
  parseHostPort,
  parseKey,
  parsePortSpec,
  parseTag,
  peerInterface,
  type PortSpec,
  rejectUnknown,
  ValidationError,
} from "./validate.ts";

/** A stored peer: one WireGuard interface `wg-peer-{tag}` towards one remote. */
export interface PeerRecord {
  readonly tag: string;
  /** Our private key on this interface. Stored, never returned by the API. */
  readonly privateKey: string;
  /** Our public key on this interface (give it to the remote). */
  readonly publicKey: string;
  /** The remote's public key. */
  readonly peerPublicKey: string;
  /** Optional pre-shared key. Stored, never returned by the API. */
  readonly preSharedKey: string | null;
  readonly listenPort: number;
  /** Our own addresses on the interface (CIDR). */
  readonly address: readonly string[];
  /** What the remote may send from / we route to it (CIDR). */
  readonly allowedIps: readonly string[];
  /** The remote's `host:port`, when known. */
  readonly endpoint: string | null;
  /** Keepalive in seconds; null when off. */
  readonly persistentKeepalive: number | null;
  readonly mtu: number;
  /** Connected (interface up) or not. */
  readonly enabled: boolean;
  readonly createdAt: string;
}

/** Transport protocols a forwarding rule can be narrowed to. */
export const RULE_PROTOCOLS = ["tcp", "udp", "icmp"] as const;
/** A rule protocol. */
export type RuleProtocol = typeof RULE_PROTOCOLS[number];

/** A stored forwarding rule: traffic `from` one peer `to` another is let through. */
export interface RuleRecord {
  readonly id: number;
  readonly from: string;
  readonly to: string;
  /** Also let `to` open connections to `from`. */
  readonly bidirectional: boolean;
  /** Narrow to one protocol; null for any. */
  readonly protocol: RuleProtocol | null;
  /** Destination ports (tcp/udp only); empty for any. */
  readonly ports: readonly PortSpec[];
  readonly comment: string | null;
  readonly createdAt: string;
}

/** A `POST /api/peers` body after validation. */
export interface PeerInput {
  readonly tag: string;
  readonly privateKey: string | null;
  readonly peerPublicKey: string;
  readonly preSharedKey: string | null;
  readonly listenPort: number | null;
  readonly address: readonly string[];
  readonly allowedIps: readonly string[];
  readonly endpoint: string | null;
  readonly persistentKeepalive: number | null;
  readonly mtu: number | null;
  readonly enabled: boolean;
}

/** A `POST /api/forwarding/rules` body after validation. */
export type RuleInput = Omit<RuleRecord, "id" | "createdAt">;

/** Bounds on list sizes in API bodies. */
export const MAX_ADDRESSES = 16;
/** Bounds on allowed IP lists in API bodies. */
export const MAX_ALLOWED_IPS = 256;
/** Bounds on port lists in rules. */
export const MAX_PORTS = 64;

const PEER_FIELDS = [
  "tag",
  "private_key",
  "peer_public_key",
  "pre_shared_key",
  "listen_port",
  "address",
  "allowed_ips",
  "endpoint",
  "persistent_keepalive_interval",
  "mtu",
  "enabled",
] as const;

function optional<T>(
  obj: Record<string, unknown>,
  key: string,
  parse: (field: string, v: unknown) => T,
): T | null {
  const v = obj[key];
  return v === undefined || v === null ? null : parse(key, v);
}

/** Validates a `POST /api/peers` body; errors name the field. */
export function parsePeerInput(body: unknown): PeerInput {
  const o = expectObject("body", body);
  rejectUnknown("", o, PEER_FIELDS);
  if (o.tag === undefined) throw new ValidationError("tag", "required");
  if (o.peer_public_key === undefined) throw new ValidationError("peer_public_key", "required");
  if (o.address === undefined) throw new ValidationError("address", "required");
  if (o.allowed_ips === undefined) throw new ValidationError("allowed_ips", "required");
  const address = expectArray("address", o.address, MAX_ADDRESSES, parseCidr);
  if (address.length === 0) throw new ValidationError("address", "at least one address required");
  const allowedIps = expectArray("allowed_ips", o.allowed_ips, MAX_ALLOWED_IPS, parseCidr);
  return {
    tag: parseTag("tag", o.tag),
    privateKey: optional(o, "private_key", parseKey),
    peerPublicKey: parseKey("peer_public_key", o.peer_public_key),
    preSharedKey: optional(o, "pre_shared_key", parseKey),
    listenPort: optional(o, "listen_port", (f, v) => expectInt(f, v, 1, 65535)),
    address,
    allowedIps,
    endpoint: optional(o, "endpoint", parseHostPort),
    persistentKeepalive: optional(
      o,
      "persistent_keepalive_interval",
      (f, v) => expectInt(f, v, 0, 65535),
    ),
    mtu: optional(o, "mtu", (f, v) => expectInt(f, v, 1280, 9000)),
    enabled: optional(o, "enabled", expectBoolean) ?? true,
  };
}

const RULE_FIELDS = ["from", "to", "bidirectional", "protocol", "ports", "comment"] as const;

/** Validates a `POST /api/forwarding/rules` body; errors name the field. */
export function parseRuleInput(body: unknown): RuleInput {
  const o = expectObject("body", body);
  rejectUnknown("", o, RULE_FIELDS);
  if (o.from === undefined) throw new ValidationError("from", "required");
  if (o.to === undefined) throw new ValidationError("to", "required");
  const from = parseTag("from", o.from);
  const to = parseTag("to", o.to);
  if (from === to) throw new ValidationError("to", 'must differ from "from"');
  const protocol = optional(o, "protocol", (f, v) => {
    const s = expectString(f, v, 16);
    if (!(RULE_PROTOCOLS as readonly string[]).includes(s)) {
      throw new ValidationError(
        f,
        `${JSON.stringify(s)}: expected one of ${RULE_PROTOCOLS.join(", ")}`,
      );
    }
    return s as RuleProtocol;
  });
  const ports = optional(o, "ports", (f, v) => expectArray(f, v, MAX_PORTS, parsePortSpec)) ?? [];
  if (ports.length > 0 && protocol !== "tcp" && protocol !== "udp") {
    throw new ValidationError("ports", 'needs protocol "tcp" or "udp"');
  }
  const comment = optional(o, "comment", (f, v) => {
    const s = expectString(f, v, 128);
    if (!/^[\x20-\x7e]*$/.test(s)) throw new ValidationError(f, "printable ASCII only");
    return s;
  });
  return {
    from,
    to,
    bidirectional: optional(o, "bidirectional", expectBoolean) ?? false,
    protocol,
    ports,
    comment,
  };
}

/** Live state of a peer's interface, read from the kernel. */
export interface PeerLive {
  /** The interface exists. */
  readonly exists: boolean;
  /** The interface is administratively up. */
  readonly up: boolean;
  /** Unix seconds of the latest handshake; null when none yet. */
  readonly latestHandshake: number | null;
  readonly rxBytes: number;
  readonly txBytes: number;
  /** The endpoint WireGuard currently uses (may differ from the configured one). */
  readonly endpoint: string | null;
}

/** The JSON shape of a peer in the API. Secrets are never part of it. */
export function peerToJson(p: PeerRecord, live: PeerLive | null, error: string | null) {
  return {
    tag: p.tag,
    interface: peerInterface(p.tag),
    public_key: p.publicKey,
    peer_public_key: p.peerPublicKey,
    has_pre_shared_key: p.preSharedKey !== null,
    listen_port: p.listenPort,
    address: [...p.address],
    allowed_ips: [...p.allowedIps],
    endpoint: p.endpoint,
    persistent_keepalive_interval: p.persistentKeepalive,
    mtu: p.mtu,
    enabled: p.enabled,
    created_at: p.createdAt,
    status: {
      interface_exists: live?.exists ?? false,
      up: live?.up ?? false,
      latest_handshake: live?.latestHandshake
        ? new Date(live.latestHandshake * 1000).toISOString()
        : null,
      rx_bytes: live?.rxBytes ?? 0,
      tx_bytes: live?.txBytes ?? 0,
      current_endpoint: live?.endpoint ?? null,
      error,
    },
  };
}

/** The JSON shape of a forwarding rule in the API. */
export function ruleToJson(r: RuleRecord, error: string | null) {
  return {
    id: r.id,
    from: r.from,
    to: r.to,
    bidirectional: r.bidirectional,
    protocol: r.protocol,
    ports: r.ports.map(formatPortSpec),
    comment: r.comment,
    created_at: r.createdAt,
    status: { error },
  };
}
