import assert from "node:assert/strict";
import type { Endpoint } from "../core/types.ts";
import {
  type DialVerdict,
  HealthChecker,
  type HealthClock,
  type HealthSpec,
  type ProbeContext,
  type TimerId,
} from "./health.ts";

/** Timers that fire only when the test advances time. */
class FakeClock implements HealthClock {
  t = 1_000_000;
  #next = 0;
  readonly timers = new Map<number, { at: number; fn: () => void }>();

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): TimerId {
    const id = ++this.#next;
    this.timers.set(id, { at: this.t + ms, fn });
    return id as unknown as TimerId;
  }

  clearTimeout(id: TimerId): void {
    this.timers.delete(id as unknown as number);
  }

  /** Moves time forward by `ms`, firing due timers in order and letting probes settle. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      await settle();
      let first: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.timers) {
        if (e[1].at <= end && (!first || e[1].at < first[1].at)) first = e;
      }
      if (!first) break;
      this.timers.delete(first[0]);
      this.t = first[1].at;
      first[1].fn();
    }
    this.t = end;
    await settle();
  }
}

/** Lets every pending promise chain run (one macrotask turn). */
function settle(): Promise<void> {
  return new Promise((r) => setTimeout(r, 0));
}

/** Destination number `n`: a different IP each. */
const ep = (n: number, port = 443): Endpoint => ({ addr: new Uint8Array([10, 0, 0, n]), port });

function errno(code: string): Error & { code: string } {
  return Object.assign(new Error(`connect: ${code}`), { code });
}

const pathVerdict = (e: unknown): DialVerdict => {
  const code = (e as { code?: string }).code;
  if (code === "ENETUNREACH") return "down";
  if (code === "ECONNREFUSED") return "up";
  return "neutral";
};

/** A probe whose outcome the test controls; records each call. */
function controlledProbe() {
  const calls: ProbeContext[] = [];
  const c = {
    calls,
    fail: null as Error | null,
    hang: false,
    probe: (ctx: ProbeContext): Promise<void> => {
      calls.push(ctx);
      if (c.hang) {
        return new Promise((_, reject) =>
          ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason))
        );
      }
      return c.fail ? Promise.reject(c.fail) : Promise.resolve();
    },
  };
  return c;
}

function active(probe: (ctx: ProbeContext) => Promise<void>, intervalMs = 30_000): HealthSpec {
  return { mode: "active", probe, intervalMs, timeoutMs: 3000, classify: pathVerdict };
}

function checker(
  clock: FakeClock,
  extra: Partial<ConstructorParameters<typeof HealthChecker>[0]> = {},
) {
  return new HealthChecker({ clock, random: () => 0.5, ...extra });
}

Deno.test("HealthChecker marks an active outbound up after its first probe, down with the error after a failed one", async () => {
  const clock = new FakeClock();
  const p = controlledProbe();
  const hc = checker(clock);
  try {
    const t0 = clock.t;
    hc.sync([{ tag: "s", key: "k", spec: active(p.probe) }]);
    assert.equal(hc.status("s")?.state, "unknown");
    await clock.advance(1000); // first check within firstCheckMaxMs
    assert.equal(p.calls.length, 1);
    assert.equal(hc.status("s")?.state, "up");
    assert.equal(hc.status("s")?.lastCheck, t0 + 500, "random() 0.5 × 1000 ms first delay");
    p.fail = new Error("SOCKS5 server 127.0.0.1:1080: cannot connect: ECONNREFUSED");
    await clock.advance(33_000); // one interval (+10% jitter at most)
    const st = hc.status("s")!;
    assert.equal(st.state, "down");
    assert.match(st.lastError ?? "", /ECONNREFUSED/);
    assert.equal(st.checkFailures, 1);
    assert.equal(hc.admit("s"), false, "a down outbound refuses new flows");
    assert.equal(hc.admit("s"), false);
    assert.equal(hc.status("s")?.failFast, 2);
  } finally {
    hc.close();
  }
});

