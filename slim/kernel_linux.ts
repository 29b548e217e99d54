/**
 * The real {@linkcode Kernel}: `ip`, `wg`, `wireguard-go` and `nft`, each run
 * with an argv array. Private and pre-shared keys reach `wg` through stdin
 * (`wg syncconf <iface> /dev/stdin`), never through argv or a file.
 *
 * @module
 */

import { formatIp } from "../core/ip.ts";
import type { Logger } from "../core/log.ts";
import { CommandError, type CommandRunner, runCommand } from "./command.ts";
import type { Kernel } from "./kernel.ts";
import type { PeerLive, PeerRecord } from "./model.ts";
import { parseCidrValue, PEER_IFACE_PREFIX, peerInterface } from "./validate.ts";
import { parseWgDump } from "./wg_dump.ts";

/** How WireGuard interfaces are created. */
export type WireGuardMode = "auto" | "kernel" | "userspace";

/** Options of {@linkcode LinuxKernel}. */
export interface LinuxKernelOptions {
  logger: Logger;
  /** `auto` tries kernel WireGuard and falls back to `wireguard-go`. */
  mode?: WireGuardMode;
  /** Program paths (looked up in PATH by default). */
  ip?: string;
  wg?: string;
  wireguardGo?: string;
  nft?: string;
  /** Command runner, injectable for tests. */
  run?: CommandRunner;
  /** Writes a sysctl file under /proc/sys; injectable for tests. */
  writeSysctl?: (path: string, value: string) => void;
}

/** Renders the `wg syncconf` text of a peer. Contains secrets: stdin only. */
export function renderWgConf(p: PeerRecord): string {
  const lines = ["[Interface]", `PrivateKey = ${p.privateKey}`, `ListenPort = ${p.listenPort}`];
  lines.push("", "[Peer]", `PublicKey = ${p.peerPublicKey}`);
  if (p.preSharedKey !== null) lines.push(`PresharedKey = ${p.preSharedKey}`);
  if (p.allowedIps.length > 0) lines.push(`AllowedIPs = ${p.allowedIps.join(", ")}`);
  if (p.endpoint !== null) lines.push(`Endpoint = ${p.endpoint}`);
  if (p.persistentKeepalive !== null) {
    lines.push(`PersistentKeepalive = ${p.persistentKeepalive}`);
  }
  return lines.join("\n") + "\n";
}

/** Returns `cidr` with its host bits cleared, as `ip route` wants it. */
export function networkOf(cidr: string): string {
  const { addr, prefix } = parseCidrValue("cidr", cidr);
  const out = addr.slice();
  for (let i = 0; i < out.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    out[i] = out[i]! & ((0xff << (8 - keep)) & 0xff);
  }
  return `${formatIp(out)}/${prefix}`;
}

/** Normalises `ip/prefix` text (e.g. IPv6 zero compression) for comparison. */
export function normalizeCidr(cidr: string): string {
  const { addr, prefix } = parseCidrValue("cidr", cidr);
  return `${formatIp(addr)}/${prefix}`;
}

interface IpLink {
  ifname: string;
  flags?: string[];
}
interface IpAddr {
  addr_info?: { local?: string; prefixlen?: number; scope?: string }[];
}

/** The Linux implementation of {@linkcode Kernel}. */
export class LinuxKernel implements Kernel {
  readonly #log: Logger;
  readonly #mode: WireGuardMode;
  readonly #ip: string;
  readonly #wg: string;
  readonly #wgGo: string;
  readonly #nft: string;
  readonly #run: CommandRunner;
  readonly #writeSysctl: (path: string, value: string) => void;

  constructor(opts: LinuxKernelOptions) {
    this.#log = opts.logger;
    this.#mode = opts.mode ?? "auto";
    this.#ip = opts.ip ?? "ip";
    this.#wg = opts.wg ?? "wg";
    this.#wgGo = opts.wireguardGo ?? "wireguard-go";
    this.#nft = opts.nft ?? "nft";
    this.#run = opts.run ?? runCommand;
    this.#writeSysctl = opts.writeSysctl ?? ((p, v) => Deno.writeTextFileSync(p, v));
  }

