/**
 * `router reload|status|stop|upgrade|route-test`: the IPC client commands of
 * `cli/ipc_commands.ts`, given the real stdio and the offline route tester
 * (the rule engine compiled from `--config FILE`).
 *
 * @module
 */

import { loadConfig } from "../config/mod.ts";
import { flowFromRouteTest, routeTestResult } from "../ipc/protocol.ts";
import {
  type IpcCommandDeps,
  type RouteTester,
  runReload,
  runRouteTest,
  runStatus,
  runStop,
  runUpgrade,
} from "./ipc_commands.ts";

/** Compiles the config at `path` and answers route tests from it, without a router. */
export async function offlineRouteTester(path: string): Promise<RouteTester> {
  const { engine } = await loadConfig(path);
  return {
    test: (params) => routeTestResult(engine.explain(flowFromRouteTest(params))),
  };
}

function deps(): IpcCommandDeps {
  return { offline: offlineRouteTester, stdout: Deno.stdout, stdin: Deno.stdin.readable };
}

/** `router reload` */
export function runReloadCommand(args: string[]): Promise<number> {
  return runReload(args, deps());
}

/** `router status` */
export function runStatusCommand(args: string[]): Promise<number> {
  return runStatus(args, deps());
}

/** `router stop` */
export function runStopCommand(args: string[]): Promise<number> {
  return runStop(args, deps());
}

/** `router upgrade` */
export function runUpgradeCommand(args: string[]): Promise<number> {
  return runUpgrade(args, deps());
}

/** `router route-test` */
export function runRouteTestCommand(args: string[]): Promise<number> {
  return runRouteTest(args, deps());
}
