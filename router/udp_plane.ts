/**
 * The UDP data plane of one TPROXY inbound: transparent sockets in,
 * sessions keyed by (client, original destination), a rule decision per
 * session taken against the newest snapshot (after a bounded QUIC sniff
 * when `sniff` is on), an upstream per session (direct socket with marks /
 * interface / source address / TOS, or a SOCKS5 UDP association), and
 * replies sent from the original destination through a shared, bounded
 * cache of transparent reply sockets.
 *
 * Direct sessions map endpoint-independently by default (the inbound's
 * `udp_mapping`): the sessions of one client address and port through one
 * direct outbound (same socket options) share one unconnected socket, so
 * every destination sees one source port, as behind the kernel's own NAT;
 * a datagram that socket receives goes to the session of its sender, and
 * is dropped when the client never sent to that sender (counted as
 * `unsolicited`). With `per_destination` each session has its own socket,
 * connected to its destination. With `udp_filtering: "endpoint_independent"`
 * ("full cone") a datagram from a stranger opens a session from the client
 * to it instead, when the rules route that pair through the same outbound
 * and socket (`#admit`); the same holds for a socks outbound's shared relay.
 *
 * Lifecycle of a session: `sniffing` (datagrams held, bounded, until the
 * sniffer answers or `sniff_timeout` passes) → routed → `open` (direct at
 * once; SOCKS after `connecting`) or `blocked` / `failed` (datagrams dropped
 * until the session idles out, so a blocked destination costs no new
 * decision per datagram; a `block` with `mode: "reset"` answers them with
 * rate-limited ICMP port unreachable from the original destination, see
 * `ffi/icmp.ts`). Held datagrams are sent in arrival order.
 *
 * @module
 */

import type { OutboundConfig, RouteConfig, TproxyInbound } from "../config/schema.ts";
import { formatEndpoint, parseIp, unmapIpv4 } from "../core/ip.ts";
import type { Logger } from "../core/log.ts";
import type { Decision, Endpoint, FlowMeta } from "../core/types.ts";
import { dscpFromTos, markForRules } from "../inbound/flow_marks.ts";
import { defaultReactor, isClosedError, type Reactor } from "../ffi/reactor.ts";
import { IcmpRefuser, type RefusalHolder } from "../ffi/icmp.ts";
import {
  close as closeFd,
  connect,
  getNofileLimit,
  getsockname,
  send,
  WOULD_BLOCK,
} from "../ffi/socket.ts";
import { connectTcp, type FdStream } from "../ffi/stream.ts";
import {
  DatagramSender,
  openReplySocket,
  openUdpBound,
  openUdpShared,
  openUdpUpstream,
  RecvBatch,
  SendBatch,
  setRecvBuffer,
  sockaddrKey,
  sockaddrOf,
  type UdpUpstreamOptions,
} from "../ffi/udp.ts";
import { UdpTproxyInbound } from "../inbound/tproxy_udp.ts";
import { ReplySocketCache } from "../inbound/udp_reply_cache.ts";
import {
  defaultUdpTimeouts,
  endpointKey,
  type RemoveReason,
  type SessionEntry,
  sessionTimeout,
  UdpSessionTable,
  type UdpTimeouts,
} from "../inbound/udp_sessions.ts";
import {
  decodeUdpDatagram,
  encodeUdpDatagram,
  socks5UdpAssociate,
  type Socks5UdpAssociation,
} from "../outbound/socks5_udp.ts";
import { QuicSniffer } from "../sniff/quic.ts";

/** What the plane reads from the router's current snapshot (a `Snapshot` fits). */
export interface UdpRouteView {
  readonly generation: number;
  readonly engine: {
    match(flow: FlowMeta): Decision;
    /** `match` without counting a hit (for a stranger that may be refused). */
    decide(flow: FlowMeta): Decision;
    /** Counts the hit `decide` did not. */
    count(d: Decision): void;
  };
  readonly outbounds: ReadonlyMap<string, { readonly config: OutboundConfig }>;
  readonly config: { readonly route: Pick<RouteConfig, "default_mark"> };
  readonly inbounds: ReadonlyMap<string, TproxyInbound>;
}

/** Options of {@linkcode UdpPlane.open}. */
export interface UdpPlaneOptions {
  readonly inbound: TproxyInbound;
  /** Returns the newest snapshot; each new session is routed against it. */
  readonly snapshot: () => UdpRouteView;
  readonly logger: Logger;
  readonly reactor?: Reactor;
  /** Most reply sockets kept open (default 1024). */
  readonly replySockets?: number;
  /** `SO_REUSEPORT` on the inbound sockets (see `UdpInboundOptions.reusePort`). */
  readonly reusePort?: boolean;
  /** Per-protocol idle timeouts (DNS, QUIC); capped by the inbound's `udp_timeout`. */
  readonly timeouts?: Partial<Pick<UdpTimeouts, "dnsMs" | "quicMs">>;
  /** Datagrams held per session while sniffing or connecting (default 16). */
  readonly maxPendingDatagrams?: number;
  /** Bytes held per session while sniffing or connecting (default 64 KiB). */
  readonly maxPendingBytes?: number;
  /** Clock (ms, monotonic) for sessions; default `performance.now`. */
  readonly now?: () => number;
  /**
   * Sends the ICMP port-unreachable refusals of `block` (`mode: "reset"`)
   * sessions. Default: one per plane (100/s, one per session per second),
   * closed with the plane; one passed in is not closed.
   */
  readonly refuser?: IcmpRefuser;
  /**
   * Session ids (default: the plane's own sequence). The router passes its
   * flow table's, so that TCP flows and UDP sessions share one id space.
   */
  readonly nextId?: () => number;
  /**
   * Outbound health (the router's `HealthChecker`): a SOCKS outbound known
   * to be down fails new sessions at once, and each UDP ASSOCIATE reports
   * its outcome like a TCP dial does.
   */
  readonly health?: UdpHealth;
  /**
   * Told of every reply to a session whose destination port is 53 (a view,
   * valid during the call): the router's DNS reverse mapping reads it.
   */
  readonly onDnsReply?: (data: Uint8Array) => void;
  /**
   * The name a new session's destination was looked up by, for a session
   * without a sniffed name (`route.dns_reverse_mapping`).
   */
  readonly nameOf?: (addr: Uint8Array) => string | undefined;
}

/** The part of `HealthChecker` the plane uses. */
export interface UdpHealth {
  admit(tag: string): boolean;
  reportSuccess(tag: string): void;
  reportFailure(tag: string, err: unknown, dst?: Endpoint): void;
}

