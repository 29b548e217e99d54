// Privileged (root, netns, nft): the egress kinds of the real `router run`, each through a real
// peer: WireGuard and WARP by routing mark over `wireguard-go` tunnels, OpenVPN by interface over
// a real TUN device (`tun10`, carried over UDP by peers/kinds_udp_tun.py), and the Xray bridge
// through Debian's v2ray 4.34 (SOCKS5 → VLESS over TCP → freedom). Needs wireguard-go,
// wireguard-tools and v2ray. Traffic stays inside the lab's namespaces.
import assert from "node:assert/strict";
import {
  addAddress,
  linkBytes,
  markRoute,
  startV2ray,
  type UdpTun,
  udpTun,
  type WgTunnel,
  wgTunnel,
} from "./_kinds_lab.ts";
import {
  assertAllVerified,
  b64,
  clientHello,
  type FlowResult,
  httpGet,
  MAIN_TS,
  routerLabTest,
  target,
  waitUntil,
} from "./_router_lab.ts";
import { burstThrough, startBurstEcho } from "./_udp_burst.ts";

const UUID = "51c5b094-8216-4700-bef9-dbaeb602dcdc";
const SOCKS_PORT = 37101;
const VLESS_PORT = 37200;
const EGRESS_SETTINGS = new URL("../../xray/examples/egress.settings.json", import.meta.url)
  .pathname;
/** Keepalives/handshakes/ND a tunnel may carry while no flow uses it. */
const NOISE = 1024;

// Destinations reachable only through one tunnel (on the server's lo; no route in the router's
// main table). Third octet 0 never overlaps the lab's 10.R.{1..4}.0/24.
const WG_DST4 = "10.210.0.1", WG_DST6 = "fd00:210::1";
const WARP_DST4 = "10.211.0.1", WARP_DST6 = "fd00:211::1";
/** Routed nowhere: only the domain a SOCKS CONNECT carries can make this flow work. */
const NOWHERE4 = "10.212.0.9";

const sum = (rs: FlowResult[], k: "sent" | "received") => rs.reduce((s, r) => s + r[k], 0);

/** Renders the egress side with the real renderer (`router xray-config`), parsed. */
async function renderEgress(): Promise<Record<string, unknown>> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN_TS, "xray-config", "--side", "egress", "--settings", EGRESS_SETTINGS],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  assert.equal(out.code, 0, dec.decode(out.stderr));
  return JSON.parse(dec.decode(out.stdout)) as Record<string, unknown>;
}

interface XrayInbound {
  tag: string;
  listen: string;
  port: number;
  protocol: string;
  settings: { auth: string; udp: boolean };
}
interface XrayOutbound {
  tag: string;
  protocol: string;
  settings: { vnext: { address: string; port: number; users: { id: string }[] }[] };
  streamSettings: { network: string; security: string };
}

Deno.test("router xray-config --side egress renders a SOCKS5 inbound on 127.0.0.1:37101 and a VLESS outbound", async () => {
  const cfg = await renderEgress();
  const [inb] = cfg.inbounds as XrayInbound[];
  assert.equal((cfg.inbounds as unknown[]).length, 1);
  assert.equal(inb?.protocol, "socks");
  assert.equal(inb?.listen, "127.0.0.1");
  assert.equal(inb?.port, SOCKS_PORT);
  assert.equal(inb?.settings.auth, "noauth");
  const [out] = cfg.outbounds as XrayOutbound[];
  assert.equal(out?.protocol, "vless");
  assert.equal(out?.settings.vnext[0]?.address, "203.0.113.10");
  assert.equal(out?.settings.vnext[0]?.port, 443);
  assert.equal(out?.settings.vnext[0]?.users[0]?.id, UUID);
  assert.equal(out?.streamSettings.network, "xhttp");
  assert.equal(out?.streamSettings.security, "reality");
});

