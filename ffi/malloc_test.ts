import assert from "node:assert/strict";
import { fixMmapThreshold, MMAP_THRESHOLD } from "./malloc.ts";

const lib = Deno.dlopen("libc.so.6", {
  malloc: { parameters: ["usize"], result: "pointer" },
  free: { parameters: ["pointer"], result: "void" },
  /** struct mallinfo2 mallinfo2(void);  ten size_t fields; hblkhd (mmapped bytes) is the 5th. */
  mallinfo2: { parameters: [], result: { struct: Array(10).fill("usize") } },
});

function mmappedBytes(): number {
  const info = new DataView(lib.symbols.mallinfo2().buffer);
  return Number(info.getBigUint64(4 * 8, true));
}

/** Mmapped bytes gained while a block of `size` is held (0: it came from an arena). */
function heldOnMmap(size: number): number {
  const before = mmappedBytes();
  const p = lib.symbols.malloc(BigInt(size));
  const during = mmappedBytes();
  lib.symbols.free(p);
  return during - before;
}

Deno.test("fixMmapThreshold() keeps big blocks on mmap, whatever was freed before", () => {
  const size = 1 << 20;
  // What glibc does on its own: freeing an mmapped 16 MiB block raises its threshold, so a
  // 1 MiB block comes from an arena afterwards (and its memory stays there once freed).
  // (Nothing else in the test process fixes the threshold: no test runs `router run` here.)
  heldOnMmap(16 << 20);
  assert.equal(heldOnMmap(size), 0, "after freeing 16 MiB, 1 MiB comes from an arena");
  assert.equal(fixMmapThreshold(), true);
  assert.ok(heldOnMmap(size) >= size, "with the threshold fixed, 1 MiB is mmapped again");
  heldOnMmap(16 << 20);
  assert.ok(heldOnMmap(size) >= size, "and stays so after freeing a bigger block");
  assert.equal(heldOnMmap(MMAP_THRESHOLD / 2), 0, "small blocks still come from the arena");
});
