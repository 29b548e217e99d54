/**
 * `router run` and `router check`: both load the config through the one
 * `loadConfig()` path that reload uses too.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { ConfigError, type ConfigSource, loadConfig } from "../config/mod.ts";
import { CompileWorker } from "../config/compile_client.ts";
import { sdNotify } from "../ffi/sd_notify.ts";
import { lowerV8HelperPriority } from "../config/thread_priority.ts";
import { createLogger, type Level, LEVELS, type Logger } from "../core/log.ts";
import { fixMmapThreshold } from "../ffi/malloc.ts";
import { getNofileLimit, setNofileLimit } from "../ffi/socket.ts";
import { IpcClient } from "../ipc/client.ts";
import { DEFAULT_TAKEOVER_DRAIN as DEFAULT_DRAIN, MAX_DRAIN_MS } from "../ipc/protocol.ts";
import { IpcServer } from "../ipc/server.ts";
import { parseDuration, parseDurationArg } from "../core/duration.ts";
import { createIpcHandlers } from "../router/ipc_handlers.ts";
import { Router } from "../router/router.ts";
import type { Engine } from "../rules/engine.ts";
import { VERSION } from "../core/version.ts";

const RUN_HELP = `Usage: router run --config FILE [--log-level LEVEL] [--no-ipc]
                  [--replace [--drain T]]

Runs the data plane: TPROXY listeners, sniffing, the rule engine, outbounds
and the IPC socket (ipc.path in the config). SIGHUP reloads the config file,
SIGTERM/SIGINT stop.

Options:
  -c, --config FILE     router config (JSON); see docs/config.md
      --log-level L     override log.level: ${LEVELS.join(", ")}
      --no-ipc          do not open the IPC socket
      --replace         take over from the router running on ipc.path (an upgrade,
                        a restart for an inbound change) without dropping flows:
                        this one opens its listeners beside the old one's, then asks
                        it to stop taking flows; the old one's open TCP flows go on
                        until they end or --drain passes (then it exits)
      --drain T         with --replace: how long the old router's flows may go on
                        (default ${DEFAULT_DRAIN}; 0 closes them at once), e.g. 90s, 1h
  -h, --help            this help
`;

const CHECK_HELP = `Usage: router check --config FILE

Validates a config the way start-up and reload do (rule sets and GeoIP
database included). Exit 0 when valid; otherwise prints every problem with
its field path (e.g. route.rules[3].ip_cidr[0]: ...) and exits 1.
`;

function parse(args: string[]) {
  return parseArgs({
    args,
    options: {
      config: { type: "string", short: "c" },
      help: { type: "boolean", short: "h" },
      "log-level": { type: "string" },
      "no-ipc": { type: "boolean" },
      replace: { type: "boolean" },
      drain: { type: "string" },
    },
    strict: true,
    allowPositionals: false,
  });
}

/** `router check --config FILE` */
export async function runCheckCommand(args: string[]): Promise<number> {
  let values;
  try {
    values = parse(args).values;
    if (
      values["log-level"] !== undefined || values["no-ipc"] || values.replace ||
      values.drain !== undefined
    ) {
      throw new TypeError("check takes only --config");
    }
  } catch (e) {
    console.error(`router check: ${(e as Error).message}\n\n${CHECK_HELP}`);
    return 2;
  }
  if (values.help) {
    console.log(CHECK_HELP);
    return 0;
  }
  if (!values.config) {
    console.error(`router check: --config is required\n\n${CHECK_HELP}`);
    return 2;
  }
  try {
    const { config, engine } = await loadConfig(resolve(values.config));
    console.log(
      `${values.config}: OK (${config.inbounds.length} inbounds, ${config.outbounds.length} outbounds, ${engine.ruleCount} rules, final ${engine.final})`,
    );
    return 0;
  } catch (e) {
    console.error(`${values.config}: invalid\n${(e as Error).message}`);
    return 1;
  }
}

/**
 * Every flow holds two sockets and, while bytes are in flight, splice pipes:
 * the usual soft limit of 1024 fds would cap the router at a few hundred
 * flows. Raise the soft limit to the hard one, as Go programs (sing-box) do.
 */
function raiseFdLimit(logger: Logger): void {
  try {
    const { soft, hard } = getNofileLimit();
    if (soft < hard) setNofileLimit(hard, hard);
    logger.debug("fd limit", { soft: hard, was: soft });
  } catch (e) {
    logger.warn("cannot raise the fd limit", { error: e });
  }
}

