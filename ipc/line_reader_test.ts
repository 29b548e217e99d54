import assert from "node:assert/strict";
import { type LineItem, LineReader } from "./line_reader.ts";

function streamOf(...chunks: string[]): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  return ReadableStream.from(chunks.map((c) => enc.encode(c)));
}

async function all(r: LineReader): Promise<LineItem[]> {
  const out: LineItem[] = [];
  for await (const item of r) out.push(item);
  return out;
}

Deno.test("LineReader joins a line split across chunks and splits chunks holding many lines", async () => {
  const items = await all(new LineReader(streamOf('{"a"', ":1}\n{}\n", "x\r\ny"), 100));
  assert.deepEqual(items, [
    { kind: "line", text: '{"a":1}' },
    { kind: "line", text: "{}" },
    { kind: "line", text: "x" },
    { kind: "line", text: "y" },
  ]);
});

Deno.test("LineReader reports an over-long line once and resyncs at the next newline", async () => {
  const items = await all(
    new LineReader(streamOf("ok\n", "0123456789", "0123456789", "AB\nafter\n"), 8),
  );
  assert.deepEqual(items, [
    { kind: "line", text: "ok" },
    { kind: "too_long", bytes: 22 },
    { kind: "line", text: "after" },
  ]);
});

Deno.test("LineReader reports a too-long line that arrives in one chunk with its newline", async () => {
  const items = await all(new LineReader(streamOf("123456789\nabc\n"), 8));
  assert.deepEqual(items, [{ kind: "too_long", bytes: 9 }, { kind: "line", text: "abc" }]);
});

Deno.test("LineReader accepts a line of exactly maxLineBytes and keeps empty lines", async () => {
  const items = await all(new LineReader(streamOf("12345678\n\n"), 8));
  assert.deepEqual(items, [{ kind: "line", text: "12345678" }, { kind: "line", text: "" }]);
});

Deno.test("LineReader reports an unterminated over-long tail at end of stream", async () => {
  const items = await all(new LineReader(streamOf("a\n", "0123456789"), 4));
  assert.deepEqual(items, [{ kind: "line", text: "a" }, { kind: "too_long", bytes: 10 }]);
});

Deno.test("LineReader decodes multi-byte UTF-8 split across chunks", async () => {
  const bytes = new TextEncoder().encode("héllo\n");
  const stream = ReadableStream.from([bytes.slice(0, 2), bytes.slice(2)]);
  assert.deepEqual(await all(new LineReader(stream, 100)), [{ kind: "line", text: "héllo" }]);
});

Deno.test("new LineReader() rejects a non-positive limit", () => {
  assert.throws(() => new LineReader(streamOf(), 0), RangeError);
});