Deno.test("HealthChecker keeps probing a down outbound and brings it back up by itself", async () => {
  const clock = new FakeClock();
  const p = controlledProbe();
  const hc = checker(clock, { downRetryMs: 2000 });
  try {
    p.fail = new Error("refused");
    hc.sync([{ tag: "s", key: "k", spec: active(p.probe) }]);
    await clock.advance(1000);
    assert.equal(hc.status("s")?.state, "down");
    await clock.advance(2200); // retried at min(interval, downRetryMs), not after 30 s
    assert.equal(p.calls.length, 2);
    assert.equal(hc.status("s")?.state, "down");
    p.fail = null;
    await clock.advance(2200);
    assert.equal(p.calls.length, 3);
    assert.equal(hc.status("s")?.state, "up");
    assert.equal(hc.admit("s"), true);
    assert.match(hc.status("s")?.lastError ?? "", /refused/, "last error kept after recovery");
  } finally {
    hc.close();
  }
});

Deno.test("HealthChecker fails a hung probe after timeoutMs and aborts its signal", async () => {
  const clock = new FakeClock();
  const p = controlledProbe();
  p.hang = true;
  const hc = checker(clock);
  try {
    hc.sync([{ tag: "s", key: "k", spec: active(p.probe) }]);
    await clock.advance(1000);
    assert.equal(p.calls.length, 1);
    assert.equal(hc.status("s")?.state, "unknown", "still running");
    await clock.advance(3000);
    assert.equal(p.calls[0]!.signal.aborted, true);
    assert.equal(hc.status("s")?.state, "down");
    assert.match(hc.status("s")?.lastError ?? "", /timed out after 3000 ms/);
  } finally {
    hc.close();
  }
});

Deno.test("HealthChecker turns a passive outbound down after N consecutive path failures only", () => {
  const clock = new FakeClock();
  const hc = checker(clock, { failThreshold: 3 });
  const spec: HealthSpec = {
    mode: "passive",
    intervalMs: 30_000,
    timeoutMs: 3000,
    classify: pathVerdict,
  };
  try {
    hc.sync([{ tag: "d", key: "k", spec }]);
    hc.reportFailure("d", errno("ENETUNREACH"), ep(1));
    hc.reportFailure("d", errno("ENETUNREACH"), ep(2));
    hc.reportFailure("d", errno("ECONNREFUSED"), ep(3)); // a host answered: the path works
    hc.reportFailure("d", errno("ENETUNREACH"), ep(4));
    hc.reportFailure("d", new DOMException("x", "AbortError"), ep(5)); // says nothing
    hc.reportFailure("d", errno("ENETUNREACH"), ep(6));
    assert.equal(hc.status("d")?.state, "up");
    hc.reportFailure("d", errno("ENETUNREACH"), ep(7));
    assert.equal(hc.status("d")?.state, "down");
    assert.match(hc.status("d")?.lastError ?? "", /ENETUNREACH/);
    assert.equal(hc.admit("d"), false);
    hc.reportSuccess("d");
    assert.equal(hc.status("d")?.state, "up");
  } finally {
    hc.close();
  }
});

Deno.test("HealthChecker re-dials a down passive outbound's last failed destination and admits one trial flow per period", async () => {
  const clock = new FakeClock();
  const p = controlledProbe();
  p.fail = errno("ENETUNREACH");
  const hc = checker(clock, { failThreshold: 1, downRetryMs: 5000 });
  try {
    hc.sync([{
      tag: "d",
      key: "k",
      spec: {
        mode: "passive",
        probe: p.probe,
        intervalMs: 30_000,
        timeoutMs: 3000,
        classify: pathVerdict,
      },
    }]);
    await clock.advance(60_000);
    assert.equal(p.calls.length, 0, "no probing while not down");
    hc.reportFailure("d", errno("ENETUNREACH"), ep(9));
    assert.equal(hc.status("d")?.state, "down");
    assert.equal(hc.admit("d"), false);
    await clock.advance(5500);
    assert.equal(p.calls.length, 1);
    assert.deepEqual(p.calls[0]!.lastFailed, ep(9), "re-dials the last failed destination");
    assert.equal(hc.status("d")?.state, "down");
    assert.equal(hc.admit("d"), true, "one trial flow per retry period");
    assert.equal(hc.admit("d"), false);
    p.fail = errno("ECONNREFUSED"); // the far host answers: the path is back
    await clock.advance(5500);
    assert.equal(hc.status("d")?.state, "up");
    assert.equal(hc.admit("d"), true);
  } finally {
    hc.close();
  }
});

