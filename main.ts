/**
 * `router` — the vpn-router Full Node. The only composition root of the
 * router program: it parses the subcommand and hands over to `cli/`.
 *
 * @module
 */

const HELP = `router — transparent-proxy data plane of the vpn-router gateway

Usage: router <command> [options]

Commands:
  run --config FILE        run the data plane (TPROXY inbound, rules, outbounds, IPC);
                           --replace takes over from a running one without dropping flows
  check --config FILE      validate a config; exit 0 if valid, else name the bad fields
  reload [--config FILE]   ask a running router to reload (IPC)
  status [--json]          show a running router's state (IPC; --rules N: most hit rules)
  stop [--drain T]         stop a running router, letting its TCP flows finish (IPC)
  upgrade [--drain T]      restart the running router without dropping flows (new binary,
                           inbound changes): a successor with --replace takes over
  route-test               which outbound and rule a flow would take (IPC or --config)
  doctor                   check the kernel and sysctls TPROXY needs, print fixes
  tproxy-rules             print (or --apply/--remove) our nftables table and ip rules
  xray-config              render the Xray-lite ingress/egress config from settings
  demo                     build a throwaway netns lab and route sample traffic (root)
  version                  print the version

Run 'router <command> --help' for the options of a command.
`;

import { VERSION } from "./core/version.ts";

type Command = (args: string[]) => Promise<number>;

const commands: Record<string, () => Promise<Command>> = {
  run: async () => (await import("./cli/run.ts")).runRunCommand,
  check: async () => (await import("./cli/run.ts")).runCheckCommand,
  reload: async () => (await import("./cli/commands.ts")).runReloadCommand,
  status: async () => (await import("./cli/commands.ts")).runStatusCommand,
  stop: async () => (await import("./cli/commands.ts")).runStopCommand,
  upgrade: async () => (await import("./cli/commands.ts")).runUpgradeCommand,
  "route-test": async () => (await import("./cli/commands.ts")).runRouteTestCommand,
  doctor: async () => (await import("./cli/doctor.ts")).runDoctorCommand,
  "tproxy-rules": async () => (await import("./cli/tproxy_rules.ts")).runTproxyRulesCommand,
  "xray-config": async () => (await import("./cli/xray_config.ts")).runXrayConfigCommand,
  demo: async () => (await import("./cli/demo.ts")).runDemoCommand,
};

/** Entry point: returns the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    console.log(HELP);
    return name === undefined ? 2 : 0;
  }
  if (name === "version" || name === "--version") {
    console.log(`router ${VERSION} (deno ${Deno.version.deno})`);
    return 0;
  }
  const load = commands[name];
  if (!load) {
    console.error(`router: unknown command "${name}"\n\n${HELP}`);
    return 2;
  }
  return await (await load())(rest);
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
