/**
 * Parses `wg show <interface> dump`. The first line carries the interface's
 * private key: it is skipped, never kept.
 *
 * @module
 */

/** One peer line of a dump. */
export interface WgDumpPeer {
  readonly publicKey: string;
  readonly endpoint: string | null;
  readonly allowedIps: readonly string[];
  /** Unix seconds; null when no handshake yet. */
  readonly latestHandshake: number | null;
  readonly rxBytes: number;
  readonly txBytes: number;
  readonly persistentKeepalive: number | null;
}

/** A parsed dump: the interface's listen port and its peers. */
export interface WgDump {
  readonly listenPort: number;
  readonly peers: readonly WgDumpPeer[];
}

function num(field: string, text: string): number {
  if (!/^\d+$/.test(text)) throw new SyntaxError(`Cannot parse wg dump: ${field} "${text}"`);
  return Number(text);
}

/** Parses the text of `wg show <iface> dump` (single-interface form). */
export function parseWgDump(text: string): WgDump {
  const lines = text.split("\n").filter((l) => l.length > 0);
  const head = lines[0]?.split("\t");
  if (!head || head.length !== 4) throw new SyntaxError("Cannot parse wg dump: no interface line");
  const peers = lines.slice(1).map((line, i) => {
    const f = line.split("\t");
    if (f.length !== 8) {
      throw new SyntaxError(`Cannot parse wg dump: peer line ${i + 1} has ${f.length} fields`);
    }
    const hs = num("latest-handshake", f[4]!);
    return {
      publicKey: f[0]!,
      endpoint: f[2] === "(none)" ? null : f[2]!,
      allowedIps: f[3] === "(none)" ? [] : f[3]!.split(","),
      latestHandshake: hs === 0 ? null : hs,
      rxBytes: num("transfer-rx", f[5]!),
      txBytes: num("transfer-tx", f[6]!),
      persistentKeepalive: f[7] === "off" ? null : num("persistent-keepalive", f[7]!),
    };
  });
  return { listenPort: num("listen-port", head[2]!), peers };
}