/** Counters of a plane, for `status` / `stats`. */
export interface UdpPlaneStats {
  inbound: string;
  sessions: number;
  max_sessions: number;
  created: number;
  expired: number;
  evicted: number;
  closed: number;
  dropped: number;
  datagrams_up: number;
  datagrams_down: number;
  bytes_up: number;
  bytes_down: number;
  reply_sockets: number;
  reply_opened: number;
  reply_evicted: number;
  reply_errors: number;
  sniffed_quic: number;
  sniff_timeouts: number;
  /** Sessions failed at once because their (SOCKS) outbound was known down. */
  fail_fast: number;
  /**
   * Datagrams a shared (endpoint-independent) socket received from a
   * sender its client never sent to: dropped.
   */
  unsolicited: number;
  /**
   * Sessions opened by a stranger's datagram (`udp_filtering:
   * "endpoint_independent"`) since start.
   */
  unsolicited_admitted: number;
  /** Shared direct sockets open (endpoint-independent mapping). */
  shared_sockets: number;
  /** SOCKS5 UDP associations open or opening (one per client port and socks outbound). */
  socks_associations: number;
  /** ICMP port-unreachable refusals sent for blocked (`mode: "reset"`) sessions. */
  refused: number;
  /** Refusals skipped by the rate limits (100/s, one per session per second). */
  refused_limited: number;
  /** Refusals that failed (raw socket or send error). */
  refused_errors: number;
  /** Sessions routed to each outbound since start. */
  outbounds: Record<string, number>;
}

type State = "sniffing" | "connecting" | "open" | "blocked" | "failed" | "closed";

interface Upstream {
  /** Sends one datagram; false when it was dropped. */
  send(data: Uint8Array): boolean;
  /** The socket batched sends go to (a SOCKS upstream's: its relay socket). */
  readonly batched: SocketUpstream;
  /** Where batched sends go on that socket (encoded sockaddr), or null: its connected peer. */
  readonly dest: Uint8Array | null;
  /** What goes before each datagram on that socket (a SOCKS5 UDP header), if anything. */
  readonly prefix: Uint8Array | undefined;
  close(): void;
}

interface Session extends SessionEntry, RefusalHolder {
  readonly id: number;
  readonly key: string;
  readonly meta: FlowMeta;
  readonly clientSa: Uint8Array;
  readonly dstKey: string;
  state: State;
  pending: Uint8Array[];
  pendingBytes: number;
  sniffer: QuicSniffer | null;
  sniffTimer: ReturnType<typeof setTimeout> | undefined;
  upstream: Upstream | null;
  outbound: string | null;
  rule: number | null;
  /** Blocked with `mode: "reset"`: datagrams are refused with ICMP. */
  refuse: boolean;
  /** Wall clock (ms since the epoch) when the first datagram came. */
  readonly startedAt: number;
  /** Payload bytes from the client / sent back to it. */
  up: number;
  down: number;
  /** Leaves what the session shares with others (a direct socket, a SOCKS relay); called when it is removed. */
  detach: (() => void) | null;
  /** A remote's datagram opened it (`#admit`). */
  openedByRemote: boolean;
}

/** One session as `connections.list` shows it. */
export interface UdpSessionInfo {
  readonly id: number;
  readonly meta: FlowMeta;
  readonly outbound: string | null;
  readonly rule: number | null;
  readonly startedAt: number;
  readonly up: number;
  readonly down: number;
  /** The remote opened it (endpoint-independent filtering, see `#admit`). */
  readonly openedByRemote: boolean;
}

