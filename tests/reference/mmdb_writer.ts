/**
 * A tiny MaxMind DB (.mmdb) writer for hermetic GeoIP tests: an IPv6 search
 * tree with 32-bit records, a data section of country records
 * (`{"country": {"iso_code": "CN"}}`) and the metadata map, as the MaxMind
 * DB format spec describes. IPv4 networks live under `::/96`.
 */

import { parseIp } from "../../core/ip.ts";

type Value = string | number | bigint | Value[] | { [k: string]: Value };
type Rec = number | { node: TreeNode } | null; // data offset, child node, or empty
interface TreeNode {
  rec: [Rec, Rec];
}

const enc = new TextEncoder();

function control(type: number, size: number): number[] {
  if (size >= 29) throw new RangeError("mmdb writer: value too large for this tiny writer");
  return type <= 7 ? [(type << 5) | size] : [size, type - 7];
}

function uintBytes(n: bigint): number[] {
  const out: number[] = [];
  while (n > 0n) {
    out.unshift(Number(n & 0xffn));
    n >>= 8n;
  }
  return out;
}

function encode(v: Value, typeHint?: number): number[] {
  if (typeof v === "string") {
    const b = enc.encode(v);
    return [...control(2, b.length), ...b];
  }
  if (typeof v === "number" || typeof v === "bigint") {
    const b = uintBytes(BigInt(v));
    return [...control(typeHint ?? 6, b.length), ...b];
  }
  if (Array.isArray(v)) return [...control(11, v.length), ...v.flatMap((x) => encode(x))];
  const keys = Object.keys(v);
  const out = control(7, keys.length);
  for (const k of keys) {
    const hint = k === "build_epoch" ? 9 : /version|record_size/.test(k) ? 5 : undefined;
    out.push(...encode(k), ...encode(v[k]!, hint));
  }
  return out;
}

/** Builds an mmdb mapping each CIDR (IPv4 or IPv6 text) to an ISO country code. */
export function writeCountryMmdb(networks: Record<string, string>): Uint8Array {
  const root: TreeNode = { rec: [null, null] };
  const data: number[] = [];
  const offsets = new Map<string, number>();
  for (const [cidr, code] of Object.entries(networks)) {
    const [ip, p] = cidr.split("/");
    let addr = parseIp(ip!)!;
    let prefix = Number(p ?? addr.length * 8);
    if (addr.length === 4) {
      const v6 = new Uint8Array(16);
      v6.set(addr, 12);
      addr = v6;
      prefix += 96;
    }
    let off = offsets.get(code);
    if (off === undefined) {
      off = data.length;
      offsets.set(code, off);
      data.push(...encode({ country: { iso_code: code } }));
    }
    let node = root;
    for (let i = 0; i < prefix; i++) {
      const bit = (addr[i >> 3]! >> (7 - (i & 7))) & 1;
      if (i === prefix - 1) {
        node.rec[bit] = off;
        break;
      }
      const r = node.rec[bit]!;
      if (r === null || typeof r === "number") {
        const child: TreeNode = { rec: [r ?? null, r ?? null] };
        node.rec[bit] = { node: child };
        node = child;
      } else node = r.node;
    }
  }
  // Number the nodes breadth-first, then serialise.
  const nodes: TreeNode[] = [root];
  const index = new Map<TreeNode, number>([[root, 0]]);
  for (let i = 0; i < nodes.length; i++) {
    for (const r of nodes[i]!.rec) {
      if (r !== null && typeof r === "object") {
        index.set(r.node, nodes.length);
        nodes.push(r.node);
      }
    }
  }
  const n = nodes.length;
  const tree = new Uint8Array(n * 8);
  const view = new DataView(tree.buffer);
  nodes.forEach((node, i) => {
    node.rec.forEach((r, side) => {
      const value = r === null ? n : typeof r === "number" ? n + 16 + r : index.get(r.node)!;
      view.setUint32(i * 8 + side * 4, value);
    });
  });
  const meta = encode({
    node_count: n,
    record_size: 32,
    ip_version: 6,
    database_type: "test-country",
    languages: ["en"],
    binary_format_major_version: 2,
    binary_format_minor_version: 0,
    build_epoch: 1_700_000_000,
    description: { en: "test" },
  });
  const marker = [0xab, 0xcd, 0xef, ...enc.encode("MaxMind.com")];
  return Uint8Array.from([...tree, ...new Array<number>(16).fill(0), ...data, ...marker, ...meta]);
}
