/**
 * The IPC protocol: NDJSON over a Unix socket, one JSON object per line each
 * way. A request is `{"id":1,"method":"reload","params":{...}}`; its reply is
 * `{"id":1,"result":...}` or `{"id":1,"error":{"code":"...","message":"..."}}`.
 * This module holds the types of every method, the request/response
 * parsers and the per-method parameter validation (bounded, naming the
 * field). No I/O.
 *
 * @module
 */

import type { Endpoint, FlowMeta, Network, SniffedProtocol } from "../core/types.ts";
import { parseEndpoint, parseIp, unmapIpv4 } from "../core/ip.ts";

// ---------------------------------------------------------------- errors

/** Error codes the server sends. */
export const ERROR_CODES = [
  "parse_error",
  "invalid_request",
  "method_not_found",
  "invalid_params",
  "config_invalid",
  "internal",
  "line_too_long",
] as const;

/** An error code the server sends. */
export type ServerErrorCode = typeof ERROR_CODES[number];

/**
 * Error codes only the client produces: no answer in time, connection lost
 * or refused, or a reply that is not valid protocol.
 */
export type ClientErrorCode = "timeout" | "connection_closed" | "connect_failed" | "bad_response";

/** Any IPC error code. */
export type IpcErrorCode = ServerErrorCode | ClientErrorCode;

/** The `error` member of an error reply. */
export interface IpcErrorBody {
  code: ServerErrorCode;
  message: string;
  data?: unknown;
}

/**
 * An IPC failure with a machine-readable `code`. Handlers throw it to choose
 * the reply's code (e.g. `config_invalid`); the client rejects with it.
 */
export class IpcError extends Error {
  override readonly name = "IpcError";
  /** Machine-readable code, e.g. `config_invalid`. */
  readonly code: IpcErrorCode;
  /** Extra detail sent with the error, if any. */
  readonly data: unknown;