/** The UDP side of one TPROXY inbound. */
export class UdpPlane {
  readonly #tag: string;
  readonly #snapshot: () => UdpRouteView;
  readonly #log: Logger;
  readonly #reactor: Reactor;
  readonly #table: UdpSessionTable<Session>;
  readonly #replies: ReplySocketCache;
  readonly #timeouts: UdpTimeouts;
  /**
   * Client datagrams of the inbound's current batch, on their way to one
   * upstream socket (`#fwdTo`; a socks session's relay socket, each with
   * its header): sent as one when the batch is delivered or the next
   * datagram is for another socket.
   */
  readonly #fwd = new SendBatch();
  #fwdTo: SocketUpstream | null = null;
  #fwdDest: Uint8Array | null = null;
  /** Endpoint-independent mapping for direct sessions (see the module doc). */
  readonly #eim: boolean;
  /** Endpoint-independent filtering: strangers may open sessions (`#admit`). */
  readonly #eif: boolean;
  /** Sessions in the table that a remote opened (`#admit`). */
  #admittedOpen = 0;
  /** Shared direct sockets by client, family, outbound and socket options. */
  readonly #shared = new Map<string, SharedSocket>();
  /** SOCKS relays by client (and destination with `per_destination`), outbound and options. */
  readonly #relays = new Map<string, SharedRelay>();
  /** Replies of one session's current read batch, sent as one after it. */
  readonly #rep = new SendBatch();
  #repTo: Session | null = null;
  #repFd = -1;
  /**
   * Reply sockets that refused UDP GSO, with the largest segment they may
   * still be offered it for (see `SendBatch.gsoLimit`); forgotten when the
   * cache closes the socket (its fd number may come back for another).
   */
  readonly #gsoMax = new Map<number, number>();
  /** Upstream reads, shared by every session's read loop (each batch is handled at once). */
  readonly #upBatch = new RecvBatch(16);
  readonly #maxPending: number;
  readonly #maxPendingBytes: number;
  readonly #sniffOn: boolean;
  readonly #sniffTimeout: number;
  readonly #sweep: ReturnType<typeof setInterval>;
  readonly #perOutbound = new Map<string, number>();
  readonly #refuser: IcmpRefuser;
  readonly #ownRefuser: boolean;
  #inbound: UdpTproxyInbound | null = null;
  #lastWarn = -Infinity;
  #warnsSuppressed = 0;
  #nextId = 1;
  #closed = false;
  readonly #c = {
    datagramsUp: 0,
    datagramsDown: 0,
    bytesUp: 0,
    bytesDown: 0,
    sniffedQuic: 0,
    sniffTimeouts: 0,
    failFast: 0,
    unsolicited: 0,
    admitted: 0,
  };
  readonly #health: UdpHealth | null;
  readonly #newId: () => number;
  readonly #onDnsReply: ((data: Uint8Array) => void) | null;
  readonly #nameOf: ((addr: Uint8Array) => string | undefined) | null;

  private constructor(opts: UdpPlaneOptions) {
    const ib = opts.inbound;
    this.#tag = ib.tag;
    this.#snapshot = opts.snapshot;
    this.#log = opts.logger;
    this.#reactor = opts.reactor ?? defaultReactor();
    this.#health = opts.health ?? null;
    this.#onDnsReply = opts.onDnsReply ?? null;
    this.#nameOf = opts.nameOf ?? null;
    this.#newId = opts.nextId ?? (() => this.#nextId++);
    this.#sniffOn = ib.sniff;
    this.#eim = ib.udp_mapping === "endpoint_independent";
    this.#eif = this.#eim && ib.udp_filtering === "endpoint_independent";
    this.#sniffTimeout = ib.sniff_timeout_ms;
    this.#maxPending = opts.maxPendingDatagrams ?? 16;
    this.#maxPendingBytes = opts.maxPendingBytes ?? 64 * 1024;
    this.#ownRefuser = opts.refuser === undefined;
    this.#refuser = opts.refuser ?? new IcmpRefuser(opts.now ? { now: opts.now } : {});
    this.#timeouts = {
      ...defaultUdpTimeouts(ib.udp_timeout_ms),
      dnsMs: ib.udp_timeout_dns_ms,
      quicMs: ib.udp_timeout_quic_ms,
      ...opts.timeouts,
    };
    const shortest = Math.min(
      this.#timeouts.defaultMs,
      this.#timeouts.dnsMs,
      this.#timeouts.quicMs,
    );
    this.#table = new UdpSessionTable<Session>({
      maxSessions: ib.udp_max_sessions,
      reorderMs: Math.min(1000, Math.floor(shortest / 4)),
      ...(opts.now ? { now: opts.now } : {}),
      onRemove: (s, reason) => this.#onRemove(s, reason),
    });
    this.#replies = new ReplySocketCache({
      maxSockets: opts.replySockets ?? 1024,
      open: (ep) => openReplySocket(ep),
      close: (fd) => {
        this.#gsoMax.delete(fd);
        closeFd(fd);
      },
    });
    // Sweep often enough that a session outlives its timeout by at most ~25%.
    const period = Math.max(50, Math.min(1000, Math.floor(shortest / 4)));
    this.#sweep = setInterval(() => this.#table.sweep(), period);
  }

  /** Opens the inbound sockets and starts serving. Throws like `UdpTproxyInbound.open`. */
  static open(opts: UdpPlaneOptions): UdpPlane {
    const plane = new UdpPlane(opts);
    try {
      // A direct session holds one fd (a SOCKS one two), reply sockets one each.
      const need = opts.inbound.udp_max_sessions + (opts.replySockets ?? 1024);
      const { soft } = getNofileLimit();
      if (soft < need + 1024) {
        opts.logger.warn("udp: RLIMIT_NOFILE is below udp_max_sessions + reply sockets", {
          inbound: opts.inbound.tag,
          nofile: soft,
          udp_max_sessions: opts.inbound.udp_max_sessions,
          hint: "raise LimitNOFILE (systemd) / ulimit -n, or lower udp_max_sessions",
        });
      }
    } catch { /* no getrlimit: nothing to say */ }
    try {
      plane.#inbound = UdpTproxyInbound.open({
        listen: opts.inbound.listen,
        port: opts.inbound.listen_port,
        reusePort: opts.reusePort === true,
        logger: opts.logger,
        reactor: plane.#reactor,
        sink: {
          known: (key, data) => plane.#known(key, data),
          fresh: (key, d) => plane.#fresh(key, d.data, d.source, d.destination, d.mark, d.tos),
          flush: () => plane.#flushForward(),
        },
      });
    } catch (e) {
      clearInterval(plane.#sweep);
      throw e;
    }
    return plane;
  }

  /** Bound addresses of the inbound sockets. */
  get addresses(): readonly Endpoint[] {
    return this.#inbound?.addresses ?? [];
  }

  /** Sessions in the table. */
  get size(): number {
    return this.#table.size;
  }

  /** Counters. */
  stats(): UdpPlaneStats {
    const t = this.#table.counters();
    const r = this.#replies.counters();
    const rc = this.#refuser.counters();
    return {
      inbound: this.#tag,
      sessions: this.#table.size,
      max_sessions: this.#table.maxSessions,
      created: t.created,
      expired: t.expired,
      evicted: t.evicted,
      closed: t.closed,
      dropped: t.dropped,
      datagrams_up: this.#c.datagramsUp,
      datagrams_down: this.#c.datagramsDown,
      bytes_up: this.#c.bytesUp,
      bytes_down: this.#c.bytesDown,
      reply_sockets: this.#replies.size,
      reply_opened: r.opened,
      reply_evicted: r.evicted,
      reply_errors: r.errors,
      sniffed_quic: this.#c.sniffedQuic,
      sniff_timeouts: this.#c.sniffTimeouts,
      fail_fast: this.#c.failFast,
      unsolicited: this.#c.unsolicited,
      unsolicited_admitted: this.#c.admitted,
      shared_sockets: this.#shared.size,
      socks_associations: this.#relays.size,
      refused: rc.sent,
      refused_limited: rc.rateLimited,
      refused_errors: rc.errors,
      outbounds: Object.fromEntries(this.#perOutbound),
    };
  }

  // ------------------------------------------------------------- client side

  /** Hot path: a datagram of an existing session (false: no such session). */
  #known(key: string, data: Uint8Array): boolean {
    const s = this.#table.get(key);
    if (!s) return false;
    this.#c.datagramsUp++;
    this.#c.bytesUp += data.length;
    s.up += data.length;
    this.#table.touch(key, s);
    this.#handle(s, data);
    return true;
  }

  #fresh(
    key: string,
    data: Uint8Array,
    source: Endpoint,
    destination: Endpoint,
    mark: number | null,
    tos: number | null,
  ): void {
    this.#c.datagramsUp++;
    this.#c.bytesUp += data.length;
    const s = this.#create(key, source, destination, mark, tos);
    s.up += data.length;
    this.#handle(s, data);
  }

  #handle(s: Session, data: Uint8Array): void {
    switch (s.state) {
      case "open":
        this.#forward(s.upstream!, data);
        return;
      case "sniffing":
        if (!this.#hold(s, data)) return;
        s.sniffer!.push(data).then((r) => {
          if (s.state !== "sniffing") return;
          if (r.status === "found") {
            s.meta.protocol = r.protocol;
            if (r.domain) s.meta.domain = r.domain;
            this.#c.sniffedQuic++;
            this.#route(s);
          } else if (r.status === "not_this") {
            this.#route(s);
          }
        });
        return;
      case "connecting":
        this.#hold(s, data);
        return;
      default:
        if (s.refuse) this.#refuse(s, data);
        this.#table.drop();
    }
  }

  /**
   * Sends a client datagram (a view into the inbound's receive batch: valid
   * until the inbound's flush) to a session's upstream, batched per upstream.
   */
  #forward(up: Upstream, data: Uint8Array): void {
    const sock = up.batched, dest = up.dest;
    if (this.#fwdTo !== sock || this.#fwdDest !== dest) this.#flushForward();
    this.#fwdTo = sock;
    this.#fwdDest = dest;
    if (!this.#fwd.add(data, up.prefix)) {
      this.#flushForward();
      this.#fwdTo = sock;
      this.#fwdDest = dest;
      this.#fwd.add(data, up.prefix);
    }
  }

  /** Sends the batched client datagrams (the inbound calls it after each batch). */
  #flushForward(): void {
    const sock = this.#fwdTo;
    if (sock === null) return;
    this.#fwdTo = null;
    const n = this.#fwd.length;
    const sent = sock.sendBatch(this.#fwd, this.#fwdDest);
    this.#fwdDest = null;
    if (sent < n) this.#table.drop(n - sent);
  }

  /** Holds a copy of `data`; when the bound is hit, routes at once (no name) and sends. */
  #hold(s: Session, data: Uint8Array): boolean {
    if (
      s.pending.length >= this.#maxPending || s.pendingBytes + data.length > this.#maxPendingBytes
    ) {
      if (s.state === "sniffing") {
        this.#route(s);
        if ((s.state as State) === "open") {
          if (!s.upstream!.send(data)) this.#table.drop();
          return false;
        }
      }
      this.#table.drop();
      return false;
    }
    s.pending.push(data.slice());
    s.pendingBytes += data.length;
    return true;
  }

  #create(
    key: string,
    source: Endpoint,
    destination: Endpoint,
    mark: number | null,
    tos: number | null,
  ): Session {
    const meta: FlowMeta = { network: "udp", inbound: this.#tag, source, destination };
    // Rules see the box's mark without our TPROXY bit, and the datagram's DSCP.
    const m = markForRules(mark);
    if (m !== undefined && m !== 0) meta.mark = m;
    if (tos !== null) meta.dscp = dscpFromTos(tos);
    const s = this.#newSession(key, meta);
    this.#table.add(key, s);
    if (this.#sniffOn) {
      s.sniffer = new QuicSniffer();
      s.sniffTimer = setTimeout(() => {
        if (s.state !== "sniffing") return;
        // Datagrams already queued (a stalled process) may finish the flight.
        this.#inbound?.drainNow();
        // …and are looked at (decryption is async) before the wait counts as run out.
        const sniffer = s.sniffer;
        const timeOut = () => {
          if (s.state !== "sniffing") return;
          this.#c.sniffTimeouts++;
          this.#route(s);
        };
        if (sniffer) sniffer.settled().then(timeOut);
        else timeOut();
      }, this.#sniffTimeout);
    } else {
      this.#route(s);
    }
    return s;
  }

  /** A new session (not yet in the table) of the flow `meta`, keyed `key`. */
  #newSession(key: string, meta: FlowMeta): Session {
    return {
      id: this.#newId(),
      key,
      meta,
      clientSa: sockaddrOf(meta.source),
      dstKey: endpointKey(meta.destination),
      lastActive: 0,
      timeoutMs: sessionTimeout(this.#timeouts, meta.destination, undefined),
      state: "sniffing",
      pending: [],
      pendingBytes: 0,
      sniffer: null,
      sniffTimer: undefined,
      upstream: null,
      outbound: null,
      rule: null,
      refusedAt: -Infinity,
      refuse: false,
      startedAt: Date.now(),
      up: 0,
      down: 0,
      detach: null,
      openedByRemote: false,
    };
  }

  /** Takes the rule decision against the newest snapshot and opens the upstream. */
  #route(s: Session): void {
    if (s.sniffTimer !== undefined) clearTimeout(s.sniffTimer);
    s.sniffTimer = undefined;
    s.sniffer = null;
    const snap = this.#snapshot();
    const meta = s.meta;
    if (meta.domain === undefined && this.#nameOf !== null) {
      const name = this.#nameOf(meta.destination.addr);
      if (name !== undefined) meta.domain = name;
    }
    let decision: Decision;
    try {
      decision = snap.engine.match(meta);
    } catch (e) {
      // Never expected (a bug, e.g. a retired engine): this session fails, the plane goes on.
      this.#warn("udp: rule engine failed; dropping session", { id: s.id, error: e });
      this.#fail(s, "failed");
      return;
    }
    s.outbound = decision.outbound;
    s.rule = decision.rule;
    s.timeoutMs = sessionTimeout(this.#timeouts, meta.destination, meta.protocol);
    this.#perOutbound.set(decision.outbound, (this.#perOutbound.get(decision.outbound) ?? 0) + 1);
    const cfg = snap.outbounds.get(decision.outbound)?.config;
    if (this.#log.enabled("debug")) {
      this.#log.debug("udp session", {
        id: s.id,
        src: formatEndpoint(meta.source),
        dst: formatEndpoint(meta.destination),
        domain: meta.domain,
        protocol: meta.protocol,
        outbound: decision.outbound,
        rule: decision.rule ?? "final",
      });
    }
    if (!cfg) {
      this.#warn("udp: outbound is not configured; dropping session", {
        outbound: decision.outbound,
      });
      this.#fail(s, "failed");
      return;
    }
    try {
      switch (cfg.type) {
        case "block": {
          const first = s.pending[0];
          this.#fail(s, "blocked");
          if (cfg.mode === "reset") {
            // UDP has no RST: answer like a closed port (ICMP port unreachable).
            s.refuse = true;
            this.#refuser.setMark(snap.config.route.default_mark);
            if (first) this.#refuse(s, first);
          }
          return;
        }
        case "direct": {
          const opts = directOptions(cfg, snap, meta.destination);
          if (this.#eim) s.upstream = this.#sharedLeg(s, decision.outbound, opts);
          else {
            const fd = openUdpUpstream(meta.destination, opts);
            s.upstream = new SocketUpstream(fd, this.#reactor, this.#upstreamCallbacks(s));
          }
          this.#open(s);
          return;
        }
        case "socks":
          if (this.#health !== null && !this.#health.admit(decision.outbound)) {
            // Known down: no ASSOCIATE, no connect timeout (one trial now and
            // then for a passive check, as for TCP flows).
            this.#c.failFast++;
            this.#log.debug("udp: outbound down: failing new session", {
              id: s.id,
              outbound: decision.outbound,
            });
            this.#fail(s, "failed");
            return;
          }
          this.#joinSocks(s, cfg, snap.config.route.default_mark);
          return;
      }
    } catch (e) {
      this.#warn("udp: cannot open upstream", {
        id: s.id,
        outbound: decision.outbound,
        dst: formatEndpoint(meta.destination),
        error: e,
      });
      this.#fail(s, "failed");
    }
  }

  /** Warns at most once a second (EMFILE & co. would otherwise flood the log). */
  #warn(msg: string, fields: Record<string, unknown>): void {
    const now = performance.now();
    if (now - this.#lastWarn < 1000) {
      this.#warnsSuppressed++;
      return;
    }
    this.#lastWarn = now;
    const suppressed = this.#warnsSuppressed || undefined;
    this.#warnsSuppressed = 0;
    this.#log.warn(msg, { ...fields, suppressed });
  }

  #open(s: Session): void {
    s.state = "open";
    const held = s.pending;
    s.pending = [];
    s.pendingBytes = 0;
    for (const d of held) if (!s.upstream!.send(d)) this.#table.drop();
  }

  /** Refuses one datagram of a blocked session with ICMP port unreachable (rate-limited). */
  #refuse(s: Session, data: Uint8Array): void {
    const r = this.#refuser.refuse(
      s.meta.source,
      s.meta.destination,
      data,
      s,
      (s.meta.dscp ?? 0) << 2,
    );
    if (r === "error" && this.#refuser.lastError !== null) {
      this.#warn("udp: cannot send ICMP port unreachable", {
        id: s.id,
        dst: formatEndpoint(s.meta.destination),
        error: this.#refuser.lastError,
      });
      this.#refuser.lastError = null;
    }
  }

  #fail(s: Session, state: "blocked" | "failed"): void {
    s.state = state;
    this.#table.drop(s.pending.length);
    s.pending = [];
    s.pendingBytes = 0;
  }

  /**
   * Session `s` joins the SOCKS relay of its client port through `cfg`
   * (opened on first use, shared by its sessions with `endpoint_independent`;
   * one per session with `per_destination`) and opens once it is ready.
   */
  #joinSocks(
    s: Session,
    cfg: Extract<OutboundConfig, { type: "socks" }>,
    defaultMark: number,
  ): void {
    const dst = s.meta.destination;
    const key = this.#relayKey(s, cfg, defaultMark);
    let sh = this.#relays.get(key);
    if (sh === undefined) {
      const shared: SharedRelay = {
        key,
        byRemote: new Map(),
        admitted: 0,
        relay: null,
        done: false,
        close: () => {
          shared.done = true;
          const relay = shared.relay;
          if (relay === null) return;
          if (this.#fwdTo === relay.sock) this.#flushForward();
          relay.close();
        },
      };
      this.#relays.set(key, sh = shared);
      SocksRelay.open(cfg, defaultMark, this.#reactor, {
        batch: this.#upBatch,
        onData: (data) => this.#relayReply(shared, data),
        onBatchEnd: () => this.#flushReplies(),
        onEnd: (e) => this.#relayEnded(shared, e),
      }).then((relay) => {
        this.#health?.reportSuccess(cfg.tag);
        if (shared.done) {
          relay.close();
          return;
        }
        shared.relay = relay;
        relay.ended.then(() =>
          this.#relayEnded(shared, new Error("SOCKS5 control connection closed"))
        );
        for (const w of [...shared.byRemote.values()]) {
          if (w.state === "connecting") this.#attachSocks(w, relay);
        }
      }, (e) => {
        this.#health?.reportFailure(cfg.tag, e, dst);
        shared.done = true;
        if (this.#relays.get(key) === shared) this.#relays.delete(key);
        const waiting = [...shared.byRemote.values()].filter((w) => w.state === "connecting");
        if (waiting.length > 0) {
          this.#warn("udp: SOCKS5 UDP ASSOCIATE failed", {
            id: waiting[0]!.id,
            sessions: waiting.length,
            outbound: cfg.tag,
            error: e,
          });
        }
        for (const w of waiting) this.#fail(w, "failed");
      });
    }
    this.#join(s, sh, this.#relays, sockaddrKey(sockaddrOf(dst)));
    s.state = "connecting";
    if (sh.relay !== null) this.#attachSocks(s, sh.relay);
  }

  /** The relay session `s` shares through `cfg`: its client port's (`endpoint_independent`), or its own. */
  #relayKey(
    s: Session,
    cfg: Extract<OutboundConfig, { type: "socks" }>,
    defaultMark: number,
  ): string {
    const mark = cfg.routing_mark ?? defaultMark;
    return `${this.#eim ? endpointKey(s.meta.source) : s.key}|${cfg.tag}|${mark}|${
      cfg.dscp ?? ""
    }|${cfg.server}|${cfg.server_port}`;
  }

  #attachSocks(s: Session, relay: SocksRelay): void {
    s.upstream = new SocksLeg(relay, s.meta.destination);
    this.#open(s);
  }

  /**
   * A datagram from a SOCKS relay (with its header): to the session of the
   * sender it names; a relay of one session (`per_destination`) takes
   * whatever it gets, as the relay may name another address.
   */
  #relayReply(sh: SharedRelay, buf: Uint8Array): void {
    let s: Session | undefined;
    let data: Uint8Array;
    if (!this.#eim) {
      const r = decodeUdpDatagram(buf);
      if (!r.ok) return;
      s = sh.byRemote.values().next().value;
      data = r.data;
    } else {
      const src = socksSourceKey(buf);
      if (src === null) return;
      s = sh.byRemote.get(src.key) ??
        (this.#eif ? this.#admit(sh, src.key, socksSender(buf)) : undefined);
      if (s === undefined) {
        this.#c.unsolicited++;
        return;
      }
      data = buf.subarray(src.start);
    }
    if (s !== undefined) this.#reply(s, data);
  }

  /** A relay failed or its control connection closed (not after its last session left). */
  #relayEnded(sh: SharedRelay, e: unknown): void {
    if (!sh.done) this.#endShared(sh, "udp: SOCKS relay ended", e);
  }

  /**
   * Session `s` (to the destination `remote`, a `sockaddrKey`) joins `sh`,
   * one of `owners`; when its last session leaves (`Session.detach`), `sh`
   * is dropped from `owners` and closed.
   */
  #join(s: Session, sh: Shared, owners: Map<string, Shared>, remote: string): void {
    sh.byRemote.set(remote, s);
    s.detach = () => {
      if (sh.byRemote.get(remote) === s) sh.byRemote.delete(remote);
      if (sh.byRemote.size > 0) return;
      if (owners.get(sh.key) === sh) owners.delete(sh.key);
      sh.close();
    };
  }

  /**
   * Endpoint-independent filtering: a datagram from `from` (its
   * `sockaddrKey` is `remote`), whom no session of `sh` sent to, opens a
   * session from `sh`'s client to `from`, as if the client had sent to it
   * first, when the rules route that flow (the client's address, marks and
   * DSCP) through the same outbound and the same shared socket or relay, and
   * `sh` holds fewer than {@linkcode UDP_ADMITTED_MAX} such sessions and the
   * plane fewer than half its `udp_max_sessions` (the other half stays for
   * sessions clients open, whatever a flood of strangers does). The
   * client's answers then find the session like any other. Returns the
   * session, or undefined (the datagram is unsolicited).
   */
  #admit(
    sh: SharedSocket | SharedRelay,
    remote: string,
    from: Endpoint | null,
  ): Session | undefined {
    const like: Session | undefined = sh.byRemote.values().next().value;
    if (from === null || like === undefined || sh.admitted >= UDP_ADMITTED_MAX) return undefined;
    if (this.#admittedOpen >= this.#table.maxSessions >> 1) return undefined;
    const meta: FlowMeta = { ...like.meta, destination: from };
    delete meta.domain;
    delete meta.protocol;
    // The pair's key as the inbound builds it: the client's part of a session's key, then `remote`.
    const key = like.key.slice(0, 3 + like.key.charCodeAt(0)) + remote;
    if (this.#table.get(key) !== undefined) return undefined;
    const snap = this.#snapshot();
    // Counted only if admitted: a refused stranger is no flow of that rule's.
    const d = snap.engine.decide(meta);
    const cfg = snap.outbounds.get(d.outbound)?.config;
    let upstream: Upstream;
    if ("sock" in sh) {
      if (cfg?.type !== "direct") return undefined;
      const opts = directOptions(cfg, snap, from);
      if (sharedKey(meta, d.outbound, opts) !== sh.key) return undefined;
      upstream = new SharedLeg(sh.sock, sockaddrOf(from));
    } else {
      // `like` has the same client port: the same relay key (filtering implies the mapping).
      if (cfg?.type !== "socks" || sh.relay === null) return undefined;
      if (this.#relayKey(like, cfg, snap.config.route.default_mark) !== sh.key) return undefined;
      upstream = new SocksLeg(sh.relay, from);
    }
    // Only now: a refused stranger costs no session id and no rule hit.
    snap.engine.count(d);
    const s = this.#newSession(key, meta);
    s.upstream = upstream;
    this.#join(s, sh, "sock" in sh ? this.#shared : this.#relays, remote);
    s.outbound = d.outbound;
    s.rule = d.rule;
    s.state = "open";
    s.openedByRemote = true;
    sh.admitted++;
    this.#admittedOpen++;
    const leave = s.detach!;
    s.detach = () => {
      sh.admitted--;
      this.#admittedOpen--;
      leave();
    };
    // Joined first: should adding it evict `sh`'s last other session, `sh` stays open.
    this.#table.add(key, s);
    this.#c.admitted++;
    this.#perOutbound.set(d.outbound, (this.#perOutbound.get(d.outbound) ?? 0) + 1);
    if (this.#log.enabled("debug")) {
      this.#log.debug("udp session opened by the remote (endpoint-independent filtering)", {
        id: s.id,
        src: formatEndpoint(meta.source),
        dst: formatEndpoint(from),
        outbound: d.outbound,
        rule: d.rule ?? "final",
      });
    }
    return s;
  }

  /** A shared socket or relay failed: its sessions end (the last one out closes it). */
  #endShared(sh: Shared, what: string, e: unknown): void {
    this.#log.debug(what, { sessions: sh.byRemote.size, error: e });
    for (const w of [...sh.byRemote.values()]) {
      if (w.state !== "closed") this.#table.delete(w.key, "closed");
    }
  }

  // ------------------------------------------------------------ upstream side

  /**
   * Session `s`'s leg on the shared socket of its client through direct
   * outbound `tag` with `opts` (opened on first use; closed with its last
   * session).
   */
  #sharedLeg(s: Session, tag: string, opts: UdpUpstreamOptions): Upstream {
    const dst = s.meta.destination;
    const key = sharedKey(s.meta, tag, opts);
    let sh = this.#shared.get(key);
    if (sh === undefined) {
      const fd = openUdpShared(dst, opts);
      const shared: SharedSocket = {
        key,
        byRemote: new Map(),
        admitted: 0,
        sock: null!,
        close: () => {
          if (this.#fwdTo === shared.sock) this.#flushForward();
          shared.sock.close();
        },
      };
      shared.sock = new SocketUpstream(fd, this.#reactor, {
        batch: this.#upBatch,
        onData: (data, i) => this.#sharedReply(shared, data, i),
        onBatchEnd: () => this.#flushReplies(),
        onEnd: (e) => this.#endShared(shared, "udp: shared upstream socket ended", e),
      });
      this.#shared.set(key, sh = shared);
    }
    const dest = sockaddrOf(dst);
    this.#join(s, sh, this.#shared, sockaddrKey(dest));
    return new SharedLeg(sh.sock, dest);
  }

  /**
   * A datagram on a shared socket: to the session that sent to its sender;
   * else (endpoint-independent filtering) to a session it opens, or dropped.
   */
  #sharedReply(sh: SharedSocket, data: Uint8Array, i: number): void {
    const remote = this.#upBatch.sourceKey(i);
    const s = sh.byRemote.get(remote) ??
      (this.#eif ? this.#admit(sh, remote, this.#upBatch.get(i).source) : undefined);
    if (s === undefined) {
      this.#c.unsolicited++;
      return;
    }
    this.#reply(s, data);
  }

  /** What a session's upstream read loop reports to. */
  #upstreamCallbacks(s: Session): UpstreamCallbacks {
    return {
      batch: this.#upBatch,
      onData: (data) => this.#reply(s, data),
      onBatchEnd: () => this.#flushReplies(),
      onEnd: (e) => this.#upstreamEnded(s, e),
    };
  }

  /**
   * A datagram from the upstream (a view into the read batch, valid until
   * the batch ends): queued to go to the client from the original
   * destination when the batch ends.
   */
  #reply(s: Session, data: Uint8Array): void {
    if (s.state !== "open") return;
    if (s.meta.destination.port === 53 && this.#onDnsReply !== null) this.#onDnsReply(data);
    this.#table.touch(s.key, s);
    if (this.#repTo !== s) {
      // Before the cache lookup, which may close its least recent socket.
      this.#flushReplies();
      const fd = this.#replies.get(s.meta.destination, s.dstKey);
      if (fd < 0) {
        this.#table.drop();
        return;
      }
      this.#repTo = s;
      this.#repFd = fd;
    }
    if (!this.#rep.add(data)) {
      const fd = this.#repFd;
      this.#flushReplies();
      this.#repTo = s;
      this.#repFd = fd;
      this.#rep.add(data);
    }
  }

  /** Sends the queued replies (after each upstream read batch). */
  #flushReplies(): void {
    const s = this.#repTo;
    if (s === null) return;
    this.#repTo = null;
    const fd = this.#repFd;
    const n = this.#rep.length;
    const sent = this.#rep.flush(fd, s.clientSa, this.#gsoMax.get(fd) ?? Infinity);
    if (this.#rep.gsoRefused) {
      this.#gsoMax.set(fd, Math.min(this.#gsoMax.get(fd) ?? Infinity, this.#rep.gsoLimit));
    }
    if (sent < n) this.#table.drop(n - sent);
    const down = this.#rep.sentBytes;
    this.#c.datagramsDown += sent;
    this.#c.bytesDown += down;
    s.down += down;
  }

  #upstreamEnded(s: Session, e: unknown): void {
    if (s.state === "closed") return;
    this.#log.debug("udp: upstream ended", { id: s.id, error: e });
    this.#table.delete(s.key, "closed");
  }

  #onRemove(s: Session, reason: RemoveReason): void {
    if (s.sniffTimer !== undefined) clearTimeout(s.sniffTimer);
    s.sniffTimer = undefined;
    s.sniffer = null;
    const prev = s.state;
    s.state = "closed";
    // Nothing queued may outlive the socket (its fd number could be reused).
    if (this.#fwdTo !== null && this.#fwdTo === s.upstream?.batched) this.#flushForward();
    if (this.#repTo === s) this.#flushReplies();
    s.upstream?.close();
    s.upstream = null;
    const detach = s.detach;
    s.detach = null;
    detach?.();
    if (s.pending.length > 0) this.#table.drop(s.pending.length);
    s.pending = [];
    if (this.#log.enabled("trace")) {
      this.#log.trace("udp session closed", { id: s.id, reason, state: prev });
    }
  }

  /** Closes the inbound sockets, every session and reply socket. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#sweep);
    await this.#inbound?.close();
    this.#flushForward();
    this.#flushReplies();
    this.#table.clear("closed");
    this.#replies.clear();
    if (this.#ownRefuser) this.#refuser.close();
  }

  /** The sessions in the table, least recently active first. */
  sessions(): UdpSessionInfo[] {
    return [...this.#table.values()];
  }

  /** Closes the sessions `pick` selects (their upstreams with them); returns how many. */
  closeSessions(pick: (s: UdpSessionInfo) => boolean): number {
    const gone = [...this.#table.values()].filter(pick);
    for (const s of gone) this.#table.delete(s.key, "closed");
    return gone.length;
  }

  /** Expires idle sessions now (tests; the plane also sweeps on a timer). */
  sweep(): number {
    return this.#table.sweep();
  }
}

/** What sessions share (a direct socket, a SOCKS relay): its key and its sessions. */
interface Shared {
  readonly key: string;
  /** The session of each destination (by `sockaddrKey`) sent to through it. */
  readonly byRemote: Map<string, Session>;
  /** Sessions in `byRemote` that a remote opened (endpoint-independent filtering). */
  admitted: number;
  /** Closes the socket or relay (its last session left). */
  readonly close: () => void;
}

/**
 * Most sessions strangers may open through one mapping (a client port's
 * shared socket or relay) with endpoint-independent filtering: a peer-to-peer
 * client hears from many peers, but a flood of spoofed senders must not
 * fill the session table. Past it, strangers are dropped as unsolicited.
 */
export const UDP_ADMITTED_MAX = 256;

/** The shared socket of the flow `meta` through direct outbound `tag` with `opts`. */
function sharedKey(meta: FlowMeta, tag: string, opts: UdpUpstreamOptions): string {
  return `${endpointKey(meta.source)}|${meta.destination.addr.length}|${tag}|${optionsKey(opts)}`;
}

/** A direct outbound's socket shared by one client's sessions (endpoint-independent mapping). */
interface SharedSocket extends Shared {
  sock: SocketUpstream;
}

/** Socket options as a key part: sessions share a socket only when all of them match. */
function optionsKey(o: UdpUpstreamOptions): string {
  return [o.mark ?? "", o.bindInterface ?? "", o.tos ?? "", o.bindAddress?.join(".") ?? ""].join(
    "|",
  );
}

/** Sends datagrams to a shared socket's destinations. */
const sharedSender = new DatagramSender();

/** One session's use of a shared socket: its datagrams go to its destination. */
class SharedLeg implements Upstream {
  constructor(readonly batched: SocketUpstream, readonly dest: Uint8Array) {}

  readonly prefix = undefined;

  send(data: Uint8Array): boolean {
    return this.batched.sendTo(data, this.dest);
  }

  /** The session leaves the socket when it ends (`Session.detach`), not here. */
  close(): void {}
}

/** Socket options of a direct outbound for one destination. */
export function directOptions(
  cfg: Extract<OutboundConfig, { type: "direct" }>,
  snap: { readonly config: { readonly route: Pick<RouteConfig, "default_mark"> } },
  dst: Endpoint,
): UdpUpstreamOptions {
  const o: UdpUpstreamOptions = {};
  const mark = cfg.routing_mark ?? snap.config.route.default_mark;
  if (mark) o.mark = mark;
  if (cfg.bind_interface !== null) o.bindInterface = cfg.bind_interface;
  if (cfg.dscp !== null) o.tos = cfg.dscp << 2;
  o.rcvbuf = UPSTREAM_RCVBUF;
  const src = dst.addr.length === 4 ? cfg.inet4_bind_address : cfg.inet6_bind_address;
  if (src !== null) {
    const a = parseIp(src);
    if (a && a.length === dst.addr.length) o.bindAddress = a;
  }
  return o;
}

/**
 * Receive buffer of a session's upstream socket (`SO_RCVBUFFORCE`, else
 * capped by `net.core.rmem_max`), as big as the inbound's: room for a
 * download's datagrams while the thread is busy elsewhere (a GC pause, a
 * reload's swap). In the UDP benches the reply path lost 2 % at 2 Gbit/s
 * with the kernel's default (~208 KiB), and 0.3–0.4 % at 1 Gbit/s during
 * back-to-back full reloads of the 102k-rule set with 1 MiB; none with
 * 4 MiB. Kernel memory, taken only while datagrams wait.
 */
export const UPSTREAM_RCVBUF = 4 << 20;

/** Datagrams a session's upstream reads in a row before it lets other sockets run. */
const UPSTREAM_BURST = 64;

/** Where an upstream's read loop delivers. */
interface UpstreamCallbacks {
  /** The receive batch (shared: the loop hands each batch over before its next read). */
  readonly batch: RecvBatch;
  /** One datagram (a view into `batch`, valid until `onBatchEnd`), from slot `i` of `batch`. */
  readonly onData: (data: Uint8Array, i: number) => void;
  /** After the datagrams of one read. */
  readonly onBatchEnd: () => void;
  /** The socket failed (not for ICMP errors, which are survived). */
  readonly onEnd: (e: unknown) => void;
}

/**
 * A connected UDP socket and its read loop (direct outbound; the relay
 * socket of a SOCKS one, with `decode`). Reads with `recvmmsg`; errors from
 * ICMP (ECONNREFUSED & co.) are survived; anything else ends the session.
 */
class SocketUpstream implements Upstream {
  readonly #fd: number;
  readonly #reactor: Reactor;
  #closed = false;
  /** Largest segment the socket may still be offered UDP GSO for (see `SendBatch.gsoLimit`). */
  #gsoMax = Infinity;

  constructor(
    fd: number,
    reactor: Reactor,
    readonly cb: UpstreamCallbacks,
    readonly decode?: (data: Uint8Array) => Uint8Array | null,
  ) {
    this.#fd = fd;
    this.#reactor = reactor;
    // Oneshot: a socket that sends without waiting gets a write-space edge per
    // datagram, and one read in a burst an edge per datagram that arrives.
    reactor.register(fd, { oneshot: true });
    void this.#loop();
  }

  get batched(): SocketUpstream {
    return this;
  }

  readonly prefix = undefined;
  readonly dest = null;

  send(data: Uint8Array): boolean {
    if (this.#closed) return false;
    try {
      return send(this.#fd, data) !== WOULD_BLOCK;
    } catch {
      return false; // ECONNREFUSED from an earlier ICMP, ENOBUFS, …: drop this one
    }
  }

  /** Sends one datagram to `dest` (an unconnected socket); false when it was dropped. */
  sendTo(data: Uint8Array, dest: Uint8Array): boolean {
    if (this.#closed) return false;
    try {
      return sharedSender.sendTo(this.#fd, data, dest) !== WOULD_BLOCK;
    } catch {
      return false; // ENOBUFS, EMSGSIZE, …: drop this one
    }
  }

  /**
   * Sends and clears `batch`, to `dest` (encoded sockaddr) or the connected
   * peer: the number sent (the rest is dropped).
   */
  sendBatch(batch: SendBatch, dest: Uint8Array | null = null): number {
    if (this.#closed) {
      batch.clear();
      return 0;
    }
    const sent = batch.flush(this.#fd, dest, this.#gsoMax);
    if (batch.gsoRefused) this.#gsoMax = Math.min(this.#gsoMax, batch.gsoLimit);
    return sent;
  }

  async #loop(): Promise<void> {
    const { batch, onData, onBatchEnd, onEnd } = this.cb;
    let burst = 0;
    while (!this.#closed) {
      let n: number;
      try {
        n = batch.receive(this.#fd);
      } catch (e) {
        if (this.#closed) return;
        const code = (e as { code?: string }).code;
        if (code === "ECONNREFUSED" || code === "EHOSTUNREACH" || code === "ENETUNREACH") continue;
        onEnd(e);
        return;
      }
      if (n !== WOULD_BLOCK) {
        burst += n;
        for (let i = 0; i < n && !this.#closed; i++) {
          const view = batch.data(i);
          const data = this.decode ? this.decode(view) : view;
          if (data) onData(data, i);
        }
        onBatchEnd();
        if (burst < UPSTREAM_BURST) continue;
      }
      // Nothing left to read, or a reply flood: let the other sockets run
      // (after a flood the wait returns on the reactor's next poll, the
      // socket being readable still).
      burst = 0;
      try {
        await this.#reactor.readable(this.#fd);
      } catch (e) {
        if (!this.#closed && !isClosedError(e)) onEnd(e);
        return;
      }
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#reactor.unregister(this.#fd);
    closeFd(this.#fd);
  }
}

/**
 * A SOCKS5 UDP association: a control TCP connection plus a UDP socket
 * connected to its relay. Datagrams to any destination go through it, each
 * with its SOCKS5 header; what the relay sends back reaches `cb.onData`
 * with its header (the plane decodes it: the header names the sender).
 */
class SocksRelay {
  readonly #assoc: Socks5UdpAssociation<FdStream>;
  readonly sock: SocketUpstream;
  #closed = false;

  private constructor(assoc: Socks5UdpAssociation<FdStream>, sock: SocketUpstream) {
    this.#assoc = assoc;
    this.sock = sock;
  }

  /** Resolves when the control connection ends (not after {@linkcode close}). */
  get ended(): Promise<void> {
    return this.#assoc.ended.then(() => {
      if (this.#closed) return new Promise<void>(() => {});
    });
  }

  static async open(
    cfg: Extract<OutboundConfig, { type: "socks" }>,
    defaultMark: number,
    reactor: Reactor,
    cb: UpstreamCallbacks,
  ): Promise<SocksRelay> {
    const addr = parseIp(cfg.server);
    if (!addr) {
      throw new TypeError(
        `outbound ${cfg.tag}: UDP needs an IP literal server, got "${cfg.server}"`,
      );
    }
    const server = { addr, port: cfg.server_port };
    const mark = cfg.routing_mark ?? defaultMark;
    const tos = cfg.dscp !== null ? cfg.dscp << 2 : undefined;
    const control = await connectTcp(server, {
      timeoutMs: cfg.connect_timeout_ms,
      reactor,
      ...(mark ? { mark } : {}),
      ...(tos !== undefined ? { tos } : {}),
    });
    let fd = -1;
    try {
      // Send from the control connection's local address: servers such as
      // dante accept relay datagrams only from the client's IP.
      const local = control.localAddress();
      fd = openUdpBound({ addr: local.addr, port: 0 }, {
        ...(mark ? { mark } : {}),
        ...(tos !== undefined ? { tos } : {}),
      });
      setRecvBuffer(fd, UPSTREAM_RCVBUF);
      const hint = getsockname(fd);
      const auth = cfg.username !== null
        ? { username: cfg.username, password: cfg.password ?? "" }
        : undefined;
      const assoc = await socks5UdpAssociate(control, {
        server,
        auth,
        timeoutMs: cfg.connect_timeout_ms,
        clientHint: hint,
      }, `${cfg.server}:${cfg.server_port}`);
      connect(fd, assoc.relay);
      const sock = new SocketUpstream(fd, reactor, cb);
      fd = -1;
      return new SocksRelay(assoc, sock);
    } catch (e) {
      if (fd >= 0) closeFd(fd);
      control.close();
      throw e;
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.sock.close();
    this.#assoc.close();
  }
}

/** One session's use of a SOCKS relay: its datagrams get the header of its destination. */
class SocksLeg implements Upstream {
  readonly #relay: SocksRelay;
  readonly #header: Uint8Array;

  constructor(relay: SocksRelay, dst: Endpoint) {
    this.#relay = relay;
    this.#header = encodeUdpDatagram(
      { address: { kind: "ip", addr: dst.addr }, port: dst.port },
      new Uint8Array(0),
    );
  }

  get batched(): SocketUpstream {
    return this.#relay.sock;
  }

  get prefix(): Uint8Array {
    return this.#header;
  }

  readonly dest = null;

  send(data: Uint8Array): boolean {
    const out = new Uint8Array(this.#header.length + data.length);
    out.set(this.#header);
    out.set(data, this.#header.length);
    return this.#relay.sock.send(out);
  }

  /** The session's relay membership ends with the session (`Session.detach`), not here. */
  close(): void {}
}

/**
 * A SOCKS relay and the sessions that use it: every session of one client
 * port through one socks outbound (`endpoint_independent`), or one session
 * (`per_destination`). Sessions join while it opens and wait for it.
 */
interface SharedRelay extends Shared {
  relay: SocksRelay | null;
  /** No session left (or it failed): a relay that opens now is closed at once. */
  done: boolean;
}

/**
 * The key of the sender a relay datagram's SOCKS5 header names, as
 * {@linkcode sockaddrKey} gives it, and where its payload starts; null when
 * it is not a whole, unfragmented datagram from an IP address. An
 * IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a relay listening on a
 * dual-stack socket may name) is keyed as the IPv4 address it maps: a
 * session to an IPv4 destination is keyed in that form.
 */
export function socksSourceKey(buf: Uint8Array): { key: string; start: number } | null {
  if (buf.length < 10 || buf[0] !== 0 || buf[1] !== 0 || buf[2] !== 0) return null;
  const fc = String.fromCharCode;
  if (buf[3] === 1) {
    return { key: fc(4, buf[8]!, buf[9]!, buf[4]!, buf[5]!, buf[6]!, buf[7]!), start: 10 };
  }
  if (buf[3] === 4 && buf.length >= 22) {
    if (isV4Mapped(buf, 4)) {
      return { key: fc(4, buf[20]!, buf[21]!, buf[16]!, buf[17]!, buf[18]!, buf[19]!), start: 22 };
    }
    let k = fc(16, buf[20]!, buf[21]!);
    for (let j = 4; j < 20; j += 4) k += fc(buf[j]!, buf[j + 1]!, buf[j + 2]!, buf[j + 3]!);
    return { key: k, start: 22 };
  }
  return null;
}

/** Whether the 16 address bytes at `off` are an IPv4-mapped IPv6 address (`::ffff:0:0/96`). */
function isV4Mapped(b: Uint8Array, off: number): boolean {
  for (let j = off; j < off + 10; j++) if (b[j] !== 0) return false;
  return b[off + 10] === 0xff && b[off + 11] === 0xff;
}

/**
 * The sender a relay datagram's SOCKS5 header names, as an endpoint (an
 * IPv4-mapped address as IPv4, as {@linkcode socksSourceKey} keys it), or
 * null when it names none.
 */
function socksSender(buf: Uint8Array): Endpoint | null {
  const r = decodeUdpDatagram(buf);
  if (!r.ok || r.source.address.kind !== "ip") return null;
  return { addr: unmapIpv4(r.source.address.addr), port: r.source.port };
}
