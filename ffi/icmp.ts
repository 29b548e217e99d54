/**
 * ICMP "port unreachable" refusals for blocked UDP sessions: one raw socket
 * per family (`socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)`,
 * `socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6)`), opened lazily, with
 * `IP_TRANSPARENT` / `IPV6_TRANSPARENT` so each message may leave from a
 * non-local source — the original destination the client talked to — named
 * per send in an `IP_PKTINFO` / `IPV6_PKTINFO` cmsg. The kernel builds the
 * outer IP header (no `IP_HDRINCL`) and, for ICMPv6, the checksum. Measured
 * on Linux 6.18 in network namespaces: the client's connected UDP socket
 * gets `ECONNREFUSED` (tests/netns/router_udp_block_test.ts).
 *
 * Refusals are rate-limited — a token bucket per refuser (default 100/s)
 * and at most one per session per second — so a stream of blocked
 * datagrams cannot turn the router into an ICMP reflector. The sockets
 * filter out every incoming ICMP message (`ICMP_FILTER`, `ICMP6_FILTER`):
 * they only send.
 *
 * @module
 */

import type { Endpoint } from "../core/types.ts";
import { buildCmsgs } from "./cmsg.ts";
import { portUnreachable } from "./icmp_packet.ts";
import {
  AF_INET,
  AF_INET6,
  applySocketOptions,
  close as closeFd,
  IP_TRANSPARENT,
  IPV6_TRANSPARENT,
  sendMsg,
  setsockoptBytes,
  setsockoptInt,
  SO_RCVBUF,
  socket,
  SOL_IP,
  SOL_IPV6,
  SOL_SOCKET,
  WOULD_BLOCK,
} from "./socket.ts";

/** `SOCK_RAW`. */
export const SOCK_RAW = 3;
/** `IPPROTO_ICMP`. */
export const IPPROTO_ICMP = 1;
/** `IPPROTO_ICMPV6` (also the `SOL_ICMPV6` option level). */
export const IPPROTO_ICMPV6 = 58;
/** `SOL_RAW`: option level of `ICMP_FILTER`. */
export const SOL_RAW = 255;
/** `ICMP_FILTER` (a 32-bit mask of ICMPv4 types to drop on receive). */
export const ICMP_FILTER = 1;
/** `ICMP6_FILTER` (a 256-bit mask of ICMPv6 types; a set bit blocks the type). */
export const ICMP6_FILTER = 1;
/** `IP_PKTINFO` cmsg type (`struct in_pktinfo`: ifindex, spec_dst, addr). */
export const IP_PKTINFO = 8;
/** `IPV6_PKTINFO` cmsg type (`struct in6_pktinfo`: addr, ifindex). */
export const IPV6_PKTINFO = 50;

/**
 * The `IP_PKTINFO` / `IPV6_PKTINFO` control buffer that makes a raw socket
 * send from `source` (4 or 16 bytes), routing as usual (ifindex 0).
 */
export function pktinfoCmsg(source: Uint8Array): Uint8Array {
  if (source.length === 4) {
    const data = new Uint8Array(12); // ipi_ifindex (0) · ipi_spec_dst · ipi_addr (unused)
    data.set(source, 4);
    return buildCmsgs([{ level: SOL_IP, type: IP_PKTINFO, data }]);
  }
  if (source.length === 16) {
    const data = new Uint8Array(20); // ipi6_addr · ipi6_ifindex (0)
    data.set(source, 0);
    return buildCmsgs([{ level: SOL_IPV6, type: IPV6_PKTINFO, data }]);
  }
  throw new RangeError(`pktinfoCmsg: a ${source.length}-byte address is neither IPv4 nor IPv6`);
}

/**
 * Opens the raw ICMP socket of `family` (`AF_INET` or `AF_INET6`): marked
 * with `mark` (`SO_MARK`, 0 = none) so TPROXY/policy rules skip it,
 * transparent so it may send from any source, receiving nothing. Needs
 * CAP_NET_RAW and CAP_NET_ADMIN. Throws `ErrnoError`; the fd never leaks.
 */
