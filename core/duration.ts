/**
 * Durations in config: sing-box style strings ("300ms", "5m", "1h30m") or a
 * number of seconds.
 *
 * @module
 */

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Parses a duration to milliseconds. Throws a `SyntaxError` naming the text.
 *
 * @example parseDuration("1m30s") === 90_000
 */
export function parseDuration(value: string | number): number {
  if (typeof value === "number") {
    if (!Number.isFinite(value) || value < 0) {
      throw new RangeError(`Cannot parse duration ${value}: must be a non-negative number`);
    }
    return value * 1000;
  }
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/y;
  let total = 0, pos = 0;
  if (value.length === 0) throw new SyntaxError(`Cannot parse duration "": empty`);
  while (pos < value.length) {
    re.lastIndex = pos;
    const m = re.exec(value);
    if (!m) throw new SyntaxError(`Cannot parse duration "${value}": expected e.g. "300ms", "5m"`);
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    pos = re.lastIndex;
  }
  return total;
}

/**
 * A duration given on the command line: a number of seconds ("90", "1.5")
 * or a duration string ("90s", "10m"), at most `maxMs`. Throws naming the
 * problem (the caller names the flag).
 */
export function parseDurationArg(text: string, maxMs = Infinity): number {
  const ms = parseDuration(/^\d+(\.\d+)?$/.test(text) ? Number(text) : text);
  if (ms > maxMs) throw new RangeError(`at most ${formatLimit(maxMs)}`);
  return ms;
}

function formatLimit(ms: number): string {
  return ms % 3_600_000 === 0
    ? `${ms / 3_600_000}h`
    : ms % 1000 === 0
    ? `${ms / 1000}s`
    : `${ms}ms`;
}
