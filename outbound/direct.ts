/**
 * The `direct` outbound: dial the destination from this host, optionally
 * through an interface (`bind_interface`), from a source address
 * (`inet4_bind_address` / `inet6_bind_address`) and with a routing mark
 * (`routing_mark`, else the global `default_mark`, so nftables can skip our
 * own traffic: no loops). Field names follow sing-box's direct outbound.
 *
 * @module
 */

import type { Endpoint } from "../core/types.ts";
import { parseIp } from "../core/ip.ts";
import { type ConnectOptions, connectTcp, type FdStream } from "../ffi/stream.ts";
import type { Reactor } from "../ffi/reactor.ts";

/** Config of one direct outbound (as produced by the config module). */
export interface DirectOutboundConfig {
  tag: string;
  /** `SO_BINDTODEVICE` interface, e.g. `"eth0"`, `"tun10"`. */
  bind_interface?: string;
  /** IPv4 source address (text or 4 bytes). */
  inet4_bind_address?: string | Uint8Array;
  /** IPv6 source address (text or 16 bytes). */
  inet6_bind_address?: string | Uint8Array;
  /** `SO_MARK` for this outbound's sockets; overrides `default_mark`. */
  routing_mark?: number;
  /** Connect timeout in ms (> 0). */
  connect_timeout_ms: number;
  /** `IP_TOS` / `IPV6_TCLASS` byte (0..255). */
  tos?: number;
}

/** Process-wide settings and injectables of {@linkcode DirectOutbound}. */
export interface DirectOutboundOptions {
  /** `route.default_mark`: mark used when `routing_mark` is absent (0/absent: none). */
  default_mark?: number;
  reactor?: Reactor;
  /** Dial function (tests inject a fake). */
  connect?: (dst: Endpoint, opts: ConnectOptions) => Promise<FdStream>;
}

function bindAddress(
  field: string,
  tag: string,
  v: string | Uint8Array | undefined,
  len: 4 | 16,
): Uint8Array | undefined {
  if (v === undefined) return undefined;
  const bytes = typeof v === "string" ? parseIp(v) : v;
  if (!bytes || bytes.length !== len) {
    throw new RangeError(
      `outbound "${tag}": ${field}: ${
        typeof v === "string" ? JSON.stringify(v) : `${v.length} bytes`
      }: expected an IPv${len === 4 ? 4 : 6} address`,
    );
  }
  return bytes;
}

function checkMark(field: string, tag: string, v: number | undefined): void {
  if (v === undefined) return;
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
    throw new RangeError(`outbound "${tag}": ${field}: ${v}: expected 0..0xffffffff`);
  }
}

/** Dials TCP directly with the configured interface, source address, mark and TOS. */
export class DirectOutbound {
  /** The outbound's tag. */
  readonly tag: string;
  readonly #base: Omit<ConnectOptions, "bindAddress" | "signal">;
  readonly #v4?: Uint8Array;
  readonly #v6?: Uint8Array;
  readonly #connect: (dst: Endpoint, opts: ConnectOptions) => Promise<FdStream>;

  /** Validates the config (RangeError naming the field) and precomputes dial options. */
  constructor(config: DirectOutboundConfig, opts: DirectOutboundOptions = {}) {
    const tag = config.tag;
    this.tag = tag;
    if (!(config.connect_timeout_ms > 0)) {
      throw new RangeError(
        `outbound "${tag}": connect_timeout_ms: ${config.connect_timeout_ms}: must be > 0`,
      );
    }
    checkMark("routing_mark", tag, config.routing_mark);
    checkMark("default_mark", tag, opts.default_mark);
    if (
      config.tos !== undefined &&
      !(Number.isInteger(config.tos) && config.tos >= 0 && config.tos <= 255)
    ) {
      throw new RangeError(`outbound "${tag}": tos: ${config.tos}: expected 0..255`);
    }
    const ifname = config.bind_interface;
    if (
      ifname !== undefined && (ifname.length === 0 || ifname.length > 15 || /[\0/\s]/.test(ifname))
    ) {
      throw new RangeError(
        `outbound "${tag}": bind_interface: ${JSON.stringify(ifname)}: invalid interface name`,
      );
    }
    const v4 = bindAddress("inet4_bind_address", tag, config.inet4_bind_address, 4);
    const v6 = bindAddress("inet6_bind_address", tag, config.inet6_bind_address, 16);
    if (v4) this.#v4 = v4;
    if (v6) this.#v6 = v6;
    const base: Omit<ConnectOptions, "bindAddress" | "signal"> = {
      timeoutMs: config.connect_timeout_ms,
    };
    const mark = config.routing_mark ?? opts.default_mark;
    if (mark !== undefined && mark !== 0) base.mark = mark;
    if (ifname !== undefined) base.bindInterface = ifname;
    if (config.tos !== undefined) base.tos = config.tos;
    if (opts.reactor) base.reactor = opts.reactor;
    this.#base = base;
    this.#connect = opts.connect ?? connectTcp;
  }

  /** The mark this outbound's sockets carry (0 = none). */
  get mark(): number {
    return this.#base.mark ?? 0;
  }

  /**
   * Connects to `dst`. Rejects with `ErrnoError` (ECONNREFUSED, ENETUNREACH,
   * …), a `TimeoutError`, or the signal's reason.
   */
  dialTcp(dst: Endpoint, signal?: AbortSignal): Promise<FdStream> {
    const o: ConnectOptions = { ...this.#base };
    const src = dst.addr.length === 4 ? this.#v4 : this.#v6;
    if (src) o.bindAddress = src;
    if (signal) o.signal = signal;
    return this.#connect(dst, o);
  }
}
