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

import { Buffer } from "node:buffer";
import { Reader } from "maxmind";
import { formatIp } from "../core/ip.ts";

/** Resolves an address (4 or 16 bytes) to a lower-case country code, or null. */
export interface GeoIpLookup {
  country(addr: Uint8Array): string | null;
}

type Rec = {
  country?: { iso_code?: unknown };
  registered_country?: { iso_code?: unknown };
  country_code?: unknown;
};

/** Opens an mmdb from its bytes; throws a `TypeError` when they are not an mmdb. */
export function openGeoIp(bytes: Uint8Array): GeoIpLookup {
  let reader: { get(ip: string): unknown };
  try {
    reader = new Reader(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  } catch (e) {
    throw new TypeError(`not a MaxMind database: ${(e as Error).message}`, { cause: e });
  }
  const lower = new Map<string, string>();
  return {
    country(addr: Uint8Array): string | null {
      let rec: Rec | string | null;
      try {
        rec = reader.get(formatIp(addr)) as Rec | string | null;
      } catch {
        return null; // e.g. an IPv6 address against an IPv4-only database
      }
      if (rec === null) return null;
      const code = typeof rec === "string"
        ? rec
        : rec.country?.iso_code ?? rec.registered_country?.iso_code ?? rec.country_code;
      if (typeof code !== "string") return null;
      let l = lower.get(code);
      if (l === undefined) lower.set(code, l = code.toLowerCase());
      return l;
    },
  };
}

/** A lookup that knows no address (no database configured). */
export const noGeoIp: GeoIpLookup = { country: () => null };
