/**
 * Helpers for the egress-kind end-to-end tests (WireGuard/WARP by mark,
 * OpenVPN by interface, the Xray bridge, REDIRECT mode, live outbound
 * changes), on top of {@linkcode RouterLab}:
 *
 * - {@linkcode wgTunnel}: a real userspace WireGuard tunnel (`wireguard-go`
 *   + `wg`) between the router and the server namespaces, its endpoint over
 *   the lab's router↔server veth.
 * - {@linkcode udpTun}: a real TUN device in each namespace (`tun10` in the
 *   router ns) carried over UDP by `peers/kinds_udp_tun.py`, an OpenVPN
 *   stand-in.
 * - {@linkcode startV2ray}: Debian's v2ray 4.34 with a config of ours;
 *   {@linkcode startDante}, {@linkcode startMicrosocks}: the SOCKS5 servers
 *   (their command lines and configs come from `tests/_peers.ts`).
 * - {@linkcode addAddress}, {@linkcode markRoute}, {@linkcode linkBytes},
 *   {@linkcode waitListening}.
 *
 * Internal to tests/netns (the leading `_`).
 *
 * @module
 */

import type { Lab, LabProcess, Role } from "./harness.ts";
import { peerPath } from "./harness.ts";
import { waitUntil } from "./_router_lab.ts";
import { danteArgv, danteConfig, microsocksArgv } from "../_peers.ts";

/** Runs `ip ARGS` in a namespace; throws on failure. */
export function ip(lab: Lab, ns: Role, args: string[]): Promise<string> {
  return lab.runOk(ns, ["ip", ...args]);
}

/** Adds `addr` (no prefix: /32 or /128) to `dev` in `ns` (IPv6 without DAD). */
export async function addAddress(lab: Lab, ns: Role, addr: string, dev: string): Promise<void> {
  const v6 = addr.includes(":");
  await ip(lab, ns, [
    ...(v6 ? ["-6"] : []),
    "addr",
    "add",
    `${addr}/${v6 ? 128 : 32}`,
    "dev",
    dev,
    ...(v6 ? ["nodad"] : []),
  ]);
}

/**
 * Policy routing of a routing mark in the router ns, both families:
 * `ip rule add pref PREF fwmark MARK lookup TABLE` and
 * `ip route add default dev DEV table TABLE` (the WireGuard/WARP recipe).
 */
export async function markRoute(
  lab: Lab,
  opts: { mark: number; table: number; dev: string; pref: number },
): Promise<void> {
  for (const fam of ["-4", "-6"]) {
    await ip(lab, "router", [
      fam,
      "rule",
      "add",
      "pref",
      String(opts.pref),
      "fwmark",
      String(opts.mark),
      "lookup",
      String(opts.table),
    ]);
    await ip(lab, "router", [
      fam,
      "route",
      "add",
      "default",
      "dev",
      opts.dev,
      "table",
      String(opts.table),
    ]);
  }
}

/**
 * Waits until something listens on TCP `port` in `ns` (at most `timeoutMs`);
 * with `proc`, fails as soon as that process exits.
 */
export async function waitListening(
  lab: Lab,
  ns: Role,
  port: number,
  opts: { proc?: LabProcess; timeoutMs?: number } = {},
): Promise<void> {
  await waitUntil(
    async () => {
      const p = opts.proc;
      if (p?.exited) throw new Error(`${p.argv[0]} exited: ${p.stderr.trim().slice(0, 500)}`);
      const r = await lab.run(ns, ["ss", "-Htln", `sport = :${port}`]);
      return r.stdout.includes(`:${port}`);
    },
    opts.timeoutMs ?? 15_000,
    `a TCP listener on port ${port} in the ${ns} ns`,
  );
}

/** Spawns `argv` in `ns` and waits until it listens on TCP `port` (or exits: an error). */
export async function spawnListening(
  lab: Lab,
  ns: Role,
  argv: string[],
  port: number,
): Promise<LabProcess> {
  const p = lab.spawn(ns, argv);
  await waitListening(lab, ns, port, { proc: p });
  return p;
}

async function linkExists(lab: Lab, ns: Role, dev: string): Promise<boolean> {
  return (await lab.run(ns, ["ip", "link", "show", "dev", dev])).code === 0;
}

/** RX/TX byte and packet counters of an interface (`ip -s -j link`). */
export interface LinkBytes {
  rxBytes: number;
  txBytes: number;
  rxPackets: number;
  txPackets: number;
}

