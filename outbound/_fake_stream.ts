/**
 * In-memory {@linkcode ByteStream} for SOCKS5 unit tests: each `writeAll`
 * by the client makes the scripted "server" answer with the next entry.
 *
 * @module
 */

import type { ByteStream } from "./socks5_wire.ts";

/** What the fake server does after a client write: send bytes, close, or stay silent. */
export type FakeReply = Uint8Array | "eof" | "hang";

/** A scripted in-memory stream. */
export class FakeStream implements ByteStream {
  /** Everything the client wrote, one entry per `writeAll`. */
  readonly writes: Uint8Array[] = [];
  closed = false;
  #replies: FakeReply[];
  #inbox: Uint8Array = new Uint8Array(0);
  #eof = false;
  #wake: (() => void) | null = null;

  /** `replies[i]` answers the i-th `writeAll`; `initial` is readable at once. */
  constructor(replies: FakeReply[], initial?: Uint8Array) {
    this.#replies = [...replies];
    if (initial) this.#inbox = initial;
  }

  /** Makes `bytes` readable. */
  push(bytes: Uint8Array): void {
    const n = new Uint8Array(this.#inbox.length + bytes.length);
    n.set(this.#inbox);
    n.set(bytes, this.#inbox.length);
    this.#inbox = n;
    this.#wake?.();
  }

  /** Marks EOF after the buffered bytes. */
  end(): void {
    this.#eof = true;
    this.#wake?.();
  }

  /** Bytes still unread by the client. */
  unread(): Uint8Array {
    return this.#inbox;
  }

  async read(buf: Uint8Array): Promise<number> {
    while (true) {
      if (this.closed) throw new Error("read on closed stream");
      if (this.#inbox.length > 0) {
        const n = Math.min(buf.length, this.#inbox.length);
        buf.set(this.#inbox.subarray(0, n));
        this.#inbox = this.#inbox.subarray(n);
        return n;
      }
      if (this.#eof) return 0;
      await new Promise<void>((r) => (this.#wake = r));
      this.#wake = null;
    }
  }

  writeAll(buf: Uint8Array): Promise<void> {
    if (this.closed) return Promise.reject(new Error("write on closed stream"));
    this.writes.push(buf.slice());
    const reply = this.#replies.shift() ?? "hang";
    if (reply === "eof") this.end();
    else if (reply !== "hang") this.push(reply);
    return Promise.resolve();
  }

  close(): void {
    this.closed = true;
    this.#wake?.();
  }
}
