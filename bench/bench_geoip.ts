/**
 * GeoIP database for the benches: the real `@ip-location-db` country
 * database when it is in Deno's npm cache (run `deno cache --no-config
 * --no-lock npm:@ip-location-db/geo-whois-asn-country-mmdb` once), else a
 * generated one (10,000 networks, same format).
 *
 * @module
 */

import { join } from "node:path";
import { openGeoIp } from "../rules/item_geoip.ts";
import type { GeoIpLookup } from "../rules/item_geoip.ts";
import { writeCountryMmdb } from "../tests/reference/mmdb_writer.ts";

const PKG = "@ip-location-db/geo-whois-asn-country-mmdb";

/** Opens the bench GeoIP database and says which one it is. */
export async function benchGeoIp(): Promise<{ geoip: GeoIpLookup; source: string }> {
  try {
    const info = new Deno.Command(Deno.execPath(), { args: ["info", "--json"] }).outputSync();
    const npmCache = JSON.parse(new TextDecoder().decode(info.stdout)).npmCache as string;
    const dir = join(npmCache, "registry.npmjs.org", PKG);
    const versions = [...Deno.readDirSync(dir)].filter((e) => e.isDirectory).map((e) => e.name)
      .sort();
    const path = join(dir, versions.at(-1)!, "geo-whois-asn-country.mmdb");
    return {
      geoip: await openGeoIp(Deno.readFileSync(path)),
      source: `npm:${PKG} (${versions.at(-1)})`,
    };
  } catch {
    const nets: Record<string, string> = {};
    const codes = ["CN", "US", "JP", "DE", "RU", "FR", "GB", "BR"];
    for (let i = 0; i < 10_000; i++) {
      nets[`${1 + (i % 222)}.${(i * 7) % 256}.0.0/16`] = codes[i % codes.length]!;
    }
    return {
      geoip: await openGeoIp(writeCountryMmdb(nets)),
      source: "generated (10,000 networks)",
    };
  }
}
