/**
 * The Slim Node HTTP API as a value with a `fetch` handler: tests call it
 * with a `Request`, no port; `main.ts` hands it to `Deno.serve`. One error
 * handler maps typed errors to status codes; the bearer token is compared in
 * constant time; bodies are bounded and validated.
 *
 * @module
 */

import type { Logger } from "../core/log.ts";
import { ConflictError, KernelError, NotFoundError } from "./errors.ts";
import { parsePeerInput, parseRuleInput } from "./model.ts";
import { OPENAPI } from "./openapi.ts";
import type { SlimService } from "./service.ts";
import { parseTag, ValidationError } from "./validate.ts";

/** Options of {@linkcode createApp}. */
export interface AppOptions {
  service: SlimService;
  /** The bearer token every request (except the liveness probe) must carry. */
  token: string;
  /** Largest request body accepted, in bytes. */
  maxBodyBytes: number;
  /** Serve `GET /api/health/live` without a token. */
  livenessProbe: boolean;
  logger: Logger;
}

/** The HTTP application. */
export interface App {
  fetch(req: Request): Promise<Response>;
}

/** An error that is already an HTTP answer. */
class HttpError extends Error {
  override name = "HttpError";
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

const HEADERS = {
  "content-type": "application/json; charset=utf-8",
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
};

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body) + "\n", {
    status,
    headers: { ...HEADERS, ...headers },
  });
}

const encoder = new TextEncoder();

/** Compares two secrets in time independent of where they differ or their lengths. */
export async function constantTimeEqual(a: string, b: string): Promise<boolean> {
  const [ha, hb] = await Promise.all([
    crypto.subtle.digest("SHA-256", encoder.encode(a)),
    crypto.subtle.digest("SHA-256", encoder.encode(b)),
  ]);
  const x = new Uint8Array(ha), y = new Uint8Array(hb);
  let diff = 0;
  for (let i = 0; i < x.length; i++) diff |= x[i]! ^ y[i]!;
  return diff === 0;
}

async function readJson(req: Request, max: number): Promise<unknown> {
  const type = req.headers.get("content-type") ?? "";
  if (!/^application\/json\s*(;|$)/i.test(type)) {
    throw new HttpError(415, "unsupported_media_type", "Content-Type must be application/json");
  }
  const declared = req.headers.get("content-length");
  if (declared !== null && Number(declared) > max) {
    throw new HttpError(413, "payload_too_large", `Body larger than ${max} bytes`);
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (req.body) {
    const reader = req.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.length;
      if (size > max) {
        await reader.cancel().catch(() => {});
        throw new HttpError(413, "payload_too_large", `Body larger than ${max} bytes`);
      }
      chunks.push(value);
    }
  }
  const bytes = new Uint8Array(size);
  let off = 0;
  for (const c of chunks) {
    bytes.set(c, off);
    off += c.length;
  }
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    throw new HttpError(400, "invalid_json", `Body is not valid JSON: ${(e as Error).message}`);
  }
}

function parseBool(field: string, v: string | null): boolean {
  if (v === null || v === "false" || v === "0") return false;
  if (v === "true" || v === "1" || v === "") return true;
  throw new ValidationError(field, `${JSON.stringify(v)}: expected true or false`);
}

function parseId(field: string, v: string): number {
  if (!/^[1-9]\d{0,14}$/.test(v)) {
    throw new ValidationError(field, `${JSON.stringify(v)}: expected a positive integer`);
  }
  return Number(v);
}

type Handler = (req: Request, params: string[], url: URL) => Promise<Response> | Response;
interface Route {
  re: RegExp;
  methods: Record<string, Handler>;
}

/** Creates the Slim Node API application. */
export function createApp(opts: AppOptions): App {
  const { service: svc, logger: log } = opts;
  const body = (req: Request) => readJson(req, opts.maxBodyBytes);
  const routes: Route[] = [
    { re: /^\/api\/health$/, methods: { GET: () => json(200, svc.health()) } },
    { re: /^\/api\/openapi\.json$/, methods: { GET: () => json(200, OPENAPI) } },
    {
      re: /^\/api\/peers$/,
      methods: {
        GET: async () => json(200, await svc.listPeers()),
        POST: async (req) => json(201, await svc.addPeer(parsePeerInput(await body(req)))),
      },
    },
    {
      re: /^\/api\/peers\/([^/]+)$/,
      methods: {
        GET: async (_r, [t]) => json(200, await svc.getPeer(parseTag("tag", t))),
        DELETE: async (_r, [t], url) =>
          json(
            200,
            await svc.deletePeer(
              parseTag("tag", t),
              parseBool("cascade", url.searchParams.get("cascade")),
            ),
          ),
      },
    },
    {
      re: /^\/api\/peers\/([^/]+)\/(connect|disconnect)$/,
      methods: {
        POST: async (_r, [t, action]) =>
          json(200, await svc.setConnected(parseTag("tag", t), action === "connect")),
      },
    },
    {
      re: /^\/api\/forwarding\/rules$/,
      methods: {
        GET: () => json(200, svc.listRules()),
        POST: async (req) => json(201, await svc.addRule(parseRuleInput(await body(req)))),
      },
    },
    {
      re: /^\/api\/forwarding\/rules\/([^/]+)$/,
      methods: { DELETE: async (_r, [id]) => json(200, await svc.deleteRule(parseId("id", id!))) },
    },
  ];

  async function handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    if (url.pathname === "/api/health/live" && opts.livenessProbe) {
      if (req.method !== "GET") {
        throw new HttpError(405, "method_not_allowed", "Use GET", { allow: "GET" });
      }
      return json(200, { status: "ok" });
    }
    const auth = req.headers.get("authorization") ?? "";
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    if (!m || !await constantTimeEqual(m[1]!, opts.token)) {
      throw new HttpError(401, "unauthorized", "Missing or wrong bearer token", {
        "www-authenticate": 'Bearer realm="slim"',
      });
    }
    for (const r of routes) {
      const match = r.re.exec(url.pathname);
      if (!match) continue;
      const h = r.methods[req.method];
      if (!h) {
        const allow = Object.keys(r.methods).join(", ");
        throw new HttpError(405, "method_not_allowed", `Use ${allow}`, { allow });
      }
      const params = match.slice(1).map((p) => {
        try {
          return decodeURIComponent(p);
        } catch {
          return p;
        }
      });
      return await h(req, params, url);
    }
    throw new HttpError(404, "not_found", `No endpoint ${url.pathname}`);
  }

  function toResponse(e: unknown): Response {
    const error = (status: number, code: string, message: string, extra = {}) =>
      json(status, { error: { code, message, ...extra } });
    if (e instanceof HttpError) {
      return json(e.status, { error: { code: e.code, message: e.message } }, e.headers);
    }
    if (e instanceof ValidationError) {
      return error(400, "invalid_request", e.message, { field: e.field });
    }
    if (e instanceof NotFoundError) return error(404, "not_found", e.message);
    if (e instanceof ConflictError) return error(409, "conflict", e.message);
    if (e instanceof KernelError) return error(500, "kernel_error", e.message);
    log.error("request failed", { error: e });
    return error(500, "internal", "Internal error");
  }

  return {
    async fetch(req: Request): Promise<Response> {
      const t0 = performance.now();
      let res: Response;
      try {
        res = await handle(req);
      } catch (e) {
        res = toResponse(e);
      }
      log.debug("request", {
        method: req.method,
        path: new URL(req.url).pathname,
        status: res.status,
        ms: Math.round((performance.now() - t0) * 10) / 10,
      });
      return res;
    },
  };
}
