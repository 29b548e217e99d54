/**
 * The IPC server: NDJSON over a Unix socket, handlers injected.
 *
 * - The socket file is created with the configured mode (default 0600, 0660
 *   with a group) with no window where it is more open: the umask is
 *   narrowed around the synchronous `listen`, then the group is set, then
 *   the final mode.
 * - At start, an existing socket file is removed only if nothing answers on
 *   it (a stale file from a crash); if something answers, start fails.
 * - A request line longer than `maxLineBytes` gets a `line_too_long` error
 *   reply (id null) and the connection is then closed: the server cannot
 *   know which request the bytes belonged to.
 * - Bad JSON, a bad request shape, an unknown method or bad params get an
 *   error reply and the connection stays usable.
 * - Requests on one connection run concurrently (up to
 *   `maxInflightPerClient`; reading pauses beyond); replies carry the
 *   request's id and may come out of order.
 *
 * @module
 */

import { type Logger, nullLogger } from "../core/log.ts";
import { resolveGroupId } from "./group.ts";
import { LineReader, writeAll } from "./line_reader.ts";
import {
  type ConnectionsCloseParams,
  type ConnectionsCloseResult,
  type ConnectionsListParams,
  type ConnectionsListResult,
  encodeLine,
  IpcError,
  type IpcErrorResponse,
  type IpcRequest,
  type IpcResponse,
  isMethod,
  isServerErrorCode,
  type OutboundsListResult,
  parseRequest,
  type PingResult,
  type ReloadParams,
  type ReloadResult,
  type RouteTestParams,
  type RouteTestResult,
  type ShutdownParams,
  type ShutdownResult,
  type StatsParams,
  type StatsResult,
  type StatusResult,
  validateParams,
} from "./protocol.ts";

/** A handler's result, sync or async. */
export type Awaitable<T> = T | Promise<T>;

/**
 * What the router does for each method; the composition root wires these
 * to the running router. Params arrive validated. Throw an
 * {@linkcode IpcError} to choose the error code (e.g. `config_invalid`);
 * any other error is sent as `internal` with its message.
 */
export interface IpcHandlers {
  /** `ping` */
  ping(): Awaitable<PingResult>;
  /** `status` */
  status(): Awaitable<StatusResult>;
  /** `reload`: exactly one of `path` / `config` is set. */
  reload(params: ReloadParams): Awaitable<ReloadResult>;
  /** `route.test` */
  routeTest(params: RouteTestParams): Awaitable<RouteTestResult>;
  /** `connections.list` */
  connectionsList(params: ConnectionsListParams): Awaitable<ConnectionsListResult>;
  /** `connections.close` */
  connectionsClose(params: ConnectionsCloseParams): Awaitable<ConnectionsCloseResult>;
  /** `outbounds.list` */
  outboundsList(): Awaitable<OutboundsListResult>;
  /** `stats` */
  stats(params: StatsParams): Awaitable<StatsResult>;
  /**
   * `shutdown`: the reply goes out first; the router then stops taking
   * flows. A handler should {@linkcode IpcServer.stopListening} before
   * replying, so that the caller may take the socket path at once.
   */
  shutdown(params: ShutdownParams): Awaitable<ShutdownResult>;
}

/** Options of {@linkcode IpcServer}. */
export interface IpcServerOptions {
  /** Socket path, e.g. `/run/vpn-router/router.sock`. Its directory is created if missing. */
  path: string;
  /** File mode of the socket (default 0o600, or 0o660 when `group` is set). */
  mode?: number;
  /** Group owning the socket: a name (looked up in `groupFile`) or a gid. */
  group?: string | number;
  /** Where group names are looked up (default `/etc/group`). */
  groupFile?: string;
  /** Longest request line in bytes (default 1 MiB, room for an inline config). */
  maxLineBytes?: number;
  /** Most clients connected at once (default 32); extra ones get an error and are closed. */
  maxClients?: number;
  /** Most requests in progress per connection (default 16); reading pauses beyond. */
  maxInflightPerClient?: number;
  /** How long to wait for an answer on an existing socket at start (default 1000 ms). */
  probeTimeoutMs?: number;
  /**
   * Take the path even when another process answers on it (a successor
   * router, once it asked the other one to `shutdown`). Default false: that
   * is an error ("router already running?").
   */
  replace?: boolean;
  handlers: IpcHandlers;
  logger?: Logger;
}

/** Default {@linkcode IpcServerOptions.maxLineBytes}: 1 MiB. */
export const DEFAULT_MAX_LINE_BYTES = 1 << 20;
/** Default {@linkcode IpcServerOptions.maxClients}. */
export const DEFAULT_MAX_CLIENTS = 32;
/** Default {@linkcode IpcServerOptions.maxInflightPerClient}. */
export const DEFAULT_MAX_INFLIGHT = 16;

