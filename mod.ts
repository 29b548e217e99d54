/**
 * vpn-router as a library: the typed IPC client for a running router, the
 * config loader and rule engine (for offline route tests), and the shared
 * types.
 *
 * @example
 * ```ts
 * import { IpcClient } from "./mod.ts";
 * const client = await IpcClient.connect("/run/vpn-router/router.sock");
 * console.log(await client.status());
 * await client.close();
 * ```
 *
 * @module
 */

export { IpcClient, type IpcClientOptions } from "./ipc/client.ts";
export * from "./ipc/protocol.ts";
export { ConfigError, loadConfig, parseConfig } from "./config/mod.ts";
export type { RouterConfig } from "./config/mod.ts";
export { Engine } from "./rules/engine.ts";
export type { Decision, Endpoint, FlowMeta, Network, SniffedProtocol } from "./core/types.ts";
export { formatEndpoint, formatIp, parseEndpoint, parseIp } from "./core/ip.ts";
export { VERSION } from "./core/version.ts";