  /** Creates an error with a code, a message and optional data. */
  constructor(code: IpcErrorCode, message: string, options?: { data?: unknown; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.data = options?.data;
  }
}

/** True when `code` is one the server may send. */
export function isServerErrorCode(code: unknown): code is ServerErrorCode {
  return typeof code === "string" && (ERROR_CODES as readonly string[]).includes(code);
}

// ---------------------------------------------------------------- envelope

/** A request id: an integer or a short string, echoed in the reply. */
export type RequestId = number | string;

/** A parsed request. `params` is still unvalidated. */
export interface IpcRequest {
  id: RequestId;
  method: string;
  params?: unknown;
}

/** A successful reply. */
export interface IpcResultResponse<R = unknown> {
  id: RequestId;
  result: R;
}

/** An error reply; `id` is null when the request's id could not be read. */
export interface IpcErrorResponse {
  id: RequestId | null;
  error: IpcErrorBody;
}

/** One reply line. */
export type IpcResponse<R = unknown> = IpcResultResponse<R> | IpcErrorResponse;

/** Longest accepted string id, in characters. */
export const MAX_ID_LENGTH = 128;
/** Longest accepted method name, in characters. */
export const MAX_METHOD_LENGTH = 64;

const encoder = new TextEncoder();

/** Encodes one message as a JSON line (with the trailing `\n`). */
export function encodeLine(message: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(message) + "\n");
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isValidId(id: unknown): id is RequestId {
  return (typeof id === "number" && Number.isSafeInteger(id)) ||
    (typeof id === "string" && id.length > 0 && id.length <= MAX_ID_LENGTH);
}

/** The result of {@linkcode parseRequest}: a request, or the error reply to send. */
export type ParsedRequest =
  | { ok: true; request: IpcRequest }
  | { ok: false; response: IpcErrorResponse };

/**
 * Parses one request line. Never throws: a bad line yields the error reply
 * to send (`parse_error` for bad JSON, `invalid_request` for a bad shape;
 * the id is echoed when it could be read).
 */
export function parseRequest(line: string): ParsedRequest {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (e) {
    return fail(null, "parse_error", `Cannot parse request: ${(e as Error).message}`);
  }
  if (!isRecord(value)) return fail(null, "invalid_request", "request: expected a JSON object");
  const id = isValidId(value.id) ? value.id : null;
  if (id === null) {
    return fail(
      null,
      "invalid_request",
      `id: expected an integer or a string of 1..${MAX_ID_LENGTH} characters`,
    );
  }
  for (const key of Object.keys(value)) {
    if (key !== "id" && key !== "method" && key !== "params") {
      return fail(id, "invalid_request", `${key}: unknown field`);
    }
  }
  const method = value.method;
  if (typeof method !== "string" || method.length === 0 || method.length > MAX_METHOD_LENGTH) {
    return fail(
      id,
      "invalid_request",
      `method: expected a string of 1..${MAX_METHOD_LENGTH} characters`,
    );
  }
  const request: IpcRequest = { id, method };
  if (value.params !== undefined && value.params !== null) request.params = value.params;
  return { ok: true, request };
}

function fail(
  id: RequestId | null,
  code: ServerErrorCode,
  message: string,
): { ok: false; response: IpcErrorResponse } {
  return { ok: false, response: { id, error: { code, message } } };
}

/**
 * Parses one reply line (client side). Throws an {@linkcode IpcError} with
 * code `bad_response` when the line is not a valid reply.
 */
export function parseResponse(line: string): IpcResponse {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (e) {
    throw new IpcError("bad_response", `Cannot parse reply: ${(e as Error).message}`);
  }
  if (!isRecord(value)) throw new IpcError("bad_response", "reply: expected a JSON object");
  const id = value.id;
  if (id !== null && !isValidId(id)) throw new IpcError("bad_response", "reply.id: invalid");
  if ("error" in value) {
    const err = value.error;
    if (!isRecord(err) || typeof err.message !== "string" || !isServerErrorCode(err.code)) {
      throw new IpcError("bad_response", "reply.error: expected {code, message}");
    }
    const body: IpcErrorBody = { code: err.code, message: err.message };
    if (err.data !== undefined) body.data = err.data;
    return { id, error: body };
  }
  if (!("result" in value) || id === null) {
    throw new IpcError("bad_response", "reply: expected a result or an error");
  }
  return { id, result: value.result };
}

// ---------------------------------------------------------------- method types

/** Result of `ping`. */
export interface PingResult {
  pong: true;
}

/** Health of an outbound as the router sees it. */
export type OutboundState = "up" | "down" | "degraded" | "unknown";

/** One outbound in `status` and `outbounds.list`. */
export interface OutboundInfo {
  tag: string;
  /** Config `type`: `direct`, `socks`, `block`. */
  type: string;
  /** Config `kind`, e.g. `wireguard`, `openvpn`, `xray`. */
  kind?: string;
  state: OutboundState;
  /** Flows currently using it. */
  flows: number;
  /** Free text: last error, pool size, interface, … */
  detail?: string;
}

/** Flow counters. */
export interface FlowCounts {
  active: number;
  tcp: number;
  udp: number;
  /** Flows accepted since start. */
  total: number;
}

/** What the last reload did. */
export interface LastReload {
  /** ISO 8601 time. */
  at: string;
  ok: boolean;
  /** Why it failed (field path and reason). */
  error?: string;
  /** A successful reload's duration, ms (absent from older routers). */
  took_ms?: number;
  /** Rules it compiled (see {@linkcode ReloadResult.rules_compiled}). */
  rules_compiled?: number;
}

/** The UDP session table of one inbound, in `status` and `stats`. */
export interface UdpInboundInfo {
  inbound: string;
  /** Open sessions and the table's bound. */
  sessions: number;
  max_sessions: number;
  created: number;
  expired: number;
  evicted: number;
  dropped: number;
  /** Transparent reply sockets open (bounded LRU). */
  reply_sockets: number;
  /** Sessions failed at once because their (socks) outbound was known down. */
  fail_fast?: number;
  /** Shared direct sockets open (`udp_mapping: "endpoint_independent"`). */
  shared_sockets?: number;
  /** Datagrams those dropped: their sender was never sent to by the client. */
  unsolicited?: number;
  /** Sessions a stranger's datagram opened (`udp_filtering: "endpoint_independent"`). */
  unsolicited_admitted?: number;
  /** SOCKS5 UDP associations open or opening. */
  socks_associations?: number;
}

/** Result of `status`. */
export interface StatusResult {
  version: string;
  pid: number;
  /** ISO 8601 start time. */
  started_at: string;
  uptime_s: number;
  /** File the running config came from; null for an inline config. */
  config_path: string | null;
  /** Number of rules in the active engine. */
  rules: number;
  /** The `route.final` outbound tag. */
  final: string;
  flows: FlowCounts;
  outbounds: OutboundInfo[];
  last_reload: LastReload | null;
  /** UDP session tables, one per inbound serving UDP. */
  udp?: UdpInboundInfo[];
  /** The process's memory, bytes (absent from older routers). */
  memory?: MemoryInfo;
}

/** Memory of the router process in `status` (`Deno.memoryUsage()`). */
export interface MemoryInfo {
  /** Resident set size: what the plan's "< 100 MB" is about. */
  rss: number;
  /** JS heap in use and reserved, main thread (the config worker's heap is in `rss` only). */
  heap_used: number;
  heap_total: number;
  /** Memory of JS objects held outside the heap (typed arrays: the rule indexes, buffers). */
  external: number;
}

/** Params of `reload`: exactly one of `path` (a config file) or `config` (inline). */
export type ReloadParams =
  & (
    | { path: string; config?: never }
    | { config: Record<string, unknown>; path?: never }
  )
  & {
    /** Close flows whose outbound is gone from the new config. */
    close_removed?: boolean;
  };

/** Result of `reload`. */
export interface ReloadResult {
  rules: number;
  outbounds: number;
  took_ms: number;
  /** Flows closed because of `close_removed`. */
  closed: number;
  /**
   * True when the route rules were unchanged since the last reload from a file: the compiled
   * indexes were reused (absent from older routers).
   */
  rules_reused?: boolean;
  /**
   * How many route rules this reload compiled: all of them, 0 when they were
   * unchanged, or, when a few were edited, only those the last full compile
   * lacks (the others' compiled indexes were reused). Absent from older routers.
   */
  rules_compiled?: number;
  /**
   * Where the config was compiled: `"worker"` (the config worker thread) or
   * `"main"` (the data-plane thread, paced: the worker could not run).
   * Absent from older routers.
   */
  compiled_on?: "worker" | "main";
}

/** Params of `route.test`: a flow as text. */
export interface RouteTestParams {
  /** Destination `IP:PORT` (`[v6]:PORT`). */
  dst: string;
  /** Sniffed name; lower-cased by validation. */
  domain?: string;
  /** Source `IP:PORT` or `IP`. */
  src?: string;
  network?: Network;
  protocol?: SniffedProtocol;
  mark?: number;
  dscp?: number;
  inbound?: string;
  /**
   * Without `domain`, test with the name the running router's DNS answers
   * gave `dst` (`route.dns_reverse_mapping`), as a flow without a sniffed
   * name would be routed; default true. Ignored offline and with `domain`.
   */
  dns?: boolean;
}

/** Result of `route.test`. */
export interface RouteTestResult {
  outbound: string;
  /** Index into `route.rules`, or null when `final` applied. */
  rule: number | null;
  /** The matching rule as JSON text, for humans. */
  rule_text?: string;
  /** True when no rule matched and `route.final` applied. */
  final: boolean;
  /** The name from DNS answers the flow was tested with (see {@linkcode RouteTestParams.dns}). */
  dns_name?: string;
}

/** Params of `connections.list`. */
export interface ConnectionsListParams {
  /** At most this many (default: server's choice). */
  limit?: number;
  /** Only flows on this outbound. */
  outbound?: string;
}

/** One flow in `connections.list`. */
export interface ConnectionInfo {
  id: number;
  network: Network;
  inbound: string;
  src: string;
  dst: string;
  domain?: string;
  protocol?: SniffedProtocol;
  outbound: string;
  rule: number | null;
  /** ISO 8601. */
  started_at: string;
  bytes_up: number;
  bytes_down: number;
  /**
   * UDP only, present when true: the remote opened the session, reaching
   * the client's mapping first (`udp_filtering: "endpoint_independent"`).
   */
  opened_by_remote?: boolean;
}

/** Result of `connections.list`. */
export interface ConnectionsListResult {
  connections: ConnectionInfo[];
  /** Flows matching the filter, before `limit`. */
  total: number;
}

/** Params of `connections.close`: exactly one of `id` or `outbound`. */
export type ConnectionsCloseParams = { id: number } | { outbound: string };

/** Result of `connections.close`. */
export interface ConnectionsCloseResult {
  closed: number;
}

/** Result of `outbounds.list`. */
export interface OutboundsListResult {
  outbounds: OutboundInfo[];
}

/** Per-outbound counters in `stats`. */
export interface OutboundStats {
  flows_active: number;
  flows_total: number;
  bytes_up: number;
  bytes_down: number;
  errors: number;
}

/** Params of `stats` (all optional; none at all is fine). */
export interface StatsParams {
  /** Include per-rule hit counters (`rules`, `rules_hit`). */
  rules?: boolean;
  /** At most this many rules in `rules` (default {@linkcode DEFAULT_RULES_LIMIT}). */
  limit?: number;
}

/** Rules listed by `stats {rules: true}` without a limit. */
export const DEFAULT_RULES_LIMIT = 100;

/** Result of `stats`. */
export interface StatsResult {
  uptime_s: number;
  flows: FlowCounts;
  bytes_up: number;
  bytes_down: number;
  reloads: number;
  reload_failures: number;
  outbounds: Record<string, OutboundStats>;
  /** Other named counters (sniff timeouts, pool misses, …). */
  counters?: Record<string, number>;
  /**
   * With `params.rules`: the route rules of the active engine that have
   * hits, most hit first (ties in rule order), at most `params.limit`, then
   * `final` (rule null). Counts of a rule carry over a reload when its text
   * is unchanged; an edited rule starts from zero.
   */
  rules?: { rule: number | null; outbound: string; hits: number }[];
  /** With `params.rules`: how many rules have hits (more than listed when over the limit). */
  rules_hit?: number;
  /** UDP session tables, one per inbound serving UDP. */
  udp?: UdpInboundInfo[];
}

/** Params of `shutdown`. */
export interface ShutdownParams {
  /**
   * How long open TCP flows may go on, ms (default 0: closed at once). New
   * flows are not taken meanwhile; UDP sessions end at once.
   */
  drain_ms?: number;
}

/** Longest `shutdown.drain_ms`: a day. */
export const MAX_DRAIN_MS = 86_400_000;

/** How long a replaced router's TCP flows may go on unless told (`router run --replace`, `router upgrade`). */
export const DEFAULT_TAKEOVER_DRAIN = "10m";

/** Result of `shutdown` (sent before the router stops taking flows). */
export interface ShutdownResult {
  /** Process id of the router that is stopping. */
  pid: number;
  /** Its open TCP flows when asked. */
  flows: number;
  drain_ms: number;
}

/** The method table: params and result type of every method. */
export interface IpcMethods {
  "ping": { params: undefined; result: PingResult };
  "status": { params: undefined; result: StatusResult };
  "reload": { params: ReloadParams; result: ReloadResult };
  "route.test": { params: RouteTestParams; result: RouteTestResult };
  "connections.list": { params: ConnectionsListParams; result: ConnectionsListResult };
  "connections.close": { params: ConnectionsCloseParams; result: ConnectionsCloseResult };
  "outbounds.list": { params: undefined; result: OutboundsListResult };
  "stats": { params: StatsParams; result: StatsResult };
  "shutdown": { params: ShutdownParams; result: ShutdownResult };
}

/** A method name. */
export type IpcMethod = keyof IpcMethods;
/** Params type of method `M`. */
export type IpcParams<M extends IpcMethod> = IpcMethods[M]["params"];
/** Result type of method `M`. */
export type IpcResult<M extends IpcMethod> = IpcMethods[M]["result"];

/** Every method name, in documentation order. */
export const METHODS: readonly IpcMethod[] = [
  "ping",
  "status",
  "reload",
  "route.test",
  "connections.list",
  "connections.close",
  "outbounds.list",
  "stats",
  "shutdown",
];

/** True when `name` is a known method. */
export function isMethod(name: string): name is IpcMethod {
  return (METHODS as readonly string[]).includes(name);
}

// ---------------------------------------------------------------- validation

/** Longest accepted `reload.path`. */
export const MAX_PATH_LENGTH = 4096;
/** Longest accepted domain (DNS limit). */
export const MAX_DOMAIN_LENGTH = 253;
/** Longest accepted tag (inbound / outbound). */
export const MAX_TAG_LENGTH = 256;
/** Largest accepted `connections.list.limit`. */
export const MAX_LIST_LIMIT = 100_000;

function invalid(field: string, message: string): IpcError {
  return new IpcError("invalid_params", `${field}: ${message}`);
}

function show(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? s.slice(0, 77) + "..." : s;
}

function checkKeys(obj: Record<string, unknown>, allowed: readonly string[], prefix: string): void {
  for (const key of Object.keys(obj)) {
    if (!allowed.includes(key)) throw invalid(`${prefix}${key}`, "unknown field");
  }
}

function asObject(params: unknown, prefix: string): Record<string, unknown> {
  if (params === undefined || params === null) return {};
  if (!isRecord(params)) {
    throw invalid(prefix.endsWith(".") ? prefix.slice(0, -1) : "flow", "expected an object");
  }
  return params;
}

function str(v: unknown, field: string, max: number): string {
  if (typeof v !== "string") throw invalid(field, `expected a string, got ${show(v)}`);
  if (v.length === 0 || v.length > max) {
    throw invalid(field, `expected 1..${max} characters, got ${v.length}`);
  }
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x1f\x7f]/.test(v)) throw invalid(field, "control characters are not allowed");
  return v;
}

