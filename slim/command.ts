/**
 * Runs external programs with an argv array (never a shell), a bounded run
 * time and optional stdin. Secrets travel through stdin, never argv: argv is
 * world-readable in `/proc/<pid>/cmdline`.
 *
 * @module
 */

/** The outcome of a finished command. */
export interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Options of {@linkcode runCommand}. */
export interface RunOptions {
  /** Text written to the program's stdin (then closed). */
  stdin?: string;
  /** Kill the program after this many milliseconds (default 15 000). */
  timeoutMs?: number;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Environment variables removed from the inherited environment. */
  unsetEnv?: readonly string[];
}

/** A command that exited non-zero, timed out or could not start. */
export class CommandError extends Error {
  override name = "CommandError";
  /** argv[0] and the arguments (never contains secrets by construction). */
  readonly argv: readonly string[];
  /** Exit code, or null when the program did not start or was killed. */
  readonly code: number | null;
  readonly stderr: string;

  constructor(argv: readonly string[], code: number | null, stderr: string, cause?: unknown) {
    const detail = stderr.trim().split("\n").slice(0, 3).join("; ");
    super(
      `${argv.join(" ")} ${code === null ? "failed" : `exited ${code}`}${
        detail ? `: ${detail}` : ""
      }`,
      cause === undefined ? undefined : { cause },
    );
    this.argv = argv;
    this.code = code;
    this.stderr = stderr;
  }
}

/** Runs programs; injected so tests can fake it. */
export type CommandRunner = (
  cmd: string,
  args: readonly string[],
  opts?: RunOptions,
) => Promise<CommandResult>;

function inherited(
  unset: readonly string[],
  extra: Record<string, string> = {},
): Record<string, string> {
  const env = Deno.env.toObject();
  for (const k of unset) delete env[k];
  return { ...env, ...extra };
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/**
 * Runs `cmd` with `args` and returns its output; throws {@linkcode CommandError}
 * when it exits non-zero, cannot start or exceeds its time limit.
 */
export const runCommand: CommandRunner = async (cmd, args, opts = {}) => {
  const argv = [cmd, ...args];
  const signal = AbortSignal.timeout(opts.timeoutMs ?? 15_000);
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(cmd, {
      args: [...args],
      stdin: opts.stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
      signal,
      ...(opts.unsetEnv ? { clearEnv: true, env: inherited(opts.unsetEnv, opts.env) } : {}),
      ...(opts.env && !opts.unsetEnv ? { env: opts.env } : {}),
    }).spawn();
  } catch (e) {
    throw new CommandError(argv, null, e instanceof Error ? e.message : String(e), e);
  }
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    try {
      await w.write(encoder.encode(opts.stdin));
      await w.close();
    } catch {
      // The program exited without reading; its status tells the story.
    }
  }
  const out = await child.output();
  const result = {
    code: out.code,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  };
  if (signal.aborted) throw new CommandError(argv, null, "timed out");
  if (result.code !== 0) throw new CommandError(argv, result.code, result.stderr);
  return result;
};
