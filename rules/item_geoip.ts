/**
 * `geoip` / `source_geoip`: country codes from a MaxMind-format database
 * (`.mmdb`). The engine asks a {@linkcode GeoIpLookup} lazily, at most once
 * per address per flow, and only when a rule with a GeoIP item is reached.
 *
 * Records are read as GeoLite2 (`country.iso_code`, else
 * `registered_country.iso_code`), ip-location-db (`country_code`) or
 * sing-geoip (a bare string).
 *
 * @module
 */

import { formatIp } from "../core/ip.ts";

/** Resolves an address (4 or 16 bytes) to a lower-case country code, or null. */
export interface GeoIpLookup {
  country(addr: Uint8Array): string | null;
}

interface Metadata {
  readonly nodeCount: number;
  readonly recordSize: number;
  readonly ipVersion: number;
}

type Rec = {
  country?: { iso_code?: unknown };
  registered_country?: { iso_code?: unknown };
  country_code?: unknown;
};

/** Reads one search-tree record (left or right) of `node`. */
type RecordReader = (db: Uint8Array, node: number, right: number) => number;

function recordReader(recordSize: number): RecordReader {
  switch (recordSize) {
    case 24:
      return (db, n, r) => {
        const o = n * 6 + r * 3;
        return (db[o]! << 16) | (db[o + 1]! << 8) | db[o + 2]!;
      };
    case 28:
      return (db, n, r) => {
        const o = n * 7;
        const mid = db[o + 3]!;
        return r === 0
          ? ((mid & 0xf0) << 20) | (db[o]! << 16) | (db[o + 1]! << 8) | db[o + 2]!
          : ((mid & 0x0f) << 24) | (db[o + 4]! << 16) | (db[o + 5]! << 8) | db[o + 6]!;
      };
    case 32:
      return (db, n, r) => {
        const o = n * 8 + r * 4;
        return ((db[o]! << 24) | (db[o + 1]! << 16) | (db[o + 2]! << 8) | db[o + 3]!) >>> 0;
      };
    default:
      throw new TypeError(`unsupported mmdb record size ${recordSize}`);
  }
}

function countryOf(rec: Rec | string | null): string | null {
  if (rec === null) return null;
  const code = typeof rec === "string"
    ? rec
    : rec.country?.iso_code ?? rec.registered_country?.iso_code ?? rec.country_code;
  return typeof code === "string" ? code.toLowerCase() : null;
}

/** Address bits resolved by one table lookup before the tree walk. */
const JUMP_BITS = 16;

/** Jump-table entry not computed yet (no tree position is this large). */
const UNSET = 0xffffffff;

/** What `openGeoIp` needs from `maxmind` and `node:buffer`. */
interface ReaderModule {
  Reader: new (db: Uint8Array) => { get(ip: string): unknown; metadata: Metadata };
  Buffer: { from(b: ArrayBufferLike, offset: number, length: number): Uint8Array };
}

let readerModule: Promise<ReaderModule> | null = null;

/**
 * `maxmind`, loaded on first use: it costs an isolate ~11 MiB of RSS and
 * 2.5 MiB of heap, which a router without GeoIP rules does not pay (in
 * neither of its two isolates). Loading it runs each module's top-level
 * code on the calling thread, the data plane's: at once that stalled a
 * reload bringing the first GeoIP rules by 18–20 ms. The Node compatibility
 * modules it needs are loaded first, one per task (each of the biggest,
 * `node:fs`, `node:process`, the CommonJS loader, took 3–10 ms), so that
 * flows and IPC get the thread in between: the longest stall of that
 * reload is now 4–6 ms (`bench/geoip_stall_bench.ts`), and it takes ~37 ms
 * instead of ~24. Specifiers stay literal, for `deno compile`.
 */
function loadReader(): Promise<ReaderModule> {
  return readerModule ??= (async () => {
    const task = () => new Promise((r) => setTimeout(r, 0));
    const { Buffer } = await import("node:buffer");
    await task();
    await import("node:assert");
    await task();
    await import("node:util");
    await task();
    await import("node:process");
    await task();
    await import("node:stream");
    await task();
    await import("node:fs");
    await task();
    await import("node:module");
    await task();
    const { Reader } = await import("maxmind");
    await task();
    return { Reader, Buffer } as unknown as ReaderModule;
  })().catch((e) => {
    readerModule = null;
    throw e;
  });
}

/**
 * Opens an mmdb from its bytes; rejects with a `TypeError` when they are
 * not an mmdb. Lookups walk the search tree directly over the address bytes
 * (no text formatting); each data record is decoded once, through the
 * `maxmind` reader (loaded on first use: {@linkcode loadReader}), and then
 * cached by its pointer — a country database has only a few hundred
 * distinct records.
 */
export async function openGeoIp(bytes: Uint8Array): Promise<GeoIpLookup> {
  const { Reader, Buffer } = await loadReader();
  let reader: { get(ip: string): unknown; metadata: Metadata };
  try {
    reader = new Reader(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  } catch (e) {
    throw new TypeError(`not a MaxMind database: ${(e as Error).message}`, { cause: e });
  }
  const { nodeCount, recordSize, ipVersion } = reader.metadata;
  const read = recordReader(recordSize);
  const db = bytes;
  // IPv4 addresses live under ::/96 in an IPv6 tree.
  let v4Start = 0;
  if (ipVersion === 6) {
    for (let i = 0; i < 96 && v4Start < nodeCount; i++) v4Start = read(db, v4Start, 0);
  }
  const cache = new Map<number, string | null>();
  // Tree position after the first JUMP_BITS bits, per 16-bit head and
  // family, filled on first use (a record ≥ nodeCount ends the walk early
  // and is kept as is).
  const jump4 = new Uint32Array(1 << JUMP_BITS).fill(UNSET);
  const jump6 = ipVersion === 6 ? new Uint32Array(1 << JUMP_BITS).fill(UNSET) : null;
  return {
    country(addr: Uint8Array): string | null {
      if (addr.length === 16 && jump6 === null) return null;
      const jump = addr.length === 4 ? jump4 : jump6!, head = (addr[0]! << 8) | addr[1]!;
      let node = jump[head]!;
      if (node === UNSET) {
        node = addr.length === 4 ? v4Start : 0;
        for (let i = 0; i < JUMP_BITS && node < nodeCount; i++) {
          node = read(db, node, (addr[i >> 3]! >> (7 - (i & 7))) & 1);
        }
        jump[head] = node;
      }
      const bits = addr.length * 8;
      for (let i = JUMP_BITS; i < bits && node < nodeCount; i++) {
        node = read(db, node, (addr[i >> 3]! >> (7 - (i & 7))) & 1);
      }
      if (node <= nodeCount) return null; // nodeCount: "no data"
      let code = cache.get(node);
      if (code === undefined) {
        code = countryOf(reader.get(formatIp(addr)) as Rec | string | null);
        cache.set(node, code);
      }
      return code;
    },
  };
}

/** A lookup that knows no address (no database configured). */
export const noGeoIp: GeoIpLookup = { country: () => null };