function int(v: unknown, field: string, min: number, max: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    throw invalid(field, `${show(v)}: expected an integer in ${min}..${max}`);
  }
  return v;
}

/** A `route.test` result from an engine's answer (`Engine.explain`, `Router.routeTest`). */
export function routeTestResult(e: {
  outbound: string;
  rule: number | null;
  final: boolean;
  rule_json: unknown;
  dns_name?: string;
}): RouteTestResult {
  return {
    outbound: e.outbound,
    rule: e.rule,
    final: e.final,
    ...(e.rule_json !== null ? { rule_text: JSON.stringify(e.rule_json) } : {}),
    ...(e.dns_name !== undefined ? { dns_name: e.dns_name } : {}),
  };
}

function noParams(params: unknown): undefined {
  const obj = asObject(params, "params.");
  checkKeys(obj, [], "params.");
  return undefined;
}

/**
 * Validates `route.test` params (also the CLI's flow flags and batch lines;
 * `prefix` is prepended to field names in errors, e.g. `"params."`, `"--"`).
 * Returns a copy with `domain` lower-cased and without a trailing dot.
 */
export function validateRouteTest(input: unknown, prefix = "params."): RouteTestParams {
  const obj = asObject(input, prefix);
  checkKeys(
    obj,
    ["dst", "domain", "src", "network", "protocol", "mark", "dscp", "inbound", "dns"],
    prefix,
  );
  if (obj.dst === undefined) throw invalid(`${prefix}dst`, "required");
  const dst = str(obj.dst, `${prefix}dst`, 64);
  if (!parseEndpoint(dst)) throw invalid(`${prefix}dst`, `${show(dst)}: expected IP:PORT`);
  const out: RouteTestParams = { dst };
  if (obj.domain !== undefined) {
    let d = str(obj.domain, `${prefix}domain`, MAX_DOMAIN_LENGTH + 1).toLowerCase();
    if (d.endsWith(".")) d = d.slice(0, -1);
    if (d.length === 0 || d.length > MAX_DOMAIN_LENGTH || /[\s/:]/.test(d)) {
      throw invalid(`${prefix}domain`, `${show(obj.domain)}: expected a host name`);
    }
    out.domain = d;
  }
  if (obj.src !== undefined) {
    const s = str(obj.src, `${prefix}src`, 64);
    if (!parseEndpoint(s) && !parseIp(s)) {
      throw invalid(`${prefix}src`, `${show(s)}: expected IP or IP:PORT`);
    }
    out.src = s;
  }
  if (obj.network !== undefined) {
    if (obj.network !== "tcp" && obj.network !== "udp") {
      throw invalid(`${prefix}network`, `${show(obj.network)}: expected "tcp" or "udp"`);
    }
    out.network = obj.network;
  }
  if (obj.protocol !== undefined) {
    const p = obj.protocol;
    if (p !== "tls" && p !== "http" && p !== "quic") {
      throw invalid(`${prefix}protocol`, `${show(p)}: expected "tls", "http" or "quic"`);
    }
    out.protocol = p;
  }
  if (obj.mark !== undefined) out.mark = int(obj.mark, `${prefix}mark`, 0, 0xffff_ffff);
  if (obj.dscp !== undefined) out.dscp = int(obj.dscp, `${prefix}dscp`, 0, 63);
  if (obj.inbound !== undefined) out.inbound = str(obj.inbound, `${prefix}inbound`, MAX_TAG_LENGTH);
  if (obj.dns !== undefined) {
    if (typeof obj.dns !== "boolean") {
      throw invalid(`${prefix}dns`, `${show(obj.dns)}: expected a boolean`);
    }
    out.dns = obj.dns;
  }
  return out;
}

