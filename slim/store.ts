/**
 * Durable state of the Slim Node in SQLite (`node:sqlite`, WAL, mode 0600).
 * Every change is one transaction; a forwarding rule references its peers by
 * foreign key, so the store itself refuses a dangling rule.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import type { PeerRecord, RuleInput, RuleProtocol, RuleRecord } from "./model.ts";
import type { PortSpec } from "./validate.ts";

const SCHEMA_VERSION = 1;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS peers (
  tag TEXT PRIMARY KEY,
  private_key TEXT NOT NULL,
  public_key TEXT NOT NULL,
  peer_public_key TEXT NOT NULL,
  pre_shared_key TEXT,
  listen_port INTEGER NOT NULL UNIQUE,
  address TEXT NOT NULL,
  allowed_ips TEXT NOT NULL,
  endpoint TEXT,
  persistent_keepalive INTEGER,
  mtu INTEGER NOT NULL,
  enabled INTEGER NOT NULL,
  created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rules (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  from_tag TEXT NOT NULL REFERENCES peers(tag) ON DELETE RESTRICT,
  to_tag TEXT NOT NULL REFERENCES peers(tag) ON DELETE RESTRICT,
  bidirectional INTEGER NOT NULL,
  protocol TEXT,
  ports TEXT NOT NULL,
  comment TEXT,
  created_at TEXT NOT NULL
);
`;

type Row = Record<string, unknown>;

function peerFromRow(r: Row): PeerRecord {
  return {
    tag: String(r.tag),
    privateKey: String(r.private_key),
    publicKey: String(r.public_key),
    peerPublicKey: String(r.peer_public_key),
    preSharedKey: r.pre_shared_key === null ? null : String(r.pre_shared_key),
    listenPort: Number(r.listen_port),
    address: JSON.parse(String(r.address)) as string[],
    allowedIps: JSON.parse(String(r.allowed_ips)) as string[],
    endpoint: r.endpoint === null ? null : String(r.endpoint),
    persistentKeepalive: r.persistent_keepalive === null ? null : Number(r.persistent_keepalive),
    mtu: Number(r.mtu),
    enabled: Number(r.enabled) === 1,
    createdAt: String(r.created_at),
  };
}

function ruleFromRow(r: Row): RuleRecord {
  return {
    id: Number(r.id),
    from: String(r.from_tag),
    to: String(r.to_tag),
    bidirectional: Number(r.bidirectional) === 1,
    protocol: r.protocol === null ? null : String(r.protocol) as RuleProtocol,
    ports: JSON.parse(String(r.ports)) as PortSpec[],
    comment: r.comment === null ? null : String(r.comment),
    createdAt: String(r.created_at),
  };
}

/** The Slim Node's embedded store. */
export class Store {
  readonly #db: DatabaseSync;

  /**
   * Opens (creating when missing) the store at `path`; `":memory:"` for tests.
   * A new file is created mode 0600, its directory 0700.
   */
  constructor(path: string) {
    if (path !== ":memory:") {
      const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) || "/" : ".";
      Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
      Deno.openSync(path, { create: true, write: true, mode: 0o600 }).close();
      Deno.chmodSync(path, 0o600);
    }
    this.#db = new DatabaseSync(path);
    this.#db.exec("PRAGMA foreign_keys = ON");
    if (path !== ":memory:") this.#db.exec("PRAGMA journal_mode = WAL");
    this.#db.exec("PRAGMA busy_timeout = 2000");
    const version = Number(
      (this.#db.prepare("PRAGMA user_version").get() as Row | undefined)?.user_version ?? 0,
    );
    if (version > SCHEMA_VERSION) {
      throw new RangeError(
        `Cannot open state ${path}: schema version ${version} is newer than ${SCHEMA_VERSION}`,
      );
    }
    this.transaction(() => {
      this.#db.exec(SCHEMA);
      this.#db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
    });
  }

  /** Runs `fn` in one transaction: all of it is stored, or none. */
  transaction<T>(fn: () => T): T {
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      const out = fn();
      this.#db.exec("COMMIT");
      return out;
    } catch (e) {
      this.#db.exec("ROLLBACK");
      throw e;
    }
  }

  /** All peers, ordered by tag. */
  listPeers(): PeerRecord[] {
    return (this.#db.prepare("SELECT * FROM peers ORDER BY tag").all() as Row[]).map(peerFromRow);
  }

  /** One peer, or null. */
  getPeer(tag: string): PeerRecord | null {
    const r = this.#db.prepare("SELECT * FROM peers WHERE tag = ?").get(tag) as Row | undefined;
    return r ? peerFromRow(r) : null;
  }

  /** Inserts a peer (fails when the tag or listen port is taken). */
  insertPeer(p: PeerRecord): void {
    this.#db.prepare(
      `INSERT INTO peers (tag, private_key, public_key, peer_public_key, pre_shared_key,
        listen_port, address, allowed_ips, endpoint, persistent_keepalive, mtu, enabled, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      p.tag,
      p.privateKey,
      p.publicKey,
      p.peerPublicKey,
      p.preSharedKey,
      p.listenPort,
      JSON.stringify(p.address),
      JSON.stringify(p.allowedIps),
      p.endpoint,
      p.persistentKeepalive,
      p.mtu,
      p.enabled ? 1 : 0,
      p.createdAt,
    );
  }

  /** Sets a peer's connected flag; false when no such peer. */
  setPeerEnabled(tag: string, enabled: boolean): boolean {
    const r = this.#db.prepare("UPDATE peers SET enabled = ? WHERE tag = ?").run(
      enabled ? 1 : 0,
      tag,
    );
    return Number(r.changes) > 0;
  }

  /** Deletes a peer; the store refuses while rules reference it. */
  deletePeer(tag: string): boolean {
    const r = this.#db.prepare("DELETE FROM peers WHERE tag = ?").run(tag);
    return Number(r.changes) > 0;
  }

  /** All rules, ordered by id. */
  listRules(): RuleRecord[] {
    return (this.#db.prepare("SELECT * FROM rules ORDER BY id").all() as Row[]).map(ruleFromRow);
  }

  /** Rules that reference `tag` on either side. */
  rulesOfPeer(tag: string): RuleRecord[] {
    return (this.#db.prepare("SELECT * FROM rules WHERE from_tag = ? OR to_tag = ? ORDER BY id")
      .all(tag, tag) as Row[]).map(ruleFromRow);
  }

  /** Inserts a rule and returns it with its new id. */
  insertRule(r: RuleInput, createdAt: string): RuleRecord {
    const res = this.#db.prepare(
      `INSERT INTO rules (from_tag, to_tag, bidirectional, protocol, ports, comment, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      r.from,
      r.to,
      r.bidirectional ? 1 : 0,
      r.protocol,
      JSON.stringify(r.ports),
      r.comment,
      createdAt,
    );
    return { ...r, id: Number(res.lastInsertRowid), createdAt };
  }

  /** Deletes a rule; false when no such rule. */
  deleteRule(id: number): boolean {
    return Number(this.#db.prepare("DELETE FROM rules WHERE id = ?").run(id).changes) > 0;
  }

  /** Closes the database. */
  close(): void {
    this.#db.close();
  }
}