/**
 * Runs validated params through the matching handler. Exported for tests
 * and for in-process callers that want the same validation as the socket.
 */
export async function dispatch(
  handlers: IpcHandlers,
  method: string,
  params: unknown,
): Promise<unknown> {
  if (!isMethod(method)) throw new IpcError("method_not_found", `method: unknown "${method}"`);
  switch (method) {
    case "ping":
      validateParams(method, params);
      return await handlers.ping();
    case "status":
      validateParams(method, params);
      return await handlers.status();
    case "reload":
      return await handlers.reload(validateParams(method, params));
    case "route.test":
      return await handlers.routeTest(validateParams(method, params));
    case "connections.list":
      return await handlers.connectionsList(validateParams(method, params));
    case "connections.close":
      return await handlers.connectionsClose(validateParams(method, params));
    case "outbounds.list":
      validateParams(method, params);
      return await handlers.outboundsList();
    case "stats":
      return await handlers.stats(validateParams(method, params));
    case "shutdown":
      return await handlers.shutdown(validateParams(method, params));
  }
}

interface Client {
  readonly conn: Deno.UnixConn;
  readonly id: number;
  done: Promise<void>;
  /** Resolves once the requests read so far are answered (their replies written). */
  answered: () => Promise<unknown>;
}

/** How long {@linkcode IpcServer.close} lets requests in progress finish and reply. */
const CLOSE_GRACE_MS = 1000;

/**
 * The IPC server.
 *
 * @example
 * ```ts
 * const server = await IpcServer.listen({ path: "/run/vpn-router/router.sock", handlers });
 * // …
 * await server.close();
 * ```
 */
export class IpcServer {
  readonly #opts: IpcServerOptions;
  readonly #log: Logger;
  readonly #maxLine: number;
  readonly #maxClients: number;
  readonly #maxInflight: number;
  readonly #mode: number;
  #listener: Deno.Listener<Deno.UnixConn, Deno.UnixAddr> | null = null;
  #acceptLoop: Promise<void> | null = null;
  #ino: number | null = null;
  #clients = new Set<Client>();
  #nextClientId = 1;
  #closing = false;
  #closedSignal: Promise<void>;
  #signalClosed!: () => void;

  /** Checks the options; call {@linkcode start} to listen. */
  constructor(opts: IpcServerOptions) {
    this.#opts = opts;
    this.#closedSignal = new Promise((r) => this.#signalClosed = r);
    this.#log = (opts.logger ?? nullLogger).child("ipc");
    this.#maxLine = positiveInt(opts.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES, "maxLineBytes");
    this.#maxClients = positiveInt(opts.maxClients ?? DEFAULT_MAX_CLIENTS, "maxClients");
    this.#maxInflight = positiveInt(
      opts.maxInflightPerClient ?? DEFAULT_MAX_INFLIGHT,
      "maxInflightPerClient",
    );
    this.#mode = opts.mode ?? (opts.group === undefined ? 0o600 : 0o660);
    if (!Number.isInteger(this.#mode) || this.#mode < 0 || this.#mode > 0o777) {
      throw new RangeError(`ipc.mode: ${opts.mode}: expected 0..0o777`);
    }
    if (opts.path.length === 0 || opts.path.length > 107) {
      throw new RangeError(`ipc.path: "${opts.path}": expected 1..107 bytes (sun_path limit)`);
    }
  }

  /** Creates a server and starts it. */
  static async listen(opts: IpcServerOptions): Promise<IpcServer> {
    const server = new IpcServer(opts);
    await server.start();
    return server;
  }

  /** The socket path. */
  get path(): string {
    return this.#opts.path;
  }

  /** Clients connected now. */
  get clientCount(): number {
    return this.#clients.size;
  }