/** `router run --config FILE` */
export async function runRunCommand(args: string[]): Promise<number> {
  let values;
  try {
    values = parse(args).values;
  } catch (e) {
    console.error(`router run: ${(e as Error).message}\n\n${RUN_HELP}`);
    return 2;
  }
  if (values.help) {
    console.log(RUN_HELP);
    return 0;
  }
  if (!values.config) {
    console.error(`router run: --config is required\n\n${RUN_HELP}`);
    return 2;
  }
  const levelOverride = values["log-level"];
  if (levelOverride !== undefined && !(LEVELS as readonly string[]).includes(levelOverride)) {
    console.error(`router run: --log-level: "${levelOverride}": expected ${LEVELS.join(", ")}`);
    return 2;
  }
  const configPath = resolve(values.config);
  let drainMs = parseDuration(DEFAULT_DRAIN);
  if (values.drain !== undefined) {
    try {
      if (!values.replace) throw new TypeError("goes with --replace");
      drainMs = parseDurationArg(values.drain, MAX_DRAIN_MS);
    } catch (e) {
      console.error(`router run: --drain: ${values.drain}: ${(e as Error).message}`);
      return 2;
    }
  }
  if (values.replace && values["no-ipc"]) {
    console.error(
      "router run: --replace finds the running router through its IPC socket; drop --no-ipc",
    );
    return 2;
  }
  // Start-up and reloads compile on a worker thread (warm after start-up): no data-plane stall.
  // V8's shared helper threads (concurrent GC and JIT of every isolate) get the config worker's
  // lower priority: the garbage a reload makes is collected there, and the data-plane thread must
  // win the CPU (on 2 vCPUs they made the pings of bench/reload_stall_bench.ts wait 15-30 ms).
  void lowerV8HelperPriority();
  // Before the worker allocates anything: big blocks stay on mmap (ffi/malloc.ts).
  const mallocTuned = fixMmapThreshold();
  let workerLog: Logger | null = null;
  const compiler = new CompileWorker({
    handBack: true,
    onFallback: (e) =>
      workerLog?.warn("config worker failed; compiling on the main thread", { error: e }),
  });
  let loaded;
  try {
    loaded = await compiler.load(configPath);
  } catch (e) {
    compiler.close();
    console.error(
      `router run: ${configPath}: ${e instanceof ConfigError ? "invalid\n" : ""}${
        (e as Error).message
      }`,
    );
    return 1;
  }
  const level = (levelOverride ?? loaded.config.log.level) as Level;
  const logger = createLogger({ level, scope: "router" });
  workerLog = logger;
  raiseFdLimit(logger);
  if (!mallocTuned) logger.debug("malloc: mmap threshold not set (no glibc mallopt)");
  // One router per IPC socket: a second one (without --replace) must not open its listeners
  // beside the first (SO_REUSEPORT would let it) only to fail at the socket.
  const ipcPath = values["no-ipc"] ? null : loaded.config.ipc.path;
  const running = ipcPath === null ? null : await runningRouter(ipcPath);
  if (running && !values.replace) {
    logger.error("a router is already running; stop it, or start this one with --replace", {
      path: ipcPath,
      pid: running.pid,
    });
    await running.client.close();
    compiler.close();
    return 1;
  }
  if (values.replace && !running) {
    logger.warn("--replace: no router answers on the IPC socket; starting as usual", {
      path: ipcPath,
    });
  }
  let router: Router;
  try {
    // Engines a reload replaced give their indexes back to the worker (config/compile_client.ts).
    // SO_REUSEPORT on the listeners: a successor (`--replace`) binds beside them.
    router = Router.start(loaded.config, loaded.engine, {
      logger,
      onEngineRetired: (e) => compiler.retire(e),
      reusePort: ipcPath !== null,
    });
  } catch (e) {
    logger.error("cannot start", { error: e });
    await running?.client.close();
    compiler.close();
    return 1;
  }
  if (running) {
    // Our listeners are up: the old router may stop taking flows now.
    try {
      const r = await running.client.shutdown({ drain_ms: drainMs });
      logger.info("taking over: the running router stops taking flows", {
        pid: r.pid,
        its_flows: r.flows,
        drain_ms: r.drain_ms,
      });
    } catch (e) {
      logger.error("the running router did not hand over; stopping this one", {
        pid: running.pid,
        error: e,
      });
      await router.stop();
      compiler.close();
      return 1;
    } finally {
      await running.client.close();
    }
  }
  /** Why the router stops, and how long its TCP flows may go on (`shutdown` over IPC). */
  const { promise: stopped, resolve: stop } = Promise.withResolvers<
    { why: string; drainMs: number }
  >();
  const ipcOpts = {
    router,
    version: VERSION,
    configPath: configPath as string | null,
    logger,
    load: (source: ConfigSource) => compiler.load(source),
    discard: (engine: Engine) => compiler.retire(engine),
    // Stop listening before the reply: a successor may take the socket path at once.
    onShutdown: async (ms: number) => {
      await ipc?.stopListening();
      stop({ why: "shutdown over IPC", drainMs: ms });
    },
  };
  const handlers = createIpcHandlers(ipcOpts);
  let ipc: IpcServer | null = null;
  if (!values["no-ipc"]) {
    try {
      const ipcCfg = loaded.config.ipc;
      ipc = await IpcServer.listen({
        path: ipcCfg.path,
        mode: ipcCfg.mode,
        ...(ipcCfg.group !== null ? { group: ipcCfg.group } : {}),
        handlers,
        logger,
        replace: running !== null,
      });
      logger.info("ipc listening", { path: ipcCfg.path });
    } catch (e) {
      logger.error("cannot open the IPC socket", { path: loaded.config.ipc.path, error: e });
      await router.stop();
      compiler.close();
      return 1;
    }
  }
  logger.info("started", {
    version: VERSION,
    rules: loaded.engine.ruleCount,
    outbounds: loaded.config.outbounds.length,
  });
  // systemd (Type=notify): routing now. MAINPID names this process: after a takeover (a
  // successor that `router upgrade` started from ExecReload=) systemd supervises the new router.
  notifyReady(logger, loaded.engine.ruleCount);

  let draining = false;
  // A signal stops at once, a drain included.
  const onStop = (sig: Deno.Signal) => () =>
    draining ? void router.stop() : stop({ why: sig, drainMs: 0 });
  const stopHandlers = (["SIGTERM", "SIGINT"] as const).map((s) => [s, onStop(s)] as const);
  for (const [s, h] of stopHandlers) Deno.addSignalListener(s, h);
  const onHup = () => {
    const path = ipcOpts.configPath ?? configPath;
    Promise.resolve(handlers.reload({ path })).then(
      (r) => logger.info("SIGHUP reload done", { rules: r.rules }),
      (e: unknown) => logger.warn("SIGHUP reload failed", { error: e }),
    );
  };
  Deno.addSignalListener("SIGHUP", onHup);
  const { why, drainMs: drain } = await stopped;
  Deno.removeSignalListener("SIGHUP", onHup);
  if (drain > 0) {
    draining = true;
    logger.info("draining: no new flows; open TCP flows go on", {
      reason: why,
      drain_ms: drain,
      flows: router.flows.size,
    });
    const left = await router.drain(drain);
    logger.info("stopping", { reason: why, flows_left: left });
  } else logger.info("stopping", { signal: why });
  for (const [s, h] of stopHandlers) Deno.removeSignalListener(s, h);
  await ipc?.close();
  await router.stop();
  compiler.close();
  return 0;
}

/** Tells systemd (`$NOTIFY_SOCKET`, if set) that this process routes now and is the main one. */
function notifyReady(logger: Logger, rules: number): void {
  try {
    if (sdNotify(`READY=1\nMAINPID=${Deno.pid}\nSTATUS=routing (${rules} rules)`)) {
      logger.debug("told systemd: ready", { pid: Deno.pid });
    }
  } catch (e) {
    logger.warn("cannot notify systemd (NOTIFY_SOCKET)", { error: e });
  }
}

/** The router answering on `path` (its client, still open, and pid), or null. */
async function runningRouter(path: string): Promise<{ client: IpcClient; pid: number } | null> {
  let client: IpcClient;
  try {
    client = await IpcClient.connect(path, { timeoutMs: 5_000 });
  } catch {
    return null; // no socket, or a stale one: the IPC server replaces it
  }
  try {
    return { client, pid: (await client.status()).pid };
  } catch {
    await client.close();
    return null; // not a router: the IPC server refuses the path
  }
}
