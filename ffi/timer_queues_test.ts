import assert from "node:assert/strict";
import { TimerQueues, type TimerQueuesClock } from "./timer_queues.ts";

/** A manual clock: `advance()` runs due fake timers in order. */
function fakeClock(): TimerQueuesClock & { advance(ms: number): void; armed: number } {
  let now = 0;
  let nextId = 1;
  const timers = new Map<number, { at: number; fn: () => void }>();
  return {
    now: () => now,
    setTimeout(fn, ms) {
      const id = nextId++;
      timers.set(id, { at: now + ms, fn });
      return id;
    },
    clearTimeout(id) {
      timers.delete(id as number);
    },
    advance(ms: number) {
      const end = now + ms;
      for (;;) {
        const due = [...timers].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at);
        if (due.length === 0) break;
        const [id, t] = due[0]!;
        timers.delete(id);
        now = Math.max(now, t.at);
        t.fn();
      }
      now = end;
    },
    get armed() {
      return timers.size;
    },
  };
}

Deno.test("TimerQueues.set() fires each timeout once, in order, never early", () => {
  const clock = fakeClock();
  const tq = new TimerQueues({ clock, slackMs: 0 });
  const fired: string[] = [];
  tq.set(100, () => fired.push("a"));
  clock.advance(10);
  tq.set(100, () => fired.push("b"));
  tq.set(30, () => fired.push("short"));
  clock.advance(29);
  assert.deepEqual(fired, []);
  clock.advance(1);
  assert.deepEqual(fired, ["short"]);
  clock.advance(59);
  assert.deepEqual(fired, ["short"]);
  clock.advance(1);
  assert.deepEqual(fired, ["short", "a"]);
  clock.advance(10);
  assert.deepEqual(fired, ["short", "a", "b"]);
  assert.equal(tq.pending, 0);
  assert.equal(clock.armed, 0, "no real timer left once nothing is pending");
});

Deno.test("TimerQueues.clear() cancels only that timeout and is idempotent", () => {
  const clock = fakeClock();
  const tq = new TimerQueues({ clock, slackMs: 0 });
  const fired: number[] = [];
  const hs = [1, 2, 3].map((i) => tq.set(50, () => fired.push(i)));
  tq.clear(hs[0]!);
  tq.clear(hs[2]!);
  tq.clear(hs[2]!);
  assert.equal(tq.pending, 1);
  clock.advance(60);
  assert.deepEqual(fired, [2]);
  tq.clear(hs[1]!); // already fired: no-op
  assert.equal(tq.pending, 0);
});

Deno.test("TimerQueues uses one real timer per duration and fires within the slack", () => {
  const clock = fakeClock();
  const tq = new TimerQueues({ clock, slackMs: 5 });
  let n = 0;
  for (let i = 0; i < 1000; i++) tq.set(300, () => n++);
  assert.equal(clock.armed, 1);
  clock.advance(300);
  assert.equal(n, 0, "within the slack: not yet");
  clock.advance(5);
  assert.equal(n, 1000);
});

Deno.test("TimerQueues: a callback may set a new timeout of the same duration", () => {
  const clock = fakeClock();
  const tq = new TimerQueues({ clock, slackMs: 0 });
  const at: number[] = [];
  const tick = () => {
    at.push(clock.now());
    if (at.length < 3) tq.set(20, tick);
  };
  tq.set(20, tick);
  clock.advance(100);
  assert.deepEqual(at, [20, 40, 60]);
});
