import { fixtureBytes, fromHex, quicDatagrams } from "./_test_util.ts";
import { sniffHttp } from "./http.ts";
import { QuicSniffer } from "./quic.ts";
import { sniffTls } from "./tls.ts";

const chromiumTls = fixtureBytes("tls", "chromium.bin");
const opensslTls = fixtureBytes("tls", "openssl_sni.bin");
const fragmentedTls = fixtureBytes("tls", "openssl_fragmented.bin");
const chromiumHttp = fixtureBytes("http", "chromium.bin");
const rfc9001 = fromHex(
  Deno.readTextFileSync(
    new URL("../tests/fixtures/quic/rfc9001_client_initial.hex", import.meta.url),
  ),
);
const chromiumQuic = quicDatagrams("chromium.hex");

Deno.bench("sniffTls: Chromium ClientHello (1923 B, ML-KEM)", () => {
  sniffTls(chromiumTls);
});
Deno.bench("sniffTls: OpenSSL ClientHello (317 B)", () => {
  sniffTls(opensslTls);
});
Deno.bench("sniffTls: OpenSSL ClientHello over 2 records (963 B)", () => {
  sniffTls(fragmentedTls);
});
Deno.bench("sniffHttp: Chromium GET (438 B)", () => {
  sniffHttp(chromiumHttp);
});
Deno.bench("QuicSniffer: RFC 9001 Initial, fresh sniffer (keys derived)", async () => {
  await new QuicSniffer().push(rfc9001);
});
Deno.bench("QuicSniffer: Chromium 2 Initials, fresh sniffer", async () => {
  const s = new QuicSniffer();
  await s.push(chromiumQuic[0]!);
  await s.push(chromiumQuic[1]!);
});