function validateReload(params: unknown): ReloadParams {
  const obj = asObject(params, "params.");
  checkKeys(obj, ["path", "config", "close_removed"], "params.");
  if ((obj.path === undefined) === (obj.config === undefined)) {
    throw invalid("params", "expected exactly one of path or config");
  }
  let out: ReloadParams;
  if (obj.path !== undefined) out = { path: str(obj.path, "params.path", MAX_PATH_LENGTH) };
  else {
    if (!isRecord(obj.config)) throw invalid("params.config", "expected an object");
    out = { config: obj.config };
  }
  if (obj.close_removed !== undefined) {
    if (typeof obj.close_removed !== "boolean") {
      throw invalid("params.close_removed", `${show(obj.close_removed)}: expected a boolean`);
    }
    out.close_removed = obj.close_removed;
  }
  return out;
}

function validateConnectionsList(params: unknown): ConnectionsListParams {
  const obj = asObject(params, "params.");
  checkKeys(obj, ["limit", "outbound"], "params.");
  const out: ConnectionsListParams = {};
  if (obj.limit !== undefined) out.limit = int(obj.limit, "params.limit", 1, MAX_LIST_LIMIT);
  if (obj.outbound !== undefined) {
    out.outbound = str(obj.outbound, "params.outbound", MAX_TAG_LENGTH);
  }
  return out;
}