/** Reads the counters of `dev` in `ns`. */
export async function linkBytes(lab: Lab, ns: Role, dev: string): Promise<LinkBytes> {
  const out = await ip(lab, ns, ["-s", "-j", "link", "show", "dev", dev]);
  type S = { bytes: number; packets: number };
  const doc = JSON.parse(out) as { stats64?: { rx?: S; tx?: S } }[];
  const s = doc[0]?.stats64;
  if (!s?.rx || !s.tx) throw new Error(`ip -s -j link show ${dev}: no stats`);
  return {
    rxBytes: s.rx.bytes,
    txBytes: s.tx.bytes,
    rxPackets: s.rx.packets,
    txPackets: s.tx.packets,
  };
}

/** A WireGuard key pair; the private key never appears on a command line. */
export interface WgKey {
  /** Base64 private key. */
  priv: string;
  /** Base64 public key. */
  pub: string;
}

/** `wg genkey`, then `wg pubkey` with the private key on stdin. */
export async function wgKey(lab: Lab): Promise<WgKey> {
  const priv = (await lab.runOk("router", ["wg", "genkey"])).trim();
  const pub = (await lab.runOk("router", ["wg", "pubkey"], { stdin: priv + "\n" })).trim();
  if (!/^[A-Za-z0-9+/]{43}=$/.test(pub)) throw new Error(`wg pubkey: unexpected output`);
  return { priv, pub };
}

/** One end of a {@linkcode WgTunnel}. */
export interface WgEnd {
  ns: Role;
  /** Interface name (unique per host: wireguard-go's UAPI socket is /var/run/wireguard/IF.sock). */
  dev: string;
  addr4: string;
  addr6: string;
  listenPort: number;
}

/** A WireGuard tunnel between the router and server namespaces. */
export interface WgTunnel {
  router: WgEnd;
  server: WgEnd;
  /** The wireguard-go daemons (foreground). */
  procs: LabProcess[];
  /** `wg show DEV transfer` of the router end: bytes received from / sent to the peer. */
  transfer(): Promise<{ rx: number; tx: number }>;
  /** Deletes both links (the daemons exit) and kills the daemons. Idempotent. */
  close(): Promise<void>;
}

/** Options of {@linkcode wgTunnel}. */
export interface WgTunnelOptions {
  /** Interface name prefix, 2 letters; the lab id and `r`/`s` are appended. */
  prefix: string;
  /** Tunnel /30 (v4, first 3 octets, e.g. `10.200.0`) and /126 (v6 prefix, e.g. `fd00:200::`). */
  net4: string;
  net6: string;
  /** UDP port of both ends. */
  port: number;
}

/**
 * Builds a userspace WireGuard tunnel (`wireguard-go -f`, configured by
 * `wg setconf DEV /dev/stdin`) between the router ns (`.1`) and the server
 * ns (`.2`), endpoints on the lab's router↔server veth. Each peer allows
 * every address (0.0.0.0/0, ::/0): one peer per interface. Kernel
 * WireGuard is not available in this kernel.
 */
export async function wgTunnel(lab: Lab, opts: WgTunnelOptions): Promise<WgTunnel> {
  if (!/^[a-z]{2}$/.test(opts.prefix)) throw new TypeError(`prefix: "${opts.prefix}"`);
  const mk = (ns: Role, side: "r" | "s", host: number): WgEnd => ({
    ns,
    dev: `${opts.prefix}${lab.id}${side}`,
    addr4: `${opts.net4}.${host}`,
    addr6: `${opts.net6}${host}`,
    listenPort: opts.port,
  });
  const router = mk("router", "r", 1), server = mk("server", "s", 2);
  const procs: LabProcess[] = [];
  const close = async () => {
    for (const end of [router, server]) {
      if (await linkExists(lab, end.ns, end.dev)) {
        await lab.run(end.ns, ["ip", "link", "del", "dev", end.dev]);
      }
    }
    await Promise.all(procs.map((p) => p.kill()));
  };
  try {
    for (const end of [router, server]) {
      procs.push(lab.spawn(end.ns, ["wireguard-go", "-f", end.dev]));
      await waitUntil(() => linkExists(lab, end.ns, end.dev), 10_000, `${end.dev} to exist`);
    }
    const [kr, ks] = [await wgKey(lab), await wgKey(lab)];
    const a = lab.addrs;
    const conf = (key: WgKey, peer: WgKey, endpoint: string) =>
      [
        "[Interface]",
        `PrivateKey = ${key.priv}`,
        `ListenPort = ${opts.port}`,
        "[Peer]",
        `PublicKey = ${peer.pub}`,
        `Endpoint = ${endpoint}:${opts.port}`,
        "AllowedIPs = 0.0.0.0/0, ::/0",
        "",
      ].join("\n");
    const ends: [WgEnd, WgKey, WgKey, string][] = [
      [router, kr, ks, a.server4],
      [server, ks, kr, a.routerWan4],
    ];
    for (const [end, key, peer, endpoint] of ends) {
      await lab.runOk(end.ns, ["wg", "setconf", end.dev, "/dev/stdin"], {
        stdin: conf(key, peer, endpoint),
      });
      await ip(lab, end.ns, ["addr", "add", `${end.addr4}/30`, "dev", end.dev]);
      await ip(lab, end.ns, ["-6", "addr", "add", `${end.addr6}/126`, "dev", end.dev, "nodad"]);
      await ip(lab, end.ns, ["link", "set", end.dev, "up"]);
    }
  } catch (e) {
    await close();
    throw e;
  }
  return {
    router,
    server,
    procs,
    close,
    async transfer() {
      const out = await lab.runOk("router", ["wg", "show", router.dev, "transfer"]);
      const f = out.trim().split("\t");
      if (f.length !== 3) throw new Error(`wg show ${router.dev} transfer: "${out.trim()}"`);
      return { rx: Number(f[1]), tx: Number(f[2]) };
    },
  };
}

