/**
 * A typed client of the IPC socket: concurrent calls matched by id, a
 * timeout per call, and {@linkcode IpcError}s with a code for every failure.
 *
 * @module
 */

import { LineReader, writeAll } from "./line_reader.ts";
import {
  type ConnectionsCloseParams,
  type ConnectionsCloseResult,
  type ConnectionsListParams,
  type ConnectionsListResult,
  encodeLine,
  IpcError,
  type IpcMethod,
  type IpcParams,
  type IpcResult,
  type OutboundsListResult,
  parseResponse,
  type PingResult,
  type ReloadParams,
  type ReloadResult,
  type RequestId,
  type RouteTestParams,
  type RouteTestResult,
  type ShutdownParams,
  type ShutdownResult,
  type StatsParams,
  type StatsResult,
  type StatusResult,
} from "./protocol.ts";

/** Options of {@linkcode IpcClient.connect}. */
export interface IpcClientOptions {
  /** Default time to wait for a reply, per call (default 30 s). */
  timeoutMs?: number;
  /** Time to wait for the connection (default 5 s). */
  connectTimeoutMs?: number;
  /** Longest request line sent; longer ones fail locally (default 1 MiB, the server's default). */
  maxRequestBytes?: number;
  /** Longest reply line accepted (default 64 MiB). */
  maxReplyBytes?: number;
}

/** Per-call options. */
export interface CallOptions {
  /** Overrides the client's default timeout. */
  timeoutMs?: number;
}

/** Arguments of {@linkcode IpcClient.call} after the method: params are optional when they can be. */
export type CallArgs<M extends IpcMethod> = IpcParams<M> extends undefined
  ? [params?: undefined, options?: CallOptions]
  // deno-lint-ignore ban-types
  : {} extends IpcParams<M> ? [params?: IpcParams<M>, options?: CallOptions]
  : [params: IpcParams<M>, options?: CallOptions];

/** Default {@linkcode IpcClientOptions.timeoutMs}. */
export const DEFAULT_CALL_TIMEOUT_MS = 30_000;

interface Pending {
  method: string;
  resolve(v: unknown): void;
  reject(e: IpcError): void;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * A connection to the router's IPC socket.
 *
 * @example
 * ```ts
 * await using client = await IpcClient.connect("/run/vpn-router/router.sock");
 * const { outbound, rule } = await client.call("route.test", { dst: "1.1.1.1:443" });
 * ```
 */
export class IpcClient {
  readonly #conn: Deno.UnixConn;
  readonly #path: string;
  readonly #timeoutMs: number;
  readonly #maxRequest: number;
  readonly #pending = new Map<RequestId, Pending>();
  #nextId = 1;
  #writeChain: Promise<void> = Promise.resolve();
  /** Set once the connection is unusable; later calls fail with it. */
  #fatal: IpcError | null = null;
  /** An id-less error reply from the server (e.g. `line_too_long`), reported at close. */
  #serverError: IpcError | null = null;
  readonly #readLoop: Promise<void>;

  private constructor(conn: Deno.UnixConn, path: string, opts: IpcClientOptions) {
    this.#conn = conn;
    this.#path = path;
    this.#timeoutMs = opts.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    this.#maxRequest = opts.maxRequestBytes ?? 1 << 20;
    this.#readLoop = this.#read(new LineReader(conn.readable, opts.maxReplyBytes ?? 64 << 20));
  }