function validateConnectionsClose(params: unknown): ConnectionsCloseParams {
  const obj = asObject(params, "params.");
  checkKeys(obj, ["id", "outbound"], "params.");
  if ((obj.id === undefined) === (obj.outbound === undefined)) {
    throw invalid("params", "expected exactly one of id or outbound");
  }
  if (obj.id !== undefined) return { id: int(obj.id, "params.id", 0, Number.MAX_SAFE_INTEGER) };
  return { outbound: str(obj.outbound, "params.outbound", MAX_TAG_LENGTH) };
}

function validateStats(params: unknown): StatsParams {
  const obj = asObject(params, "params.");
  checkKeys(obj, ["rules", "limit"], "params.");
  const out: StatsParams = {};
  if (obj.rules !== undefined) {
    if (typeof obj.rules !== "boolean") {
      throw invalid("params.rules", `${show(obj.rules)}: expected a boolean`);
    }
    out.rules = obj.rules;
  }
  if (obj.limit !== undefined) out.limit = int(obj.limit, "params.limit", 0, MAX_LIST_LIMIT);
  return out;
}

function validateShutdown(params: unknown): ShutdownParams {
  const obj = asObject(params, "params.");
  checkKeys(obj, ["drain_ms"], "params.");
  const out: ShutdownParams = {};
  if (obj.drain_ms !== undefined) {
    out.drain_ms = int(obj.drain_ms, "params.drain_ms", 0, MAX_DRAIN_MS);
  }
  return out;
}

