/**
 * The interface every outbound presents to the router, whatever its kind.
 *
 * @module
 */

import type { Endpoint } from "../core/types.ts";
import type { FdStream } from "../ffi/stream.ts";

/** Health of an outbound as the router last saw it. */
export interface OutboundHealth {
  /** `unknown` until the first check or flow. */
  state: "up" | "down" | "unknown";
  /** Message of the last failure, if any. */
  lastError?: string | undefined;
  /** `Date.now()` of the last state change. */
  since?: number | undefined;
}

/** An egress the router can send a TCP flow to. */
export interface Outbound {
  readonly tag: string;
  /** Config `type`: direct, socks or block. */
  readonly type: "direct" | "socks" | "block";
  /** What the outbound stands for: direct, wireguard, warp, openvpn, socks, xray, warp-masque, block. */
  readonly kind: string;
  /**
   * Opens a connection for one flow to `dst`; `domain` is the sniffed name
   * (a SOCKS outbound may send it instead of the IP). Rejects with a clear
   * error on failure; `BlockedError` for block.
   */
  dialTcp(dst: Endpoint, domain: string | undefined, signal?: AbortSignal): Promise<FdStream>;
  /** Current health; `undefined` when the outbound has no notion of it. */
  health?(): OutboundHealth;
  /** Extra state for `outbounds.list` (pool sizes etc.). */
  describe?(): Record<string, unknown>;
  /** Releases pooled connections and timers. Flows already dialled are not touched. */
  close(): void;
}
