import assert from "node:assert/strict";
import { join } from "node:path";
import { Buffer } from "node:buffer";
import { Reader } from "maxmind";
import { formatIp, parseIp } from "../core/ip.ts";
import { writeCountryMmdb } from "../tests/reference/mmdb_writer.ts";
import { openGeoIp } from "./item_geoip.ts";

const ip = (s: string) => parseIp(s)!;

Deno.test("openGeoIp() answers lower-case country codes from an mmdb (hermetic, generated)", async () => {
  const geo = await openGeoIp(writeCountryMmdb({
    "1.2.0.0/16": "CN",
    "1.2.3.0/24": "AU",
    "8.8.8.0/24": "US",
    "2001:db8::/32": "JP",
  }));
  assert.equal(geo.country(ip("1.2.200.1")), "cn");
  assert.equal(geo.country(ip("1.2.3.4")), "au");
  assert.equal(geo.country(ip("8.8.8.8")), "us");
  assert.equal(geo.country(ip("8.8.9.9")), null);
  assert.equal(geo.country(ip("2001:db8::1")), "jp");
  assert.equal(geo.country(ip("2001:db9::1")), null);
});

Deno.test("openGeoIp() rejects bytes that are not an mmdb", async () => {
  await assert.rejects(() => openGeoIp(new TextEncoder().encode("not a database")), TypeError);
});

const PKG = "@ip-location-db/geo-whois-asn-country-mmdb";

/** Caches the npm package outside the project (no lock file change) and finds its .mmdb. */
async function realDatabase(): Promise<string | null> {
  const tmp = await Deno.makeTempDir();
  try {
    const cache = await new Deno.Command(Deno.execPath(), {
      args: ["cache", "--no-config", "--no-lock", `npm:${PKG}`],
      cwd: tmp,
      stdout: "null",
      stderr: "null",
    }).output();
    if (!cache.success) return null;
    const info = await new Deno.Command(Deno.execPath(), { args: ["info", "--json"], cwd: tmp })
      .output();
    const npmCache = JSON.parse(new TextDecoder().decode(info.stdout)).npmCache as string;
    const dir = join(npmCache, "registry.npmjs.org", PKG);
    const versions: string[] = [];
    for await (const e of Deno.readDir(dir)) if (e.isDirectory) versions.push(e.name);
    versions.sort();
    const latest = versions.at(-1);
    return latest ? join(dir, latest, "geo-whois-asn-country.mmdb") : null;
  } catch {
    return null;
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

Deno.test("openGeoIp() reads a real country database (npm:@ip-location-db/geo-whois-asn-country-mmdb)", async (t) => {
  const path = await realDatabase();
  if (!path) {
    console.warn(`skipped: npm package ${PKG} is not reachable`);
    return;
  }
  await t.step("the direct tree walk agrees with maxmind's Reader.get()", async () => {
    const bytes = Deno.readFileSync(path);
    const geo = await openGeoIp(bytes);
    const reader = new Reader(Buffer.from(bytes)) as unknown as { get(ip: string): unknown };
    let seed = 99, known = 0;
    const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 24;
    for (let i = 0; i < 5000; i++) {
      const addr = i % 3 === 0
        ? Uint8Array.from({ length: 16 }, (_, j) => j === 0 ? 0x20 + (rnd() & 0xf) : rnd())
        : Uint8Array.from({ length: 4 }, rnd);
      const rec = reader.get(formatIp(addr)) as { country_code?: string } | null;
      const want = rec?.country_code?.toLowerCase() ?? null;
      assert.equal(geo.country(addr), want, formatIp(addr));
      if (want) known++;
    }
    assert.ok(known > 2000, `only ${known} addresses had a country`);
  });
  await t.step("well-known addresses resolve", async () => {
    const geo = await openGeoIp(Deno.readFileSync(path));
    assert.equal(geo.country(ip("8.8.8.8")), "us");
    assert.equal(geo.country(ip("1.2.4.8")), "cn");
    assert.equal(geo.country(ip("10.0.0.1")), null);
    const v6 = geo.country(ip("2001:4860:4860::8888"));
    assert.equal(v6, "us");
  });
});