const VALIDATORS: { [M in IpcMethod]: (params: unknown) => IpcParams<M> } = {
  "ping": noParams,
  "status": noParams,
  "reload": validateReload,
  "route.test": (p) => validateRouteTest(p),
  "connections.list": validateConnectionsList,
  "connections.close": validateConnectionsClose,
  "outbounds.list": noParams,
  "stats": validateStats,
  "shutdown": validateShutdown,
};

/**
 * Validates the params of `method`. Throws an {@linkcode IpcError} with code
 * `invalid_params` whose message names the field, e.g.
 * `params.dst: "1.2.3.4": expected IP:PORT`.
 */
export function validateParams<M extends IpcMethod>(method: M, params: unknown): IpcParams<M> {
  return VALIDATORS[method](params);
}

/** Options of {@linkcode flowFromRouteTest}. */
export interface FlowDefaults {
  /** Inbound tag when the params name none (default `""`). */
  inbound?: string;
}

/**
 * Turns validated `route.test` params into the {@linkcode FlowMeta} the rule
 * engine sees. Defaults: network `tcp`, source `0.0.0.0:0` (`[::]:0` for an
 * IPv6 destination), source port 0 when `src` is a bare IP. IPv4-mapped
 * IPv6 addresses are normalised to IPv4, as the inbound does.
 */
export function flowFromRouteTest(p: RouteTestParams, defaults: FlowDefaults = {}): FlowMeta {
  const destination = parseEndpoint(p.dst);
  if (!destination) throw invalid("dst", `${show(p.dst)}: expected IP:PORT`);
  let source: Endpoint = { addr: new Uint8Array(destination.addr.length), port: 0 };
  if (p.src !== undefined) {
    const ep = parseEndpoint(p.src);
    const ip = ep ? null : parseIp(p.src);
    if (ep) source = ep;
    else if (ip) source = { addr: ip, port: 0 };
    else throw invalid("src", `${show(p.src)}: expected IP or IP:PORT`);
  }
  return {
    network: p.network ?? "tcp",
    inbound: p.inbound ?? defaults.inbound ?? "",
    source: { addr: unmapIpv4(source.addr), port: source.port },
    destination: { addr: unmapIpv4(destination.addr), port: destination.port },
    domain: p.domain,
    protocol: p.protocol,
    mark: p.mark,
    dscp: p.dscp,
  };
}