export function openIcmpSocket(family: number, mark = 0): number {
  const v6 = family === AF_INET6;
  const fd = socket(family, SOCK_RAW, v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP);
  try {
    if (v6) {
      // Block every ICMPv6 type on receive (a set bit blocks).
      setsockoptBytes(fd, IPPROTO_ICMPV6, ICMP6_FILTER, new Uint8Array(32).fill(0xff));
      setsockoptInt(fd, SOL_IPV6, IPV6_TRANSPARENT, 1);
    } else {
      setsockoptBytes(fd, SOL_RAW, ICMP_FILTER, new Uint8Array(4).fill(0xff));
      setsockoptInt(fd, SOL_IP, IP_TRANSPARENT, 1);
    }
    setsockoptInt(fd, SOL_SOCKET, SO_RCVBUF, 256);
    applySocketOptions(fd, family, mark ? { mark } : {});
  } catch (e) {
    closeFd(fd);
    throw e;
  }
  return fd;
}

/** The syscalls of an {@linkcode IcmpRefuser} (tests fake them). */
export interface IcmpSocketOps {
  /** Opens the raw socket of `family` with `mark`; throws on failure. */
  open(family: number, mark: number): number;
  /** Sends `msg` to `to` from `source`; false when the socket would block. Throws on failure. */
  send(fd: number, msg: Uint8Array, to: Uint8Array, source: Uint8Array): boolean;
  /** Closes `fd`. */
  close(fd: number): void;
}

/** The real {@linkcode IcmpSocketOps}. */
export const icmpSocketOps: IcmpSocketOps = {
  open: openIcmpSocket,
  send(fd, msg, to, source) {
    // Port 0: raw sockets ignore it (for IPv6 it must be 0 or the protocol).
    return sendMsg(fd, msg, { addr: to, port: 0 }, pktinfoCmsg(source)) !== WOULD_BLOCK;
  },
  close: closeFd,
};

/** Options of {@linkcode IcmpRefuser}. */
export interface IcmpRefuserOptions {
  /** `SO_MARK` of the raw sockets (`route.default_mark`); 0 = none. */
  mark?: number;
  /** Refusals per second over all sessions (token bucket refill). Default 100. */
  ratePerSecond?: number;
  /** Bucket size: the most refusals in a burst. Default `ratePerSecond`. */
  burst?: number;
  /** Least time between two refusals of one session, ms. Default 1000. */
  perSessionMs?: number;
  /** Monotonic clock in ms. Default `performance.now`. */
  now?: () => number;
  /** Syscalls. Default {@linkcode icmpSocketOps}. */
  ops?: IcmpSocketOps;
}

/** What a refusal did. */
export type RefuseResult = "sent" | "rate_limited" | "error";

/** Counters of an {@linkcode IcmpRefuser}. */
export interface IcmpRefuserCounters {
  /** Messages handed to the kernel. */
  sent: number;
  /** Refusals skipped by the per-session or global limit. */
  rateLimited: number;
  /** Refusals that failed (socket could not open, send failed or would block). */
  errors: number;
}

/** Per-session state the refuser keeps in the caller's session object. */
export interface RefusalHolder {
  /** Time (ms, the refuser's clock) of the session's last refusal; start with `-Infinity`. */
  refusedAt: number;
}

/**
 * Sends rate-limited ICMP port-unreachable messages from original
 * destinations to clients. One raw socket per family, opened on first use
 * and kept until {@linkcode close}; a family whose socket failed to open is
 * retried at most once a minute.
 */
export class IcmpRefuser {
  readonly #ops: IcmpSocketOps;
  #mark: number;
  readonly #rate: number;
  readonly #burst: number;
  readonly #perSession: number;
  readonly #now: () => number;
  readonly #fds = new Map<number, number>();
  readonly #openFailedAt = new Map<number, number>();
  #tokens: number;
  #refilledAt: number;
  #closed = false;
  readonly #c: IcmpRefuserCounters = { sent: 0, rateLimited: 0, errors: 0 };
  /** The last send/open error (for the caller's rate-limited warning), cleared when read. */
  lastError: unknown = null;

