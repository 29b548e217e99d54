/**
 * Bounded newline-delimited framing over a byte stream, shared by the IPC
 * server, the IPC client and `router route-test --batch`.
 *
 * @module
 */

/** One item produced by {@linkcode LineReader}. */
export type LineItem =
  /** A complete line, without its `\n` (and without a trailing `\r`). */
  | { readonly kind: "line"; readonly text: string }
  /**
   * A line longer than the limit. Its bytes were discarded up to and
   * including the next `\n`, so the reader is in sync again after it.
   * `bytes` counts what was seen of it (at least `maxLineBytes + 1`).
   */
  | { readonly kind: "too_long"; readonly bytes: number };

const NL = 0x0a;

/**
 * Splits a byte stream into lines of at most `maxLineBytes` bytes (the `\n`
 * excluded). Memory stays bounded by `maxLineBytes` plus one chunk: an
 * over-long line is reported once as `too_long` and skipped. A last line
 * without a final `\n` is returned at end of stream.
 *
 * @example
 * ```ts
 * const lines = new LineReader(conn.readable, 1 << 20);
 * for await (const item of lines) if (item.kind === "line") handle(item.text);
 * ```
 */
export class LineReader implements AsyncIterable<LineItem> {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #max: number;
  readonly #decoder = new TextDecoder();
  #chunks: Uint8Array[] = [];
  #pending = 0;
  /** Bytes of an over-long line seen so far; -1 when not discarding. */
  #discarding = -1;
  #eof = false;
  #leftover: Uint8Array | null = null;

  /** Reads from `stream`; lines above `maxLineBytes` bytes are reported as `too_long`. */
  constructor(stream: ReadableStream<Uint8Array>, maxLineBytes: number) {
    if (!Number.isInteger(maxLineBytes) || maxLineBytes < 1) {
      throw new RangeError(`Cannot create LineReader: maxLineBytes ${maxLineBytes} must be >= 1`);
    }
    this.#reader = stream.getReader();
    this.#max = maxLineBytes;
  }

  /** The next line, or null at end of stream. */
  async next(): Promise<LineItem | null> {
    for (;;) {
      const chunk = this.#leftover ?? (this.#eof ? null : await this.#read());
      this.#leftover = null;
      if (chunk === null) return this.#finish();
      const nl = chunk.indexOf(NL);
      if (this.#discarding >= 0) {
        if (nl < 0) {
          this.#discarding += chunk.length;
          continue;
        }
        const bytes = this.#discarding + nl;
        this.#discarding = -1;
        if (nl + 1 < chunk.length) this.#leftover = chunk.subarray(nl + 1);
        return { kind: "too_long", bytes };
      }
      if (nl < 0) {
        this.#push(chunk);
        if (this.#pending > this.#max) {
          this.#discarding = this.#pending;
          this.#chunks = [];
          this.#pending = 0;
        }
        continue;
      }
      if (nl + 1 < chunk.length) this.#leftover = chunk.subarray(nl + 1);
      const head = chunk.subarray(0, nl);
      const total = this.#pending + head.length;
      if (total > this.#max) {
        this.#chunks = [];
        this.#pending = 0;
        return { kind: "too_long", bytes: total };
      }
      this.#push(head);
      return { kind: "line", text: this.#take() };
    }
  }

  /** Stops reading and releases the stream. */
  async cancel(): Promise<void> {
    this.#eof = true;
    this.#leftover = null;
    await this.#reader.cancel().catch(() => {});
  }

  async *[Symbol.asyncIterator](): AsyncIterator<LineItem> {
    for (;;) {
      const item = await this.next();
      if (item === null) return;
      yield item;
    }
  }

  async #read(): Promise<Uint8Array | null> {
    const r = await this.#reader.read();
    if (r.done) {
      this.#eof = true;
      return null;
    }
    return r.value;
  }

  #finish(): LineItem | null {
    if (this.#discarding >= 0) {
      const bytes = this.#discarding;
      this.#discarding = -1;
      return { kind: "too_long", bytes };
    }
    if (this.#pending === 0) return null;
    return { kind: "line", text: this.#take() };
  }

  #push(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    // Copy: the stream may reuse its buffers.
    this.#chunks.push(bytes.slice());
    this.#pending += bytes.length;
  }

  #take(): string {
    let bytes: Uint8Array;
    if (this.#chunks.length === 1) bytes = this.#chunks[0]!;
    else {
      bytes = new Uint8Array(this.#pending);
      let off = 0;
      for (const c of this.#chunks) {
        bytes.set(c, off);
        off += c.length;
      }
    }
    this.#chunks = [];
    this.#pending = 0;
    let text = this.#decoder.decode(bytes);
    if (text.endsWith("\r")) text = text.slice(0, -1);
    return text;
  }
}

/** Writes all of `bytes` to a writer whose `write` may be partial. */
export async function writeAll(
  w: { write(p: Uint8Array): Promise<number> },
  bytes: Uint8Array,
): Promise<void> {
  let off = 0;
  while (off < bytes.length) {
    const n = await w.write(bytes.subarray(off));
    if (n <= 0) throw new Deno.errors.WriteZero(`write returned ${n}`);
    off += n;
  }
}
