/**
 * One logger with levels: per-packet `trace`, per-flow `debug`, lifecycle
 * `info`, problems `warn`/`error`. Lines go to stderr as
 * `2026-01-01T00:00:00.000Z INFO  scope: message key=value`.
 *
 * @module
 */

/** Log levels, most verbose first. */
export const LEVELS = ["trace", "debug", "info", "warn", "error"] as const;
/** A log level name. */
export type Level = typeof LEVELS[number];

/** Structured fields appended to a log line. */
export type Fields = Record<string, unknown>;

/** The logger interface every module receives (injected, never global). */
export interface Logger {
  readonly level: Level;
  enabled(level: Level): boolean;
  trace(msg: string, fields?: Fields): void;
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  /** A logger whose lines carry `scope`. */
  child(scope: string): Logger;
}

/** Options of {@linkcode createLogger}. */
export interface LoggerOptions {
  level?: Level;
  scope?: string;
  /** Where lines go; stderr by default. */
  write?: (line: string) => void;
  /** Clock, injectable for tests. */
  now?: () => Date;
}

const encoder = new TextEncoder();

function formatValue(v: unknown): string {
  if (typeof v === "string") return /[\s"=]/.test(v) || v === "" ? JSON.stringify(v) : v;
  if (v instanceof Error) return JSON.stringify(v.message);
  if (typeof v === "object" && v !== null) return JSON.stringify(v);
  return String(v);
}

/** Creates a logger. */
export function createLogger(opts: LoggerOptions = {}): Logger {
  const level = opts.level ?? "info";
  const min = LEVELS.indexOf(level);
  const write = opts.write ??
    ((line: string) => Deno.stderr.writeSync(encoder.encode(line + "\n")));
  const now = opts.now ?? (() => new Date());
  const scope = opts.scope ?? "";
  const log = (lvl: Level, msg: string, fields?: Fields) => {
    if (LEVELS.indexOf(lvl) < min) return;
    let line = `${now().toISOString()} ${lvl.toUpperCase().padEnd(5)} ${
      scope ? scope + ": " : ""
    }${msg}`;
    if (fields) {
      for (const [k, v] of Object.entries(fields)) {
        if (v !== undefined) line += ` ${k}=${formatValue(v)}`;
      }
    }
    write(line);
  };
  return {
    level,
    enabled: (lvl) => LEVELS.indexOf(lvl) >= min,
    trace: (m, f) => log("trace", m, f),
    debug: (m, f) => log("debug", m, f),
    info: (m, f) => log("info", m, f),
    warn: (m, f) => log("warn", m, f),
    error: (m, f) => log("error", m, f),
    child: (s) => createLogger({ level, write, now, scope: scope ? `${scope}/${s}` : s }),
  };
}

/** A logger that drops everything (tests, benches). */
export const nullLogger: Logger = createLogger({ level: "error", write: () => {} });