  /**
   * Connects to the socket at `path`. Fails with code `connect_failed`
   * (naming the path) when nothing listens or access is denied, or
   * `timeout`.
   */
  static async connect(path: string, opts: IpcClientOptions = {}): Promise<IpcClient> {
    const ms = opts.connectTimeoutMs ?? 5000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const connecting = Deno.connect({ transport: "unix", path });
    const timeout = new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), ms));
    try {
      const r = await Promise.race([connecting, timeout]);
      if (r === "timeout") {
        connecting.then((c) => c.close(), () => {});
        throw new IpcError("timeout", `Cannot connect to ${path}: no answer in ${ms} ms`);
      }
      return new IpcClient(r, path, opts);
    } catch (e) {
      if (e instanceof IpcError) throw e;
      throw new IpcError(
        "connect_failed",
        `Cannot connect to ${path}: ${(e as Error).message}`,
        { cause: e },
      );
    } finally {
      clearTimeout(timer);
    }
  }

  /** The socket path. */
  get path(): string {
    return this.#path;
  }

  /** True once the connection is closed (by either side). */
  get closed(): boolean {
    return this.#fatal !== null;
  }

  /** Calls `method`; resolves with its typed result or rejects with an {@linkcode IpcError}. */
  call<M extends IpcMethod>(method: M, ...args: CallArgs<M>): Promise<IpcResult<M>> {
    const [params, options] = args;
    return this.callRaw(method, params, options) as Promise<IpcResult<M>>;
  }

  /** Calls any method name with unchecked params (for tools and tests). */
  callRaw(method: string, params?: unknown, options: CallOptions = {}): Promise<unknown> {
    if (this.#fatal) return Promise.reject(this.#fatal);
    const id = this.#nextId++;
    const msg: { id: number; method: string; params?: unknown } = { id, method };
    if (params !== undefined) msg.params = params;
    let bytes: Uint8Array;
    try {
      bytes = encodeLine(msg);
    } catch (e) {
      return Promise.reject(
        new IpcError("invalid_params", `Cannot encode ${method} params: ${(e as Error).message}`),
      );
    }
    if (bytes.length - 1 > this.#maxRequest) {
      return Promise.reject(
        new IpcError(
          "line_too_long",
          `${method} request is ${bytes.length - 1} bytes; the limit is ${this.#maxRequest}`,
        ),
      );
    }
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.#pending.delete(id)) {
          reject(new IpcError("timeout", `${method}: no reply within ${timeoutMs} ms`));
        }
      }, timeoutMs);
      this.#pending.set(id, { method, resolve, reject, timer });
      this.#writeChain = this.#writeChain.then(() => writeAll(this.#conn, bytes)).catch((e) => {
        this.#settle(id, (p) =>
          p.reject(
            new IpcError(
              "connection_closed",
              `${method}: cannot send to ${this.#path}: ${(e as Error).message}`,
              { cause: e },
            ),
          ));
      });
    });
  }

  /** `ping` */
  ping(options?: CallOptions): Promise<PingResult> {
    return this.call("ping", undefined, options);
  }

  /** `status` */
  status(options?: CallOptions): Promise<StatusResult> {
    return this.call("status", undefined, options);
  }

  /** `reload` (exactly one of `path` / `config`). */
  reload(params: ReloadParams, options?: CallOptions): Promise<ReloadResult> {
    return this.call("reload", params, options);
  }

  /** `route.test` */
  routeTest(params: RouteTestParams, options?: CallOptions): Promise<RouteTestResult> {
    return this.call("route.test", params, options);
  }

  /** `connections.list` */
  connectionsList(
    params: ConnectionsListParams = {},
    options?: CallOptions,
  ): Promise<ConnectionsListResult> {
    return this.call("connections.list", params, options);
  }

  /** `connections.close` (by `id` or by `outbound`). */
  connectionsClose(
    params: ConnectionsCloseParams,
    options?: CallOptions,
  ): Promise<ConnectionsCloseResult> {
    return this.call("connections.close", params, options);
  }

  /** `outbounds.list` */
  outboundsList(options?: CallOptions): Promise<OutboundsListResult> {
    return this.call("outbounds.list", undefined, options);
  }

  /** `stats`; `{rules: true}` adds the most hit rules (see {@linkcode StatsParams}). */
  stats(params?: StatsParams, options?: CallOptions): Promise<StatsResult> {
    return this.call("stats", params ?? {}, options);
  }

  /** `shutdown`: the router stops taking flows and exits once its flows end or `drain_ms` passed. */
  shutdown(params?: ShutdownParams, options?: CallOptions): Promise<ShutdownResult> {
    return this.call("shutdown", params ?? {}, options);
  }

  /** Closes the connection; pending calls fail with `connection_closed`. */
  async close(): Promise<void> {
    this.#fail(new IpcError("connection_closed", `connection to ${this.#path} closed by client`));
    try {
      this.#conn.close();
    } catch { /* already closed */ }
    await this.#readLoop;
  }

  /** Same as {@linkcode close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #settle(id: RequestId, f: (p: Pending) => void): void {
    const p = this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id);
    clearTimeout(p.timer);
    f(p);
  }

  #fail(err: IpcError): void {
    if (!this.#fatal) this.#fatal = err;
    for (const id of [...this.#pending.keys()]) this.#settle(id, (p) => p.reject(err));
  }

  async #read(lines: LineReader): Promise<void> {
    let reason: IpcError | null = null;
    try {
      for (;;) {
        const item = await lines.next();
        if (item === null) break;
        if (item.kind === "too_long") {
          reason = new IpcError("bad_response", `reply from ${this.#path} exceeds the line limit`);
          break;
        }
        if (item.text.trim() === "") continue;
        let resp;
        try {
          resp = parseResponse(item.text);
        } catch (e) {
          reason = e as IpcError;
          break;
        }
        if (resp.id === null) {
          // An error about the connection itself (line too long, too many
          // clients): the server closes next; report it to pending calls.
          if ("error" in resp) {
            this.#serverError = new IpcError(resp.error.code, resp.error.message, {
              data: resp.error.data,
            });
          }
          continue;
        }
        const r = resp;
        this.#settle(resp.id, (p) => {
          if ("error" in r) {
            p.reject(
              new IpcError(r.error.code, `${p.method}: ${r.error.message}`, {
                data: r.error.data,
              }),
            );
          } else p.resolve(r.result);
        });
      }
    } catch (e) {
      if (!this.#fatal) {
        reason = new IpcError("connection_closed", `connection to ${this.#path} failed: ${e}`, {
          cause: e,
        });
      }
    } finally {
      await lines.cancel();
    }
    this.#fail(
      this.#serverError ?? reason ??
        new IpcError("connection_closed", `connection to ${this.#path} closed by the router`),
    );
  }
}