  /**
   * Creates the socket and starts accepting. Throws when another process
   * answers on the path, when the path is something other than a socket,
   * or when the group is unknown.
   */
  async start(): Promise<void> {
    if (this.#listener) throw new Error("IpcServer already started");
    const path = this.#opts.path;
    const gid = this.#opts.group === undefined
      ? null
      : await resolveGroupId(this.#opts.group, this.#opts.groupFile);
    const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : "";
    if (dir !== "") await Deno.mkdir(dir, { recursive: true, mode: 0o755 });
    await this.#removeStale(path);

    // Create with owner-only bits (no window where others could connect),
    // then hand to the group, then widen to the final mode.
    const createMode = this.#mode & 0o700;
    let oldMask: number | null = null;
    try {
      oldMask = Deno.umask(0o777 & ~createMode);
    } catch {
      // umask unsupported: the chmod below closes the window right away.
    }
    let listener: Deno.Listener<Deno.UnixConn, Deno.UnixAddr>;
    try {
      listener = Deno.listen({ transport: "unix", path });
    } finally {
      if (oldMask !== null) Deno.umask(oldMask);
    }
    try {
      await Deno.chmod(path, createMode);
      if (gid !== null) await Deno.chown(path, null, gid);
      await Deno.chmod(path, this.#mode);
      this.#ino = (await Deno.lstat(path)).ino;
    } catch (e) {
      listener.close();
      throw e;
    }
    this.#listener = listener;
    this.#acceptLoop = this.#accept(listener);
    this.#log.info("listening", {
      path,
      mode: "0" + this.#mode.toString(8),
      gid: gid ?? undefined,
    });
  }

  /** Stops accepting, closes every client, removes the socket file. */
  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    try {
      this.#listener?.close();
    } catch { /* already closed */ }
    // Requests in progress (a `shutdown`, a reload) get to reply, for a while.
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.allSettled([...this.#clients].map((c) => c.answered())),
      new Promise((r) => timer = setTimeout(r, CLOSE_GRACE_MS)),
    ]);
    clearTimeout(timer);
    this.#signalClosed();
    for (const c of this.#clients) closeQuietly(c.conn);
    await this.#acceptLoop;
    await Promise.allSettled([...this.#clients].map((c) => c.done));
    await this.#removeOwnSocket();
    this.#log.info("closed", { path: this.#opts.path });
  }

  /**
   * Stops accepting clients and removes the socket file (if still ours);
   * connected clients are served until {@linkcode close}. For `shutdown`:
   * a successor may take the path as soon as it has the reply.
   */
  async stopListening(): Promise<void> {
    try {
      this.#listener?.close();
    } catch { /* already closed */ }
    await this.#acceptLoop;
    await this.#removeOwnSocket();
  }

  /** Same as {@linkcode close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #removeStale(path: string): Promise<void> {
    let info: Deno.FileInfo;
    try {
      info = await Deno.lstat(path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return;
      throw e;
    }
    if (!info.isSocket) {
      throw new Error(`ipc.path: ${path} exists and is not a socket; refusing to replace it`);
    }
    const live = await this.#probe(path);
    if (live && !this.#opts.replace) {
      throw new Error(`ipc.path: ${path}: another process is listening (router already running?)`);
    }
    await Deno.remove(path);
    if (live) this.#log.info("took over the socket path", { path });
    else this.#log.warn("removed stale socket", { path });
  }

  /** True when something accepts a connection on `path`. */
  async #probe(path: string): Promise<boolean> {
    const timeoutMs = this.#opts.probeTimeoutMs ?? 1000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const connecting = Deno.connect({ transport: "unix", path });
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    try {
      const r = await Promise.race([connecting, timeout]);
      if (r === "timeout") {
        connecting.then(closeQuietly, () => {});
        return true; // a full backlog means someone is there
      }
      closeQuietly(r);
      return true;
    } catch (e) {
      if (e instanceof Deno.errors.ConnectionRefused || e instanceof Deno.errors.NotFound) {
        return false;
      }
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  async #removeOwnSocket(): Promise<void> {
    // One attempt, after the listener is gone (Deno itself unlinks the path when it drops a
    // closed listener): later, the path may be a successor's socket, and inode numbers are
    // reused (a takeover's new socket often gets the old one's).
    const ino = this.#ino;
    if (ino === null) return;
    this.#ino = null;
    try {
      const info = await Deno.lstat(this.#opts.path);
      if (info.isSocket && info.ino === ino) await Deno.remove(this.#opts.path);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) {
        this.#log.warn("cannot remove socket", { path: this.#opts.path, error: e });
      }
    }
  }

  async #accept(listener: Deno.Listener<Deno.UnixConn, Deno.UnixAddr>): Promise<void> {
    let backoffMs = 0;
    while (!this.#closing) {
      let conn: Deno.UnixConn;
      try {
        conn = await listener.accept();
        backoffMs = 0;
      } catch (e) {
        if (this.#closing || e instanceof Deno.errors.BadResource) return;
        // Back off instead of spinning (e.g. EMFILE), up to 1 s.
        backoffMs = Math.min(Math.max(backoffMs * 2, 10), 1000);
        this.#log.warn("accept failed", { error: e, backoff_ms: backoffMs });
        await new Promise((r) => setTimeout(r, backoffMs));
        continue;
      }
      if (this.#clients.size >= this.#maxClients) {
        this.#log.warn("too many clients; refusing one", { max: this.#maxClients });
        const reply: IpcErrorResponse = {
          id: null,
          error: { code: "internal", message: `too many IPC clients (limit ${this.#maxClients})` },
        };
        writeAll(conn, encodeLine(reply)).catch(() => {}).finally(() => closeQuietly(conn));
        continue;
      }
      const client: Client = {
        conn,
        id: this.#nextClientId++,
        done: Promise.resolve(),
        answered: () => Promise.resolve(),
      };
      this.#clients.add(client);
      client.done = this.#serve(client).finally(() => {
        this.#clients.delete(client);
        closeQuietly(conn);
      });
    }
  }

  async #serve(client: Client): Promise<void> {
    const { conn } = client;
    const log = this.#log;
    log.debug("client connected", { client: client.id });
    const reader = new LineReader(conn.readable, this.#maxLine);
    let writeChain = Promise.resolve();
    let broken = false;
    const send = (msg: IpcResponse): Promise<void> => {
      let bytes: Uint8Array;
      try {
        bytes = encodeLine(msg);
      } catch (e) {
        bytes = encodeLine({
          id: msg.id,
          error: { code: "internal", message: `Cannot encode reply: ${(e as Error).message}` },
        });
      }
      writeChain = writeChain.then(async () => {
        if (broken) return;
        try {
          await writeAll(conn, bytes);
        } catch (e) {
          broken = true;
          log.debug("client write failed", { client: client.id, error: e });
        }
      });
      return writeChain;
    };

    let inflight = 0;
    let slotFreed: (() => void) | null = null;
    const running = new Set<Promise<void>>();
    client.answered = () => Promise.allSettled([...running]).then(() => writeChain);
    try {
      for (;;) {
        while (inflight >= this.#maxInflight) {
          await new Promise<void>((r) => slotFreed = r);
        }
        const item = await reader.next();
        if (item === null || broken || this.#closing) break;
        if (item.kind === "too_long") {
          // Answer what was read before, then the error, then close.
          await Promise.race([Promise.allSettled([...running]), this.#closedSignal]);
          log.warn("request line too long; closing client", {
            client: client.id,
            bytes: item.bytes,
            max: this.#maxLine,
          });
          await send({
            id: null,
            error: {
              code: "line_too_long",
              message: `request line exceeds ${this.#maxLine} bytes; closing connection`,
            },
          });
          break;
        }
        if (item.text.trim() === "") continue;
        inflight++;
        const p: Promise<void> = this.#handleLine(item.text, client.id)
          .then(send)
          .finally(() => {
            inflight--;
            running.delete(p);
            const wake = slotFreed;
            slotFreed = null;
            wake?.();
          });
        running.add(p);
      }
    } catch (e) {
      if (!this.#closing && !(e instanceof Deno.errors.BadResource)) {
        log.debug("client read failed", { client: client.id, error: e });
      }
    } finally {
      // Let replies to requests already read go out before closing, unless
      // the server is closing (a stuck handler must not block close()).
      await Promise.race([Promise.allSettled([...running]), this.#closedSignal]);
      await writeChain;
      await reader.cancel();
      log.debug("client gone", { client: client.id });
    }
  }

  async #handleLine(line: string, clientId: number): Promise<IpcResponse> {
    const parsed = parseRequest(line);
    if (!parsed.ok) {
      this.#log.debug("bad request", { client: clientId, error: parsed.response.error.message });
      return parsed.response;
    }
    const req: IpcRequest = parsed.request;
    const started = performance.now();
    try {
      const result = await dispatch(this.#opts.handlers, req.method, req.params);
      this.#log.debug("request", {
        client: clientId,
        method: req.method,
        ms: +(performance.now() - started).toFixed(2),
      });
      return { id: req.id, result: result ?? null };
    } catch (e) {
      const err = toErrorBody(e);
      const level = err.code === "internal" ? "warn" : "debug";
      this.#log[level]("request failed", {
        client: clientId,
        method: req.method,
        code: err.code,
        error: err.message,
      });
      return { id: req.id, error: err };
    }
  }
}

function toErrorBody(e: unknown): IpcErrorResponse["error"] {
  if (e instanceof IpcError && isServerErrorCode(e.code)) {
    const body: IpcErrorResponse["error"] = { code: e.code, message: e.message };
    if (e.data !== undefined) body.data = e.data;
    return body;
  }
  const message = e instanceof Error ? e.message : String(e);
  return { code: "internal", message };
}

function positiveInt(v: number, name: string): number {
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`ipc.${name}: ${v}: expected >= 1`);
  return v;
}

function closeQuietly(c: Deno.Conn): void {
  try {
    c.close();
  } catch { /* already closed */ }
}
