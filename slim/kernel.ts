/**
 * What the Slim Node needs from the kernel, as an interface so the HTTP
 * handler and the service can be tested with a fake
 * (`kernel_fake.ts`) and run for real with `ip`, `wg`, `wireguard-go` and
 * `nft` (`kernel_linux.ts`).
 *
 * @module
 */

import type { PeerLive, PeerRecord } from "./model.ts";

/** The kernel layer of the Slim Node. */
export interface Kernel {
  /** Names of the `wg-peer-*` interfaces that exist now. */
  listPeerInterfaces(): Promise<string[]>;
  /**
   * Makes interface `wg-peer-{tag}` match `peer`: creates it when missing,
   * sets keys, port, remote peer, addresses, MTU, up/down (from
   * `peer.enabled`), routes to its allowed IPs and forwarding on it.
   */
  applyPeer(peer: PeerRecord): Promise<void>;
  /** Deletes interface `iface`; succeeds when it is already gone. */
  removePeer(iface: string): Promise<void>;
  /** Live state of `iface` (zeros and `exists: false` when it is missing). */
  peerStatus(iface: string): Promise<PeerLive>;
  /** Applies an `nft -f -` script as one transaction. */
  applyRuleset(script: string): Promise<void>;
  /** Checks an `nft -f -` script without applying it (`nft -c`). */
  checkRuleset(script: string): Promise<void>;
}