/** A TUN-over-UDP tunnel (see {@linkcode udpTun}). */
export interface UdpTun {
  dev: string;
  router4: string;
  router6: string;
  server4: string;
  server6: string;
  procs: LabProcess[];
  /** Stops both forwarders (their TUN devices vanish). Idempotent. */
  close(): Promise<void>;
}

/**
 * A real TUN device `dev` in the router ns and one of the same name in the
 * server ns, each owned by `peers/kinds_udp_tun.py`, which carries the IP
 * packets over UDP `port` on the lab's router↔server veth (what OpenVPN
 * does, minus the crypto). Addresses `NET4.1/30` ↔ `NET4.2/30` and
 * `NET6 1/126` ↔ `2/126`; MTU 1400 so an encapsulated packet fits the veth.
 */
export async function udpTun(
  lab: Lab,
  opts: { dev: string; net4: string; net6: string; port: number },
): Promise<UdpTun> {
  const a = lab.addrs;
  const t: UdpTun = {
    dev: opts.dev,
    router4: `${opts.net4}.1`,
    router6: `${opts.net6}1`,
    server4: `${opts.net4}.2`,
    server6: `${opts.net6}2`,
    procs: [],
    close: () => Promise.all(t.procs.map((p) => p.kill())).then(() => {}),
  };
  const sides: [Role, string, string, string, string][] = [
    ["router", a.routerWan4, a.server4, t.router4, t.router6],
    ["server", a.server4, a.routerWan4, t.server4, t.server6],
  ];
  try {
    for (const [ns, local, peer, addr4, addr6] of sides) {
      const p = lab.spawn(ns, [
        "python3",
        peerPath("kinds_udp_tun.py"),
        "--tun",
        opts.dev,
        "--local",
        `${local}:${opts.port}`,
        "--peer",
        `${peer}:${opts.port}`,
        "--seconds",
        "300",
      ]);
      t.procs.push(p);
      await p.waitForLine(/^ready$/, 10_000);
      await ip(lab, ns, ["addr", "add", `${addr4}/30`, "dev", opts.dev]);
      await ip(lab, ns, ["-6", "addr", "add", `${addr6}/126`, "dev", opts.dev, "nodad"]);
      await ip(lab, ns, ["link", "set", opts.dev, "mtu", "1400", "up"]);
    }
  } catch (e) {
    await t.close();
    throw e;
  }
  return t;
}

/** Starts `v2ray -config FILE` in `ns` (file written 0600 into `dir`) and waits for `port`. */
export async function startV2ray(
  lab: Lab,
  ns: Role,
  dir: string,
  name: string,
  config: unknown,
  port: number,
): Promise<LabProcess> {
  const path = `${dir}/${name}`;
  await Deno.writeTextFile(path, JSON.stringify(config, null, 2), { mode: 0o600 });
  return await spawnListening(lab, ns, ["v2ray", "-config", path], port);
}

/**
 * Starts Debian's dante-server (`danted`) in the router ns on
 * `127.0.0.1:PORT`, no auth, egress by `external` (default: the router's WAN
 * addresses, v4 and v6); waits until it listens. Files go into `dir`.
 */
export async function startDante(
  lab: Lab,
  dir: string,
  port: number,
  external: readonly string[] = [lab.addrs.routerWan4, lab.addrs.routerWan6],
): Promise<LabProcess> {
  const path = `${dir}/danted-${port}.conf`;
  await Deno.writeTextFile(path, danteConfig(port, external));
  return await spawnListening(lab, "router", danteArgv(path, `${dir}/danted-${port}.pid`), port);
}

/** Starts Debian's `microsocks` in the router ns on `127.0.0.1:PORT`; waits until it listens. */
export function startMicrosocks(lab: Lab, port: number): Promise<LabProcess> {
  return spawnListening(lab, "router", microsocksArgv(port), port);
}