routerLabTest(
  "router egress kinds through real peers: WireGuard/WARP by mark, OpenVPN by a real TUN, Xray via v2ray VLESS",
  async (rl, t) => {
    let wg: WgTunnel | null = null, warp: WgTunnel | null = null, ovpn: UdpTun | null = null;
    try {
      const a = rl.addrs;
      const lab = rl.lab;
      wg = await wgTunnel(lab, { prefix: "wg", net4: "10.200.0", net6: "fd00:200::", port: 51820 });
      warp = await wgTunnel(lab, {
        prefix: "wp",
        net4: "10.201.0",
        net6: "fd00:201::",
        port: 51821,
      });
      for (const d of [WG_DST4, WG_DST6, WARP_DST4, WARP_DST6]) {
        await addAddress(lab, "server", d, "lo");
      }
      await markRoute(lab, { mark: 200, table: 200, dev: wg.router.dev, pref: 50 });
      await markRoute(lab, { mark: 202, table: 202, dev: warp.router.dev, pref: 51 });

      // OpenVPN stand-in: tun10 ↔ UDP ↔ tun10 (server ns). A route to the server's extra
      // addresses by tun10 that loses to the main path (higher metric): only sockets bound to
      // tun10 use it. Replies come back by tun10 while the main route says eth2: no rp_filter.
      ovpn = await udpTun(lab, { dev: "tun10", net4: "10.213.0", net6: "fd00:213::", port: 1194 });
      const net4 = a.extra4[0]!.replace(/\.\d+$/, ".0/24");
      const net6 = a.extra6[0]!.replace(/::\d+$/, "::/64");
      await lab.runOk("router", ["ip", "route", "add", net4, "dev", "tun10", "metric", "100"]);
      await lab.runOk("router", [
        "ip",
        "-6",
        "route",
        "add",
        net6,
        "dev",
        "tun10",
        "metric",
        "4000",
      ]);
      await lab.runOk("router", [
        "sysctl",
        "-qw",
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.default.rp_filter=0",
        "net.ipv4.conf.tun10.rp_filter=0",
      ]);

      // Xray bridge: the router ns runs the rendered egress config with its outbound switched
      // to what v2ray 4.34 speaks (VLESS over plain TCP) and pointed at the server ns.
      const egress = await renderEgress();
      const vless = (egress.outbounds as XrayOutbound[])[0]!;
      vless.settings.vnext[0]!.address = a.server4;
      vless.settings.vnext[0]!.port = VLESS_PORT;
      vless.streamSettings = { network: "tcp", security: "none" };
      egress.log = { loglevel: "info" };
      const v2rayServer = await startV2ray(lab, "server", rl.dir, "v2ray-server.json", {
        log: { loglevel: "info" },
        dns: { hosts: { "video.example.test": a.extra4[2] } },
        inbounds: [{
          listen: a.server4,
          port: VLESS_PORT,
          protocol: "vless",
          settings: { clients: [{ id: UUID }], decryption: "none" },
          streamSettings: { network: "tcp", security: "none" },
        }],
        outbounds: [{ protocol: "freedom", settings: { domainStrategy: "UseIP" } }],
      }, VLESS_PORT);
      await startV2ray(lab, "router", rl.dir, "v2ray-egress.json", egress, SOCKS_PORT);

      await rl.server(["[::]:8080", "[::]:8443", "[::]:9000", "[::]:9100"], "echo");
      await rl.addCounters([
        { name: "eth2_9000", match: 'oifname "eth2" tcp dport 9000' },
        { name: "tun10_9000", match: 'oifname "tun10" tcp dport 9000' },
        { name: "socks_leg", match: `oifname "lo" tcp dport ${SOCKS_PORT} meta mark 255` },
      ]);
      const xray = (tag: string, strategy: "ip" | "sniffed") => ({
        type: "socks",
        tag,
        kind: "xray",
        server: "127.0.0.1",
        server_port: SOCKS_PORT,
        pool: { size: 4 },
        domain_strategy: strategy,
      });
      const router = await rl.startRouter(rl.config({
        outbounds: [
          { type: "direct", tag: "direct" },
          { type: "direct", tag: "wg-us", kind: "wireguard", routing_mark: 200 },
          { type: "direct", tag: "warp", kind: "warp", routing_mark: 202 },
          { type: "direct", tag: "ovpn", kind: "openvpn", bind_interface: "tun10" },
          xray("xray-jp", "sniffed"),
          xray("xray-ip", "ip"),
          { type: "block", tag: "block" },
        ],
        route: {
          final: "direct",
          rules: [
            { domain_suffix: ["wg.example.test"], outbound: "wg-us" },
            { ip_cidr: [`${WG_DST4}/32`, `${WG_DST6}/128`], outbound: "wg-us" },
            { ip_cidr: [`${WARP_DST4}/32`, `${WARP_DST6}/128`], outbound: "warp" },
            { port: [9000], outbound: "ovpn" },
            { domain_suffix: ["video.example.test"], outbound: "xray-jp" },
            { port: [9100], outbound: "xray-ip" },
          ],
        },
      }));
      const echo = (addr: string, port: number, bytes: number) => ({
        target: target(addr, port),
        mode: "echo" as const,
        bytes,
      });

      await t.step("a flow to final direct moves no tunnel's counters", async () => {
        const [w0, p0, o0] = [
          await wg!.transfer(),
          await warp!.transfer(),
          await linkBytes(lab, "router", "tun10"),
        ];
        const res = await rl.flows({
          flows: [echo(a.extra4[1]!, 8080, 256 << 10), echo(a.extra6[1]!, 8080, 256 << 10)],
          concurrency: 2,
        });
        assertAllVerified(res, 2);
        for (const r of res) {
          assert.match(await router.waitFlowLine(r), / outbound=direct rule=final$/);
        }
        const [w1, p1, o1] = [
          await wg!.transfer(),
          await warp!.transfer(),
          await linkBytes(lab, "router", "tun10"),
        ];
        assert.ok(
          w1.tx - w0.tx < NOISE && w1.rx - w0.rx < NOISE,
          `wg moved: ${JSON.stringify([w0, w1])}`,
        );
        assert.ok(
          p1.tx - p0.tx < NOISE && p1.rx - p0.rx < NOISE,
          `warp moved: ${JSON.stringify([p0, p1])}`,
        );
        assert.ok(o1.txBytes - o0.txBytes < NOISE, `tun10 moved: ${JSON.stringify([o0, o1])}`);
      });

      await t.step(
        "wireguard by routing_mark 200: flows by CIDR and by HTTP Host cross the wg tunnel",
        async () => {
          const w0 = await wg!.transfer(), p0 = await warp!.transfer();
          const res = await rl.flows({
            flows: [
              echo(WG_DST4, 8080, 1 << 20),
              echo(WG_DST6, 8080, 1 << 20),
              // By domain: the address is also reachable directly, only the Host picks the tunnel.
              {
                target: target(a.extra4[0]!, 8080),
                mode: "payload",
                payloadB64: b64(httpGet("wg.example.test")),
              },
            ],
            concurrency: 3,
          });
          assertAllVerified(res, 3);
          assert.match(await router.waitFlowLine(res[0]!), / outbound=wg-us rule=1$/);
          assert.match(await router.waitFlowLine(res[1]!), / outbound=wg-us rule=1$/);
          assert.match(
            await router.waitFlowLine(res[2]!),
            / domain=wg\.example\.test protocol=http .*outbound=wg-us rule=0$/,
          );
          const w1 = await wg!.transfer(), p1 = await warp!.transfer();
          assert.ok(
            w1.tx - w0.tx >= sum(res, "sent"),
            `wg tx ${w1.tx - w0.tx} < ${sum(res, "sent")}`,
          );
          assert.ok(
            w1.rx - w0.rx >= sum(res, "received"),
            `wg rx ${w1.rx - w0.rx} < ${sum(res, "received")}`,
          );
          assert.ok(p1.tx - p0.tx < NOISE, "warp carried none of it");
        },
      );

      await t.step("warp by routing_mark 202: flows cross the second tunnel only", async () => {
        const w0 = await wg!.transfer(), p0 = await warp!.transfer();
        const res = await rl.flows({
          flows: [echo(WARP_DST4, 8080, 1 << 20), echo(WARP_DST6, 8080, 1 << 20)],
          concurrency: 2,
        });
        assertAllVerified(res, 2);
        for (const r of res) {
          assert.match(await router.waitFlowLine(r), / outbound=warp rule=2$/);
        }
        const w1 = await wg!.transfer(), p1 = await warp!.transfer();
        assert.ok(p1.tx - p0.tx >= sum(res, "sent"), `warp tx ${p1.tx - p0.tx}`);
        assert.ok(p1.rx - p0.rx >= sum(res, "received"), `warp rx ${p1.rx - p0.rx}`);
        assert.ok(w1.tx - w0.tx < NOISE, "wg carried none of it");
      });

      await t.step("openvpn by bind_interface tun10: flows cross a real TUN device", async () => {
        const o0 = await linkBytes(lab, "router", "tun10");
        const s0 = await linkBytes(lab, "server", "tun10");
        const res = await rl.flows({
          flows: [echo(a.extra4[3]!, 9000, 512 << 10), echo(a.extra6[3]!, 9000, 512 << 10)],
          concurrency: 2,
        });
        assertAllVerified(res, 2);
        for (const r of res) {
          assert.match(await router.waitFlowLine(r), / outbound=ovpn rule=3$/);
        }
        const o1 = await linkBytes(lab, "router", "tun10");
        const s1 = await linkBytes(lab, "server", "tun10");
        assert.ok(
          o1.txBytes - o0.txBytes >= sum(res, "sent"),
          `tun10 tx ${o1.txBytes - o0.txBytes}`,
        );
        assert.ok(
          o1.rxBytes - o0.rxBytes >= sum(res, "received"),
          `tun10 rx ${o1.rxBytes - o0.rxBytes}`,
        );
        assert.ok(s1.rxBytes - s0.rxBytes >= sum(res, "sent"), "the server's TUN received them");
        assert.ok(await rl.packets("tun10_9000") > 0);
        assert.equal(await rl.packets("eth2_9000"), 0, "none took the main route");
      });

      await t.step(
        "openvpn: UDP bursts cross the TUN intact (batched sends: the kernel splits a GSO send before the TUN), v4 and v6",
        async () => {
          const o0 = await linkBytes(lab, "router", "tun10");
          let bytes = 0;
          for (const addr of [a.extra4[3]!, a.extra6[3]!]) {
            const at = addr.includes(":") ? `[${addr}]:9000` : `${addr}:9000`;
            const echo = await startBurstEcho(lab, at);
            const since = router.lines.length;
            const st = await burstThrough(lab, at, 2000);
            bytes += st.bytes;
            assert.match(
              await router.waitUdpSessionLine(st.local, at, since),
              / outbound=ovpn rule=3$/,
            );
            await echo.kill();
          }
          const o1 = await linkBytes(lab, "router", "tun10");
          assert.ok(o1.txBytes - o0.txBytes >= bytes, "every datagram echoed crossed tun10");
        },
      );

      await t.step(
        "xray by SOCKS5 → v2ray VLESS: bulk echo both ways (domain_strategy ip), v4 and v6",
        async () => {
          const leg = await rl.packets("socks_leg");
          const res = await rl.flows({
            flows: [echo(a.extra4[0]!, 9100, 1 << 20), echo(a.extra6[0]!, 9100, 1 << 20)],
            concurrency: 2,
          });
          assertAllVerified(res, 2);
          for (const r of res) {
            assert.match(await router.waitFlowLine(r), / outbound=xray-ip rule=5$/);
          }
          assert.ok(await rl.packets("socks_leg") > leg, "router→v2ray leg on lo, mark 255");
          const pattern = new RegExp(`${a.extra4[0]!.replaceAll(".", "\\.")}:9100`);
          await waitUntil(
            () => v2rayServer.lines.some((l) => pattern.test(l)),
            5000,
            "the VLESS server to log the v4 destination",
          );
        },
      );

      await t.step(
        "xray with domain_strategy sniffed: the CONNECT carries the TLS SNI; the VLESS server resolves it",
        async () => {
          const hello = clientHello("video.example.test");
          const res = await rl.flows({
            flows: [{ target: target(NOWHERE4, 8443), mode: "payload", payloadB64: b64(hello) }],
          });
          assertAllVerified(res, 1);
          assert.equal(res[0]!.received, hello.length);
          assert.match(
            await router.waitFlowLine(res[0]!),
            / domain=video\.example\.test protocol=tls .*outbound=xray-jp rule=4$/,
          );
          await waitUntil(
            () => v2rayServer.lines.some((l) => /video\.example\.test:8443/.test(l)),
            5000,
            "the VLESS server to log the sniffed domain",
          );
        },
      );

      assert.equal(router.exited, false, "the router was never restarted");
    } finally {
      await wg?.close();
      await warp?.close();
      await ovpn?.close();
    }
  },
);
