import assert from "node:assert/strict";
import { ARENA_HEADER, arenaCell } from "../rules/arena_cell.ts";
import { ArenaPool, intoArena } from "./arena.ts";

Deno.test("intoArena() copies every typed array into one shared arena, views and values kept", () => {
  const shared = new ArrayBuffer(64);
  const a = new Int32Array(shared, 8, 4);
  a.set([1, -2, 3, -4]);
  const b = new Uint8Array(shared, 40, 3);
  b.set([7, 8, 9]);
  const c = new Float64Array([0.5, 1.5]);
  const own = new Uint16Array([65535]); // not in the list: left as it is
  const msg = { id: 3, wire: { a, b, list: [c, { n: 1 }], own }, text: "x" };
  const pool = new ArenaPool();
  const r = intoArena(msg, [shared, c.buffer], pool);
  const m = r.msg;
  assert.ok(m.wire.a.buffer instanceof SharedArrayBuffer);
  assert.equal(m.wire.a.buffer, m.wire.b.buffer, "one arena");
  assert.equal((m.wire.list[0] as Float64Array).buffer, m.wire.a.buffer);
  assert.deepEqual([...m.wire.a], [1, -2, 3, -4]);
  assert.deepEqual([...m.wire.b], [7, 8, 9]);
  assert.deepEqual([...(m.wire.list[0] as Float64Array)], [0.5, 1.5]);
  assert.ok(m.wire.a instanceof Int32Array && m.wire.b instanceof Uint8Array);
  assert.equal(m.wire.b.byteOffset - m.wire.a.byteOffset, 32, "offsets within a buffer kept");
  assert.ok(m.wire.a.byteOffset >= ARENA_HEADER, "the generation cell stays free");
  assert.equal(m.wire.own, own);
  assert.deepEqual(m.wire.list[1], { n: 1 });
  assert.equal(m.wire.list[1], msg.wire.list[1], "what holds no arena array is passed as it is");
  assert.notEqual(m.wire.list, msg.wire.list);
  assert.equal(m.text, "x");
  assert.equal(arenaCell(m.wire.a.buffer)![0], 0);
  assert.equal(shared.byteLength, 0, "the originals are detached, as by a transfer");
  assert.equal(a.length, 0);
  assert.equal(arenaCell(new ArrayBuffer(8)), null, "not shared: no arena");
});

Deno.test("intoArena() rebuilds an object or array only when something in it moved", () => {
  const buf = new ArrayBuffer(16);
  const spec = { port: [443], domain: ["a.example"], nested: { on: true } };
  const msg = {
    config: { tags: ["a", "b"] },
    specs: [spec, spec],
    wire: { x: [1, new Int32Array(buf)] },
  };
  const m = intoArena(msg, [buf], new ArenaPool()).msg;
  assert.equal(m.config, msg.config);
  assert.equal(m.specs, msg.specs);
  assert.notEqual(m.wire, msg.wire);
  assert.notEqual(m.wire.x, msg.wire.x);
  assert.equal(m.wire.x[0], 1);
  assert.ok((m.wire.x[1] as Int32Array).buffer instanceof SharedArrayBuffer);
});

Deno.test("ArenaPool reuses a freed arena that fits, and keeps at most two free ones", () => {
  const pool = new ArenaPool();
  const x = pool.take(1000);
  const y = pool.take(1000);
  assert.notEqual(x.id, y.id);
  pool.free([x.id]);
  assert.equal(pool.take(900).id, x.id, "reused");
  assert.notEqual(pool.take(900).id, x.id, "in use again: a new one");
  pool.free([y.id]);
  const big = pool.take(10 << 20);
  assert.notEqual(big.id, y.id, "too small to reuse");
  assert.ok(big.sab.byteLength >= 10 << 20);
  pool.free([big.id]);
  assert.notEqual(pool.take(1000).id, big.id, "far too big to reuse for a small compile");
  const before = pool.counts();
  const more = [pool.take(10), pool.take(10), pool.take(10)];
  pool.free(more.map((a) => a.id));
  assert.equal(pool.counts().free, 2, "at most two free arenas kept");
  assert.equal(pool.counts().allocated, before.allocated + 3);
  pool.free([12345]); // unknown: ignored
  const held = pool.counts().held;
  assert.equal(pool.dropFree(), 2);
  assert.deepEqual(pool.counts(), { held: held - 2, free: 0, allocated: before.allocated + 3 });
  assert.notEqual(pool.take(10).id, more[2]!.id, "dropped arenas are not reused");
});

Deno.test("intoArena() copies the `keep` buffers too but leaves them to the caller", () => {
  const moved = new Int32Array([1, 2]);
  const kept = new Uint8Array([7, 8, 9]);
  const m = intoArena({ moved, kept }, [moved.buffer], new ArenaPool(), [kept.buffer]).msg;
  assert.deepEqual([...m.kept], [7, 8, 9]);
  assert.ok(m.kept.buffer instanceof SharedArrayBuffer && m.kept.buffer === m.moved.buffer);
  assert.equal(moved.length, 0, "detached");
  assert.deepEqual([...kept], [7, 8, 9], "still the caller's");
});
