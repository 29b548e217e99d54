/**
 * The OpenAPI 3.1 document of the Slim Node API, served at
 * `GET /api/openapi.json`.
 *
 * @module
 */

const err = { $ref: "#/components/responses/Error" };
const tagParam = {
  name: "tag",
  in: "path",
  required: true,
  schema: { type: "string", pattern: "^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$", maxLength: 7 },
};
const key = { type: "string", pattern: "^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$" };
const cidrList = { type: "array", items: { type: "string", examples: ["10.200.1.1/24"] } };
const port = {
  oneOf: [
    { type: "integer", minimum: 1, maximum: 65535 },
    { type: "string", pattern: "^\\d{1,5}(-\\d{1,5})?$" },
  ],
};
const json = (schema: unknown) => ({ "application/json": { schema } });
const ok = (description: string, schema: unknown) => ({ description, content: json(schema) });

/** The OpenAPI document (a plain JSON value). */
export const OPENAPI = {
  openapi: "3.1.0",
  info: {
    title: "vpn-router Slim Node API",
    version: "1",
    description: "A relay that only forwards between WireGuard peers. Every endpoint needs " +
      "`Authorization: Bearer <token>` except the optional liveness probe.",
  },
  security: [{ bearer: [] }],
  paths: {
    "/api/health/live": {
      get: {
        summary: "Liveness probe (unauthenticated when enabled)",
        security: [],
        responses: { "200": ok("Alive", { type: "object" }) },
      },
    },
    "/api/health": {
      get: {
        summary: "Health, counts and problems found applying state to the kernel",
        responses: { "200": ok("Health", { $ref: "#/components/schemas/Health" }), "401": err },
      },
    },
    "/api/openapi.json": {
      get: { summary: "This document", responses: { "200": ok("OpenAPI", { type: "object" }) } },
    },
    "/api/peers": {
      get: {
        summary: "List peers with live state",
        responses: {
          "200": ok("Peers", { type: "array", items: { $ref: "#/components/schemas/Peer" } }),
          "401": err,
        },
      },
      post: {
        summary: "Create a peer (interface wg-peer-{tag})",
        requestBody: { required: true, content: json({ $ref: "#/components/schemas/PeerInput" }) },
        responses: {
          "201": ok("Created", { $ref: "#/components/schemas/Peer" }),
          "400": err,
          "401": err,
          "409": err,
          "413": err,
          "415": err,
          "500": err,
        },
      },
    },
    "/api/peers/{tag}": {
      parameters: [tagParam],
      get: {
        summary: "One peer",
        responses: { "200": ok("Peer", { $ref: "#/components/schemas/Peer" }), "404": err },
      },
      delete: {
        summary: "Delete a peer; 409 while rules use it unless cascade=true",
        parameters: [{ name: "cascade", in: "query", schema: { type: "boolean" } }],
        responses: {
          "200": ok("Deleted", {
            type: "object",
            properties: {
              deleted: { type: "string" },
              deleted_rules: { type: "array", items: { type: "integer" } },
            },
          }),
          "404": err,
          "409": err,
          "500": err,
        },
      },
    },
    "/api/peers/{tag}/connect": {
      parameters: [tagParam],
      post: {
        summary: "Bring the interface up",
        responses: { "200": ok("Peer", { $ref: "#/components/schemas/Peer" }), "404": err },
      },
    },
    "/api/peers/{tag}/disconnect": {
      parameters: [tagParam],
      post: {
        summary: "Bring the interface down",
        responses: { "200": ok("Peer", { $ref: "#/components/schemas/Peer" }), "404": err },
      },
    },
    "/api/forwarding/rules": {
      get: {
        summary: "List forwarding rules",
        responses: {
          "200": ok("Rules", { type: "array", items: { $ref: "#/components/schemas/Rule" } }),
        },
      },
      post: {
        summary: "Allow traffic from one peer to another",
        requestBody: { required: true, content: json({ $ref: "#/components/schemas/RuleInput" }) },
        responses: {
          "201": ok("Created", { $ref: "#/components/schemas/Rule" }),
          "400": err,
          "409": err,
          "500": err,
        },
      },
    },
    "/api/forwarding/rules/{id}": {
      parameters: [{ name: "id", in: "path", required: true, schema: { type: "integer" } }],
      delete: {
        summary: "Delete a forwarding rule",
        responses: { "200": ok("Deleted", { type: "object" }), "404": err },
      },
    },
  },
  components: {
    securitySchemes: { bearer: { type: "http", scheme: "bearer" } },
    responses: {
      Error: {
        description: "Error",
        content: json({
          type: "object",
          required: ["error"],
          properties: {
            error: {
              type: "object",
              required: ["code", "message"],
              properties: {
                code: {
                  type: "string",
                  enum: [
                    "invalid_request",
                    "invalid_json",
                    "unauthorized",
                    "not_found",
                    "method_not_allowed",
                    "conflict",
                    "payload_too_large",
                    "unsupported_media_type",
                    "kernel_error",
                    "internal",
                  ],
                },
                message: { type: "string" },
                field: { type: "string" },
              },
            },
          },
        }),
      },
    },
    schemas: {
      PeerInput: {
        type: "object",
        additionalProperties: false,
        required: ["tag", "peer_public_key", "address", "allowed_ips"],
        properties: {
          tag: tagParam.schema,
          private_key: { ...key, description: "Generated when omitted; never returned" },
          peer_public_key: key,
          pre_shared_key: { ...key, description: "Never returned" },
          listen_port: { type: "integer", minimum: 1, maximum: 65535 },
          address: { ...cidrList, description: "Our addresses on the interface" },
          allowed_ips: cidrList,
          endpoint: { type: ["string", "null"], examples: ["192.0.2.1:51820"] },
          persistent_keepalive_interval: { type: "integer", minimum: 0, maximum: 65535 },
          mtu: { type: "integer", minimum: 1280, maximum: 9000 },
          enabled: { type: "boolean", default: true },
        },
      },
      Peer: {
        type: "object",
        properties: {
          tag: { type: "string" },
          interface: { type: "string" },
          public_key: { ...key, description: "Our public key on this interface" },
          peer_public_key: key,
          has_pre_shared_key: { type: "boolean" },
          listen_port: { type: "integer" },
          address: cidrList,
          allowed_ips: cidrList,
          endpoint: { type: ["string", "null"] },
          persistent_keepalive_interval: { type: ["integer", "null"] },
          mtu: { type: "integer" },
          enabled: { type: "boolean" },
          created_at: { type: "string", format: "date-time" },
          status: {
            type: "object",
            properties: {
              interface_exists: { type: "boolean" },
              up: { type: "boolean" },
              latest_handshake: { type: ["string", "null"], format: "date-time" },
              rx_bytes: { type: "integer" },
              tx_bytes: { type: "integer" },
              current_endpoint: { type: ["string", "null"] },
              error: { type: ["string", "null"] },
            },
          },
        },
      },
      RuleInput: {
        type: "object",
        additionalProperties: false,
        required: ["from", "to"],
        properties: {
          from: tagParam.schema,
          to: tagParam.schema,
          bidirectional: { type: "boolean", default: false },
          protocol: { type: ["string", "null"], enum: ["tcp", "udp", "icmp", null] },
          ports: { type: "array", items: port, description: "Destination ports; tcp/udp only" },
          comment: { type: ["string", "null"], maxLength: 128 },
        },
      },
      Rule: {
        type: "object",
        properties: {
          id: { type: "integer" },
          from: { type: "string" },
          to: { type: "string" },
          bidirectional: { type: "boolean" },
          protocol: { type: ["string", "null"] },
          ports: { type: "array", items: port },
          comment: { type: ["string", "null"] },
          created_at: { type: "string", format: "date-time" },
          status: { type: "object", properties: { error: { type: ["string", "null"] } } },
        },
      },
      Health: {
        type: "object",
        properties: {
          status: { type: "string", enum: ["ok", "degraded"] },
          started_at: { type: "string", format: "date-time" },
          peers: { type: "integer" },
          rules: { type: "integer" },
          problems: {
            type: "array",
            items: {
              type: "object",
              properties: {
                kind: { type: "string", enum: ["peer", "rule", "table"] },
                id: { type: "string" },
                error: { type: "string" },
              },
            },
          },
        },
      },
    },
  },
} as const;
