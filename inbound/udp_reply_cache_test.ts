import assert from "node:assert/strict";
import type { Endpoint } from "../core/types.ts";
import { ReplySocketCache } from "./udp_reply_cache.ts";

const ep = (last: number, port = 53): Endpoint => ({
  addr: new Uint8Array([192, 0, 2, last]),
  port,
});

function fake(fail: (e: Endpoint) => boolean = () => false) {
  let next = 100;
  const open = new Set<number>();
  const bound = new Map<number, Endpoint>();
  return {
    open,
    bound,
    opts: {
      open: (e: Endpoint) => {
        if (fail(e)) throw new Error("bind refused");
        const fd = next++;
        open.add(fd);
        bound.set(fd, e);
        return fd;
      },
      close: (fd: number) => {
        assert.ok(open.delete(fd), `fd ${fd} closed once`);
      },
    },
  };
}

Deno.test("ReplySocketCache.get() opens one socket per destination and shares it between lookups", () => {
  const f = fake();
  const c = new ReplySocketCache({ maxSockets: 4, ...f.opts });
  const a = c.get(ep(1));
  assert.equal(c.get(ep(1)), a);
  const b = c.get(ep(1, 54));
  assert.notEqual(b, a, "another port is another socket");
  assert.deepEqual(f.bound.get(a), ep(1));
  assert.deepEqual(c.counters(), { opened: 2, evicted: 0, hits: 1, errors: 0 });
  assert.equal(f.open.size, 2);
});

Deno.test("ReplySocketCache keeps at most maxSockets open, closing the least recently used", () => {
  const f = fake();
  const c = new ReplySocketCache({ maxSockets: 3, reorderMs: 0, ...f.opts });
  const fds = [1, 2, 3].map((i) => c.get(ep(i)));
  c.get(ep(1)); // 1 is now the most recent: 2 goes first
  for (let i = 4; i < 1000; i++) {
    c.get(ep(i % 250));
    assert.ok(f.open.size <= 3, "bounded under churn");
  }
  assert.equal(c.size, 3);
  assert.ok(!f.open.has(fds[1]!), "LRU socket was closed");
  c.clear();
  assert.equal(f.open.size, 0, "clear() closes everything");
});

Deno.test("ReplySocketCache.get() returns -1 and counts an error when the socket cannot be opened", () => {
  const f = fake((e) => e.port === 1);
  const c = new ReplySocketCache({ maxSockets: 2, ...f.opts });
  assert.equal(c.get(ep(9, 1)), -1);
  assert.equal(c.counters().errors, 1);
  assert.equal(c.size, 0);
  const fd = c.get(ep(9, 2));
  c.invalidate(ep(9, 2));
  assert.ok(!f.open.has(fd));
  assert.notEqual(c.get(ep(9, 2)), fd, "reopened after invalidate()");
  assert.throws(() => new ReplySocketCache({ maxSockets: 0, ...f.opts }), RangeError);
});