Deno.test("HealthChecker probes an active outbound at once when a flow fails, at most once per gap", async () => {
  const clock = new FakeClock();
  const p = controlledProbe();
  const hc = checker(clock, { kickMinGapMs: 1000 });
  try {
    hc.sync([{ tag: "s", key: "k", spec: active(p.probe) }]);
    await clock.advance(1000);
    assert.equal(p.calls.length, 1);
    p.fail = new Error("refused");
    hc.reportFailure("s", errno("ENETUNREACH"), ep(1));
    await clock.advance(1);
    assert.equal(p.calls.length, 2, "kicked probe");
    assert.equal(hc.status("s")?.state, "down", "the probe, not the threshold, turned it down");
    hc.reportFailure("s", errno("ENETUNREACH"), ep(1));
    await clock.advance(1);
    assert.equal(p.calls.length, 2, "rate-limited");
  } finally {
    hc.close();
  }
});

Deno.test("HealthChecker runs at most maxConcurrent probes at once", async () => {
  const clock = new FakeClock();
  let running = 0, peak = 0;
  const releases: (() => void)[] = [];
  const probe = () => {
    running++;
    peak = Math.max(peak, running);
    return new Promise<void>((r) =>
      releases.push(() => {
        running--;
        r();
      })
    );
  };
  const hc = checker(clock, { maxConcurrent: 2 });
  try {
    hc.sync(["a", "b", "c", "d", "e"].map((tag) => ({ tag, key: tag, spec: active(probe) })));
    await clock.advance(1000);
    assert.equal(peak, 2);
    while (releases.length > 0) {
      releases.shift()!();
      await settle();
    }
    assert.equal(peak, 2);
    assert.deepEqual(["a", "b", "c", "d", "e"].map((t) => hc.status(t)?.state), [
      "up",
      "up",
      "up",
      "up",
      "up",
    ]);
  } finally {
    hc.close();
  }
});

Deno.test("HealthChecker.sync() keeps unchanged outbounds' state, restarts changed ones, stops removed ones", async () => {
  const clock = new FakeClock();
  const p = controlledProbe();
  p.fail = new Error("down");
  const hc = checker(clock);
  hc.sync([
    { tag: "keep", key: "1", spec: active(p.probe) },
    { tag: "change", key: "1", spec: active(p.probe) },
    { tag: "gone", key: "1", spec: active(p.probe) },
  ]);
  await clock.advance(1000);
  assert.deepEqual(hc.tags().map((t) => hc.status(t)?.state), ["down", "down", "down"]);
  hc.sync([
    { tag: "keep", key: "1", spec: active(p.probe) },
    { tag: "change", key: "2", spec: active(p.probe) },
    {
      tag: "new",
      key: "1",
      spec: { mode: "static", intervalMs: 1, timeoutMs: 1, classify: () => "neutral" },
    },
  ]);
  assert.deepEqual(hc.tags().sort(), ["change", "keep", "new"]);
  assert.equal(hc.status("keep")?.state, "down", "unchanged: state kept");
  assert.equal(hc.status("change")?.state, "unknown", "changed: starts fresh");
  assert.equal(hc.status("new")?.state, "up", "block-like static outbound is always up");
  assert.equal(hc.status("gone"), undefined);
  assert.equal(hc.admit("new"), true);
  hc.close();
  assert.equal(clock.timers.size, 0, "close() leaves no timer behind");
});

Deno.test("HealthChecker does not turn an outbound down for one dead host dialled over and over", () => {
  const clock = new FakeClock();
  const hc = checker(clock, { failThreshold: 3 });
  try {
    hc.sync([{
      tag: "d",
      key: "k",
      spec: { mode: "passive", intervalMs: 30_000, timeoutMs: 3000, classify: pathVerdict },
    }]);
    for (let port = 1; port <= 10; port++) {
      hc.reportFailure("d", errno("ENETUNREACH"), ep(7, port));
    }
    assert.notEqual(hc.status("d")?.state, "down", "same IP on every failure");
    assert.equal(hc.admit("d"), true);
    hc.reportFailure("d", errno("ENETUNREACH"), ep(8));
    assert.equal(hc.status("d")?.state, "down", "a second host failing the same way trips it");
  } finally {
    hc.close();
  }
});
