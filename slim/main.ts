/**
 * The Slim Node program: `slim run --config slim.json`, `slim check
 * --config slim.json`, `slim --help`. The composition root of `slim/`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { createLogger } from "../core/log.ts";
import { createApp } from "./app.ts";
import { loadSlimConfig, readToken, type SlimConfig } from "./config.ts";
import { LinuxKernel } from "./kernel_linux.ts";
import { SlimService } from "./service.ts";
import { Store } from "./store.ts";

/** The `--help` text. */
export const HELP = `slim — a relay that only forwards between WireGuard peers, managed over HTTP.

Usage:
  slim run   --config slim.json   reconcile the kernel with the stored state, serve the API
  slim check --config slim.json   validate the config and the token file, then exit
  slim --help

Config (JSON; every field optional, defaults shown):
  listen "127.0.0.1"   listen_port 8001   token_file "/etc/vpn-router/slim.token"
  state_path "/var/lib/vpn-router/slim.db"   nft_table "vpn_slim"   max_body_bytes 65536
  liveness_probe true   log_level "info"   peers_only true   prune_unknown_interfaces true
  max_peers 250   max_rules 2000
  wireguard { mode "auto"|"kernel"|"userspace", mtu 1420, persistent_keepalive_interval 25,
              listen_port_range [51820, 52819], wireguard_go "wireguard-go", wg "wg" }

API: see GET /api/openapi.json (bearer token required) and docs/slim.md.
`;

function print(text: string): void {
  Deno.stdout.writeSync(new TextEncoder().encode(text.endsWith("\n") ? text : text + "\n"));
}

function printErr(text: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(`slim: ${text}\n`));
}

async function run(cfg: SlimConfig): Promise<number> {
  const log = createLogger({ level: cfg.logLevel, scope: "slim" });
  const token = await readToken(cfg.tokenFile, (m) => log.warn(m));
  const store = new Store(cfg.statePath);
  const kernel = new LinuxKernel({
    logger: log.child("kernel"),
    mode: cfg.wireguard.mode,
    wg: cfg.wireguard.wg,
    wireguardGo: cfg.wireguard.wireguardGo,
  });
  const service = new SlimService({
    store,
    kernel,
    logger: log,
    table: cfg.nftTable,
    peersOnly: cfg.peersOnly,
    defaultMtu: cfg.wireguard.mtu,
    defaultKeepalive: cfg.wireguard.persistentKeepalive,
    listenPortRange: cfg.wireguard.listenPortRange,
    maxPeers: cfg.maxPeers,
    maxRules: cfg.maxRules,
    pruneUnknownInterfaces: cfg.pruneUnknownInterfaces,
  });
  const report = await service.reconcile();
  for (const p of report.problems) {
    log.error("state not applied", { kind: p.kind, id: p.id, error: p.error });
  }
  const app = createApp({
    service,
    token,
    maxBodyBytes: cfg.maxBodyBytes,
    livenessProbe: cfg.livenessProbe,
    logger: log.child("http"),
  });
  const ac = new AbortController();
  const server = Deno.serve({
    hostname: cfg.listen,
    port: cfg.listenPort,
    signal: ac.signal,
    onListen: ({ hostname, port }) => log.info("listening", { hostname, port }),
  }, app.fetch);
  const stop = () => ac.abort();
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  await server.finished;
  Deno.removeSignalListener("SIGTERM", stop);
  Deno.removeSignalListener("SIGINT", stop);
  store.close();
  log.info("stopped (interfaces and nftables table stay in place)");
  return 0;
}

/** Runs the CLI with `args`; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: { config: { type: "string", short: "c" }, help: { type: "boolean", short: "h" } },
      allowPositionals: true,
    });
  } catch (e) {
    printErr((e as Error).message);
    return 2;
  }
  const [cmd, ...rest] = parsed.positionals;
  if (parsed.values.help || cmd === "help") {
    print(HELP);
    return 0;
  }
  if (cmd !== "run" && cmd !== "check") {
    printErr(cmd === undefined ? "missing command (run, check)" : `unknown command "${cmd}"`);
    print(HELP);
    return 2;
  }
  if (rest.length > 0) {
    printErr(`unexpected argument "${rest[0]}"`);
    return 2;
  }
  if (!parsed.values.config) {
    printErr("--config is required");
    return 2;
  }
  try {
    const cfg = await loadSlimConfig(parsed.values.config);
    if (cmd === "check") {
      await readToken(cfg.tokenFile, (m) => printErr(`warning: ${m}`));
      print(`config OK: ${parsed.values.config}\n${JSON.stringify(cfg, null, 2)}`);
      return 0;
    }
    return await run(cfg);
  } catch (e) {
    printErr((e as Error).message);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
