import assert from "node:assert/strict";
import { Socks5Pool, Socks5UnavailableError } from "./socks5_pool.ts";

class Conn {
  closed = false;
  alive = true;
  constructor(readonly id: number) {}
  close() {
    this.closed = true;
  }
}

/** Polls `cond` every 5 ms, at most `ms` long. */
async function until(cond: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 5));
  }
}

function makePool(opts: { size?: number; failing?: () => boolean; maxIdleMs?: number } = {}) {
  let next = 0;
  let clock = 0;
  const made: Conn[] = [];
  const pool = new Socks5Pool<Conn>({
    size: opts.size ?? 3,
    open: () => {
      if (opts.failing?.()) return Promise.reject(new Error("connect: ECONNREFUSED"));
      const c = new Conn(next++);
      made.push(c);
      return Promise.resolve(c);
    },
    isAlive: (c) => c.alive,
    maxIdleMs: opts.maxIdleMs ?? 1000,
    backoffInitialMs: 10,
    backoffMaxMs: 40,
    now: () => clock,
  });
  return { pool, made, advance: (ms: number) => (clock += ms) };
}

Deno.test("Socks5Pool warms `size` connections and refills after each use", async () => {
  const { pool, made } = makePool({ size: 3 });
  try {
    pool.start();
    await until(() => pool.stats().idle === 3);
    const c = pool.acquire();
    assert.ok(c);
    await until(() => pool.stats().idle === 3);
    assert.equal(made.length, 4);
    assert.equal(pool.stats().hits, 1);
    assert.equal(c.closed, false);
  } finally {
    pool.close();
  }
});

Deno.test("Socks5Pool.acquire() skips connections that died or aged while idle", async () => {
  const { pool, made, advance } = makePool({ size: 2, maxIdleMs: 1000 });
  try {
    pool.start();
    await until(() => pool.stats().idle === 2);
    made[0]!.alive = false; // oldest is tried first
    const c = pool.acquire();
    assert.equal(c, made[1]);
    assert.ok(made[0]!.closed);
    await until(() => pool.stats().idle === 2);
    advance(1001);
    assert.equal(pool.acquire(), null); // every idle one is too old now
    assert.equal(pool.stats().discarded, 3);
    assert.equal(pool.stats().misses, 1);
  } finally {
    pool.close();
  }
});

Deno.test("Socks5Pool fails fast while the server is down and recovers with back-off", async () => {
  let down = true;
  const { pool } = makePool({ size: 2, failing: () => down });
  try {
    pool.start();
    await until(() => pool.state === "down");
    assert.throws(() => pool.acquire(), (e: unknown) => {
      assert.ok(e instanceof Socks5UnavailableError);
      assert.match(e.message, /SOCKS5 server down: connect: ECONNREFUSED/);
      return true;
    });
    assert.equal(pool.stats().failFast, 1);
    assert.equal(pool.stats().lastError, "connect: ECONNREFUSED");
    const failuresBefore = pool.stats().openFailures;
    await until(() => pool.stats().openFailures >= failuresBefore + 2); // retries continue
    down = false;
    await until(() => pool.state === "up" && pool.stats().idle === 2);
    assert.ok(pool.acquire());
  } finally {
    pool.close();
  }
});

Deno.test("Socks5Pool.reportFailure() marks the server down for the next flow", () => {
  const { pool } = makePool();
  try {
    pool.reportFailure(new Error("boom"));
    assert.equal(pool.state, "down");
    assert.throws(() => pool.acquire(), /server down: boom/);
    pool.reportSuccess();
    assert.equal(pool.state, "up");
    assert.equal(pool.acquire(), null);
  } finally {
    pool.close();
  }
});

Deno.test("Socks5Pool.close() closes idle connections and refuses acquire", async () => {
  const { pool, made } = makePool({ size: 2 });
  pool.start();
  await until(() => pool.stats().idle === 2);
  pool.close();
  assert.ok(made.every((c) => c.closed));
  assert.throws(() => pool.acquire(), /closed/);
});

Deno.test("Socks5Pool constructor rejects a bad size naming the field", () => {
  assert.throws(
    () => new Socks5Pool({ size: 0, open: () => Promise.reject(), isAlive: () => true }),
    /pool.size: 0/,
  );
});
