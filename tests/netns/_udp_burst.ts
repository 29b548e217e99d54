/**
 * UDP integrity runs for the netns tests: `peers/udp_burst.py` sends
 * numbered datagrams in bursts (runs of one size, mixed sizes) from the
 * client namespace through the router to a raw echo in the server namespace,
 * and every echo is checked byte for byte.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type Lab, peerPath } from "./harness.ts";

/** What `udp_burst.py send` reports. */
export interface BurstResult {
  /** The client's address (`ADDR:PORT`), as the router logs its sessions. */
  readonly local: string;
  readonly sent: number;
  readonly received: number;
  readonly corrupt: number;
  readonly duplicates: number;
  readonly out_of_order: number;
  /** Payload bytes of the datagrams received. */
  readonly bytes: number;
}

/** Starts a raw echo at `at` (`ADDR:PORT` / `[V6]:PORT`) in the server namespace. */
export async function startBurstEcho(lab: Lab, at: string) {
  const p = lab.spawn("server", [
    "python3",
    peerPath("udp_burst.py"),
    "serve",
    "--listen",
    at,
    "--seconds",
    "120",
  ]);
  await p.waitForLine(/^ready$/, 10_000);
  return p;
}

/**
 * Sends `count` numbered datagrams to `at` (an echo from
 * {@linkcode startBurstEcho}) and asserts what the batching must keep: no
 * datagram corrupt, duplicated or out of order, all sent. Loss is only
 * bounded (at least half received: socket buffers of a loaded machine may
 * drop some).
 */
export async function burstThrough(lab: Lab, at: string, count: number): Promise<BurstResult> {
  const r = await lab.run("client", [
    "python3",
    peerPath("udp_burst.py"),
    "send",
    "--target",
    at,
    "--count",
    String(count),
  ]);
  assert.equal(r.code, 0, r.stderr);
  const st = JSON.parse(r.stdout) as BurstResult;
  assert.equal(st.sent, count, `${at}: ${r.stdout}`);
  assert.equal(st.corrupt, 0, `${at}: every datagram byte for byte what was sent: ${r.stdout}`);
  assert.equal(st.duplicates, 0, `${at}: ${r.stdout}`);
  assert.equal(st.out_of_order, 0, `${at}: one session keeps its order: ${r.stdout}`);
  assert.ok(st.received >= count / 2, `${at}: ${r.stdout}`);
  return st;
}
