/**
 * Opens N TCP connections to an echo peer, sends 1 byte on each and waits
 * for its echo (so every flow is established end to end), prints
 * `{"held":N,"errors":E}` and keeps them open until --seconds pass
 * (default 30) or the process is killed.
 *
 * `deno run -A hold_flows.ts --connect ADDR:PORT [--flows N] [--seconds S]`
 * Bounded: at most 20000 flows.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { hostPort, intFlag } from "../../tests/netns/peers/_util.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { connect: { type: "string" }, flows: { type: "string" }, seconds: { type: "string" } },
});
const target = hostPort("connect", values.connect);
const flows = intFlag("flows", values.flows, 1000, 20_000);
const seconds = intFlag("seconds", values.seconds, 30, 600);
const held: Deno.TcpConn[] = [];
let errors = 0;
const batch = 100;
for (let i = 0; i < flows; i += batch) {
  await Promise.all(Array.from({ length: Math.min(batch, flows - i) }, async () => {
    try {
      const c = await Deno.connect({ ...target, transport: "tcp" });
      await c.write(new Uint8Array([7]));
      if ((await c.read(new Uint8Array(4))) === null) throw new Error("closed");
      held.push(c);
    } catch {
      errors++;
    }
  }));
}
console.log(JSON.stringify({ held: held.length, errors }));
await new Promise((r) => setTimeout(r, seconds * 1000));
for (const c of held) c.close();
