/**
 * The `block` outbound: every dial fails with a {@linkcode BlockedError};
 * the router then refuses (`mode: "reset"`: a TCP RST, or for UDP an ICMP
 * port unreachable from the original destination, see router/udp_plane.ts)
 * or stays silent (`"drop"`: the TCP client is closed, UDP datagrams are
 * dropped).
 *
 * @module
 */

import type { Endpoint } from "../core/types.ts";
import { formatEndpoint } from "../core/ip.ts";

/** How a blocked flow ends: refused (TCP RST / ICMP port unreachable), or a silent close/drop. */
export type BlockMode = "reset" | "drop";

/** A dial was refused by a block outbound; callers branch on `mode`. */
export class BlockedError extends Error {
  /** How the router should end the client side. */
  readonly mode: BlockMode;
  /** Tag of the blocking outbound. */
  readonly tag: string;

  /** Creates the error. */
  constructor(tag: string, mode: BlockMode, dst: string) {
    super(`outbound ${tag}: blocked ${dst}`);
    this.name = "BlockedError";
    this.tag = tag;
    this.mode = mode;
  }
}

/** Config of {@linkcode BlockOutbound}. */
export interface BlockOutboundConfig {
  readonly tag: string;
  /** Default "reset". */
  readonly mode?: BlockMode | undefined;
}

/** An outbound that refuses every flow. */
export class BlockOutbound {
  /** Outbound tag. */
  readonly tag: string;
  /** Outbound type, as in config. */
  readonly type = "block" as const;
  /** Outbound kind (always "block"). */
  readonly kind = "block" as const;
  /** How blocked flows end. */
  readonly mode: BlockMode;

  /** Creates the outbound; throws `TypeError` on an unknown mode. */
  constructor(config: BlockOutboundConfig) {
    const mode = config.mode ?? "reset";
    if (mode !== "reset" && mode !== "drop") {
      throw new TypeError(`outbound ${config.tag}: mode: "${mode}": want "reset" or "drop"`);
    }
    this.tag = config.tag;
    this.mode = mode;
  }

  /** Always rejects with a {@linkcode BlockedError}. */
  dialTcp(dst: Endpoint, _domain?: string, _signal?: AbortSignal): Promise<never> {
    return Promise.reject(new BlockedError(this.tag, this.mode, formatEndpoint(dst)));
  }

  /** Nothing to release. */
  close(): void {}
}