  async #links(): Promise<IpLink[]> {
    const { stdout } = await this.#run(this.#ip, ["-j", "link", "show"]);
    return JSON.parse(stdout || "[]") as IpLink[];
  }

  async #link(iface: string): Promise<IpLink | null> {
    return (await this.#links()).find((l) => l.ifname === iface) ?? null;
  }

  async listPeerInterfaces(): Promise<string[]> {
    return (await this.#links()).map((l) => l.ifname).filter((n) =>
      n.startsWith(PEER_IFACE_PREFIX)
    );
  }

  async #create(iface: string): Promise<void> {
    if (this.#mode !== "userspace") {
      try {
        await this.#run(this.#ip, ["link", "add", "dev", iface, "type", "wireguard"]);
        this.#log.info("created kernel WireGuard interface", { iface });
        return;
      } catch (e) {
        if (this.#mode === "kernel") throw e;
        this.#log.debug("kernel WireGuard unavailable, using wireguard-go", { iface, error: e });
      }
    }
    // wireguard-go daemonises: it returns once the tun device and its UAPI
    // socket exist, and keeps forwarding if we restart.
    await this.#run(this.#wgGo, [iface], {
      // wireguard-go passes its environment on to the daemon it forks and
      // appends WG_PROCESS_FOREGROUND=1 without removing ours; LOG_LEVEL
      // would keep the daemon on our stdout/stderr pipes.
      unsetEnv: ["WG_PROCESS_FOREGROUND", "LOG_LEVEL"],
    });
    if (!await this.#link(iface)) throw new Error(`wireguard-go did not create ${iface}`);
    this.#log.info("created wireguard-go interface", { iface });
  }

  async applyPeer(p: PeerRecord): Promise<void> {
    const iface = peerInterface(p.tag);
    if (!await this.#link(iface)) await this.#create(iface);
    await this.#run(this.#wg, ["syncconf", iface, "/dev/stdin"], { stdin: renderWgConf(p) });
    await this.#run(this.#ip, ["link", "set", "dev", iface, "mtu", String(p.mtu)]);
    await this.#syncAddresses(iface, p.address);
    // Forwarding only for packets entering our interfaces, not box-wide.
    this.#writeSysctl(`/proc/sys/net/ipv4/conf/${iface}/forwarding`, "1");
    try {
      this.#writeSysctl(`/proc/sys/net/ipv6/conf/${iface}/forwarding`, "1");
    } catch {
      // IPv6 disabled on this interface: nothing to forward.
    }
    await this.#run(this.#ip, ["link", "set", "dev", iface, p.enabled ? "up" : "down"]);
    if (!p.enabled) return;
    for (const cidr of p.allowedIps) {
      const net = networkOf(cidr);
      if (net.endsWith("/0")) {
        this.#log.warn("not routing a default route to a peer", { iface, cidr });
        continue;
      }
      await this.#run(this.#ip, ["route", "replace", net, "dev", iface]);
    }
  }

  async #syncAddresses(iface: string, want: readonly string[]): Promise<void> {
    const { stdout } = await this.#run(this.#ip, ["-j", "address", "show", "dev", iface]);
    const have = new Set<string>();
    for (const a of (JSON.parse(stdout || "[]") as IpAddr[])[0]?.addr_info ?? []) {
      if (a.local && a.prefixlen !== undefined && a.scope === "global") {
        have.add(normalizeCidr(`${a.local}/${a.prefixlen}`));
      }
    }
    const wanted = new Set(want.map(normalizeCidr));
    for (const cidr of have) {
      if (!wanted.has(cidr)) await this.#run(this.#ip, ["address", "del", cidr, "dev", iface]);
    }
    for (const cidr of wanted) {
      if (!have.has(cidr)) await this.#run(this.#ip, ["address", "add", cidr, "dev", iface]);
    }
  }

  async removePeer(iface: string): Promise<void> {
    if (!await this.#link(iface)) return;
    // For wireguard-go, deleting the tun device makes the daemon exit.
    await this.#run(this.#ip, ["link", "del", "dev", iface]);
  }

  async peerStatus(iface: string): Promise<PeerLive> {
    const link = await this.#link(iface);
    const none = { exists: false, up: false, latestHandshake: null, rxBytes: 0, txBytes: 0 };
    if (!link) return { ...none, endpoint: null };
    const up = link.flags?.includes("UP") ?? false;
    try {
      const { stdout } = await this.#run(this.#wg, ["show", iface, "dump"]);
      const peer = parseWgDump(stdout).peers[0];
      return {
        exists: true,
        up,
        latestHandshake: peer?.latestHandshake ?? null,
        rxBytes: peer?.rxBytes ?? 0,
        txBytes: peer?.txBytes ?? 0,
        endpoint: peer?.endpoint ?? null,
      };
    } catch (e) {
      this.#log.warn("cannot read WireGuard state", {
        iface,
        error: e instanceof CommandError ? e.message : e,
      });
      return { ...none, exists: true, up, endpoint: null };
    }
  }

  async applyRuleset(script: string): Promise<void> {
    await this.#run(this.#nft, ["-f", "-"], { stdin: script });
  }

  async checkRuleset(script: string): Promise<void> {
    await this.#run(this.#nft, ["-c", "-f", "-"], { stdin: script });
  }
}
