/**
 * An in-memory {@linkcode Kernel} for tests: records what would be applied and
 * fails on demand.
 *
 * @module
 */

import type { Kernel } from "./kernel.ts";
import type { PeerLive, PeerRecord } from "./model.ts";
import { peerInterface } from "./validate.ts";

/** A fake interface: the peer it was configured from and live counters. */
export interface FakeInterface {
  peer: PeerRecord;
  live: PeerLive;
}

/** The fake kernel. Set the `fail*` fields to make calls throw. */
export class FakeKernel implements Kernel {
  /** Interfaces by name. */
  readonly interfaces = new Map<string, FakeInterface>();
  /** The last applied nft script, or null. */
  ruleset: string | null = null;
  /** Every call, as `method arg`, in order. */
  readonly calls: string[] = [];
  /** Tags whose `applyPeer` throws. */
  readonly failPeers = new Set<string>();
  /** When it returns true for a script, apply/check of that script throws. */
  failRuleset: (script: string) => boolean = () => false;

  listPeerInterfaces(): Promise<string[]> {
    this.calls.push("listPeerInterfaces");
    return Promise.resolve([...this.interfaces.keys()]);
  }

  applyPeer(peer: PeerRecord): Promise<void> {
    this.calls.push(`applyPeer ${peer.tag}`);
    if (this.failPeers.has(peer.tag)) {
      return Promise.reject(new Error(`fake: cannot create ${peerInterface(peer.tag)}`));
    }
    const old = this.interfaces.get(peerInterface(peer.tag));
    this.interfaces.set(peerInterface(peer.tag), {
      peer,
      live: {
        exists: true,
        up: peer.enabled,
        latestHandshake: old?.live.latestHandshake ?? null,
        rxBytes: old?.live.rxBytes ?? 0,
        txBytes: old?.live.txBytes ?? 0,
        endpoint: peer.endpoint,
      },
    });
    return Promise.resolve();
  }

  removePeer(iface: string): Promise<void> {
    this.calls.push(`removePeer ${iface}`);
    this.interfaces.delete(iface);
    return Promise.resolve();
  }

  peerStatus(iface: string): Promise<PeerLive> {
    return Promise.resolve(
      this.interfaces.get(iface)?.live ?? {
        exists: false,
        up: false,
        latestHandshake: null,
        rxBytes: 0,
        txBytes: 0,
        endpoint: null,
      },
    );
  }

  applyRuleset(script: string): Promise<void> {
    this.calls.push("applyRuleset");
    if (this.failRuleset(script)) return Promise.reject(new Error("fake: nft rejected the script"));
    this.ruleset = script;
    return Promise.resolve();
  }

  checkRuleset(script: string): Promise<void> {
    this.calls.push("checkRuleset");
    if (this.failRuleset(script)) return Promise.reject(new Error("fake: nft rejected the script"));
    return Promise.resolve();
  }
}
