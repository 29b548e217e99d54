/**
 * The config worker's first work: a tiny config with a rule of each kind,
 * compiled by each path of {@linkcode compileJob} (the byte scanner,
 * `JSON.parse`, a patch against it), so that the first instance of each
 * compiler class is a small one, kept for the worker's life with its hidden
 * class (`core/keep_shape.ts`). Without it a memory-reducing collection
 * between two reloads drops the classes of the last compile's objects and
 * the optimised code that checked them, and the next reload runs cold.
 *
 * @module
 */

import { compileJob, CompileMemo, type JobRequest } from "./compile_job.ts";

const WARM_UP_PATH = "/vpn-router-warm-up/config.json";

/** A config using every rule field that needs no file (no GeoIP, no rule sets). */
function warmUpConfig(edit: string): Record<string, unknown> {
  return {
    outbounds: [{ type: "direct", tag: "direct" }, { type: "block", tag: "block" }],
    route: {
      rules: [
        { domain: [edit], outbound: "direct" },
        { domain: ["a.example"], domain_suffix: ["b.example", ".c.example"], outbound: "block" },
        { domain_keyword: ["ads"], outbound: "block" },
        {
          ip_cidr: ["192.0.2.0/24", "10.0.0.0/8", "2001:db8::/32", "2001:db8:1::/48"],
          outbound: "direct",
        },
        { domain_suffix: ["d.example"], ip_cidr: ["198.51.100.0/24"], outbound: "direct" },
        { domain_regex: ["^e[0-9]+\\.example$"], outbound: "direct" },
        { ip_is_private: true, port: [53], network: "udp", outbound: "direct" },
        { port_range: ["1000:2000"], source_port: [5353], outbound: "direct" },
        { source_ip_cidr: ["192.168.0.0/16"], protocol: ["tls", "quic"], outbound: "direct" },
        { fwmark: "0x100/0xff00", outbound: "direct" },
        { dscp: [46], outbound: "direct" },
        {
          type: "logical",
          mode: "and",
          rules: [{ port: [443] }, { domain_suffix: ["f.example"], invert: true }],
          outbound: "block",
        },
        {
          type: "logical",
          mode: "or",
          rules: [{ ip_cidr: ["203.0.113.0/24"] }, { domain_keyword: ["tracker"] }],
          action: "reject",
        },
      ],
      final: "direct",
    },
  };
}

/**
 * Compiles the warm-up config by every path (errors are thrown: the config
 * is ours). Call it once, after `keepShapes()`, before real jobs. Returns
 * what each job's reply was ("full" or "patched"), for tests.
 */
export async function warmUpCompiler(): Promise<string[]> {
  const files = new Map<string, Uint8Array>();
  const file = (edit: string) => new TextEncoder().encode(JSON.stringify(warmUpConfig(edit)));
  const readFile = (path: string) => {
    const b = files.get(path);
    return b ? Promise.resolve(b) : Promise.reject(new Deno.errors.NotFound(path));
  };
  const memo = new CompileMemo();
  const kinds: string[] = [];
  const run = async (req: JobRequest, scanMinBytes: number) => {
    const r = await compileJob(req, { readFile, scanMinBytes }, memo);
    if (!r.reply.ok) throw new Error(`warm-up compile failed: ${JSON.stringify(r.reply)}`);
    kinds.push("patched" in r.reply ? "patched" : "wire" in r.reply ? "full" : "reused");
    r.tail?.();
  };
  files.set(WARM_UP_PATH, file("g.example"));
  await run({ id: 1, source: { inline: warmUpConfig("g.example") } }, Infinity);
  await run({ id: 2, source: WARM_UP_PATH }, Infinity);
  await run({ id: 3, source: WARM_UP_PATH }, 0);
  memo.prepareBase();
  files.set(WARM_UP_PATH, file("h.example"));
  await run({ id: 4, source: WARM_UP_PATH, prev: 3 }, 0);
  return kinds;
}