  /** Creates the refuser; no socket is opened yet. Throws `RangeError` on bad limits. */
  constructor(opts: IcmpRefuserOptions = {}) {
    const rate = opts.ratePerSecond ?? 100;
    const burst = opts.burst ?? rate;
    const per = opts.perSessionMs ?? 1000;
    if (!(rate > 0) || !Number.isFinite(rate)) {
      throw new RangeError(`IcmpRefuser: ratePerSecond ${rate}: expected a positive number`);
    }
    if (!(burst >= 1) || !Number.isFinite(burst)) {
      throw new RangeError(`IcmpRefuser: burst ${burst}: expected at least 1`);
    }
    if (!(per >= 0) || !Number.isFinite(per)) {
      throw new RangeError(`IcmpRefuser: perSessionMs ${per}: expected a non-negative number`);
    }
    this.#ops = opts.ops ?? icmpSocketOps;
    this.#mark = opts.mark ?? 0;
    this.#rate = rate;
    this.#burst = burst;
    this.#perSession = per;
    this.#now = opts.now ?? (() => performance.now());
    this.#tokens = burst;
    this.#refilledAt = this.#now();
  }

  /**
   * Sets the `SO_MARK` of the raw sockets (after a reload changed
   * `route.default_mark`): open sockets with another mark are closed and
   * reopened on next use.
   */
  setMark(mark: number): void {
    if (mark === this.#mark) return;
    this.#mark = mark;
    for (const fd of this.#fds.values()) this.#ops.close(fd);
    this.#fds.clear();
    this.#openFailedAt.clear();
  }

  /** A copy of the counters. */
  counters(): IcmpRefuserCounters {
    return { ...this.#c };
  }

  /**
   * Refuses `client`'s UDP datagram with `payload` to `dst`: sends the
   * port-unreachable message from `dst` unless a limit says no. Never throws
   * for socket errors (counted, kept in `lastError`).
   */
  refuse(
    client: Endpoint,
    dst: Endpoint,
    payload: Uint8Array,
    session: RefusalHolder,
    tos = 0,
  ): RefuseResult {
    if (this.#closed) return "error";
    const now = this.#now();
    if (now - session.refusedAt < this.#perSession || !this.#take(now)) {
      this.#c.rateLimited++;
      return "rate_limited";
    }
    session.refusedAt = now;
    try {
      const fd = this.#socket(client.addr.length === 4 ? AF_INET : AF_INET6, now);
      if (fd < 0) {
        this.#c.errors++;
        return "error";
      }
      const msg = portUnreachable(client, dst, payload, { tos });
      if (!this.#ops.send(fd, msg, client.addr, dst.addr)) {
        this.#c.errors++;
        return "error";
      }
    } catch (e) {
      this.#c.errors++;
      this.lastError = e;
      return "error";
    }
    this.#c.sent++;
    return "sent";
  }

  #take(now: number): boolean {
    const elapsed = Math.max(0, now - this.#refilledAt);
    this.#refilledAt = now;
    this.#tokens = Math.min(this.#burst, this.#tokens + (elapsed * this.#rate) / 1000);
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  #socket(family: number, now: number): number {
    const fd = this.#fds.get(family);
    if (fd !== undefined) return fd;
    const failed = this.#openFailedAt.get(family);
    if (failed !== undefined && now - failed < 60_000) return -1;
    try {
      const opened = this.#ops.open(family, this.#mark);
      this.#fds.set(family, opened);
      this.#openFailedAt.delete(family);
      return opened;
    } catch (e) {
      this.#openFailedAt.set(family, now);
      this.lastError = e;
      return -1;
    }
  }

  /** Closes the raw sockets; later refusals fail. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const fd of this.#fds.values()) this.#ops.close(fd);
    this.#fds.clear();
  }
}
