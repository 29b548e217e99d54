/**
 * Test helpers (internal): loopback TCP pairs and fd counting.
 *
 * @module
 */

import type { Endpoint } from "../core/types.ts";
import type { Reactor } from "./reactor.ts";
import { defaultReactor } from "./reactor.ts";
import {
  accept,
  bind,
  close,
  getsockname,
  listen,
  recv,
  setsockoptInt,
  SO_REUSEADDR,
  SOCK_DGRAM,
  SOCK_STREAM,
  socket,
  SOL_SOCKET,
  WOULD_BLOCK,
} from "./socket.ts";
import { familyOf } from "./sockaddr.ts";
import { connectTcp, FdStream } from "./stream.ts";
import { errnoView, libc } from "./libc.ts";
import { unixSockaddr } from "./sd_notify.ts";

/** IPv4 loopback. */
export const LOOP4: Uint8Array = new Uint8Array([127, 0, 0, 1]);
/** IPv6 loopback. */
export const LOOP6: Uint8Array = new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);

/** A plain listening socket on loopback, driven by the reactor. */
export class TestServer {
  readonly fd: number;
  readonly endpoint: Endpoint;
  readonly reactor: Reactor;

  constructor(addr: Uint8Array = LOOP4, reactor: Reactor = defaultReactor()) {
    this.reactor = reactor;
    this.fd = socket(familyOf(addr), SOCK_STREAM);
    setsockoptInt(this.fd, SOL_SOCKET, SO_REUSEADDR, 1);
    bind(this.fd, { addr, port: 0 });
    listen(this.fd, 1024);
    this.endpoint = getsockname(this.fd);
    reactor.register(this.fd);
  }

  async accept(): Promise<FdStream> {
    for (;;) {
      const fd = accept(this.fd);
      if (fd !== WOULD_BLOCK) return new FdStream(fd, { reactor: this.reactor });
      await this.reactor.readable(this.fd);
    }
  }

  close(): void {
    this.reactor.unregister(this.fd);
    close(this.fd);
  }
}

/** A connected pair `[client, server]` over `server`. */
export async function pair(server: TestServer): Promise<[FdStream, FdStream]> {
  const [c, s] = await Promise.all([
    connectTcp(server.endpoint, { timeoutMs: 5000, reactor: server.reactor }),
    server.accept(),
  ]);
  return [c, s];
}

/** Number of open fds of this process. */
export function openFds(): number {
  let n = 0;
  for (const _ of Deno.readDirSync("/proc/self/fd")) n++;
  return n;
}

/** Reads until EOF; returns total bytes and a SHA-256 over them. */
export async function drain(
  s: FdStream,
  bufSize = 1 << 16,
): Promise<{ bytes: number; hash: string }> {
  const buf = new Uint8Array(bufSize);
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  for (;;) {
    const n = await s.read(buf);
    if (n === 0) break;
    bytes += n;
    chunks.push(buf.slice(0, n));
  }
  const all = new Uint8Array(bytes);
  let off = 0;
  for (const c of chunks) {
    all.set(c, off);
    off += c.length;
  }
  return { bytes, hash: await sha256(all) };
}

/** Hex SHA-256 of `data`. */
export async function sha256(data: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Deterministic pseudo-random bytes. */
export function randomBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** A bound AF_UNIX datagram socket, as systemd's notification socket. */
export function notifyListener(path: string): { fd: number; next(): string | null } {
  const fd = socket(1, SOCK_DGRAM);
  const sa = unixSockaddr(path);
  const E = errnoView();
  if (libc().bind(fd, sa, sa.length) < 0) throw new Error(`bind ${path}: errno ${E[0]}`);
  const buf = new Uint8Array(4096);
  return {
    fd,
    next() {
      const n = recv(fd, buf);
      return n === WOULD_BLOCK ? null : new TextDecoder().decode(buf.subarray(0, n));
    },
  };
}
