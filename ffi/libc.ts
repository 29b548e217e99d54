/**
 * Lazy loader for libc: nothing is opened at import time, so pure modules
 * that import `ffi/` types run without `--allow-ffi`. The first call to
 * {@linkcode libc} opens `libc.so.6` (plain `--allow-ffi` is required:
 * `--allow-ffi=libc.so.6` resolves relative to the cwd and fails).
 *
 * @module
 */

import { type LibcSymbols, SYMBOLS } from "./symbols.ts";

/** Loaded library and the errno view, per isolate. */
interface Loaded {
  readonly symbols: LibcSymbols;
  readonly errno: Int32Array;
}

// The one piece of module state in ffi/: the per-isolate handle, created on
// first use. It is never closed (it lives as long as the isolate).
let loaded: Loaded | null = null;

function load(): Loaded {
  if (loaded) return loaded;
  const lib = Deno.dlopen("libc.so.6", SYMBOLS);
  const ptr = lib.symbols.__errno_location();
  if (ptr === null) throw new Error("Cannot load libc: __errno_location() returned NULL");
  // errno is thread-local; this view is the main thread's errno and is read
  // as the very next expression after a failing call (see DESIGN.md §3).
  const errno = new Int32Array(Deno.UnsafePointerView.getArrayBuffer(ptr, 4));
  loaded = { symbols: lib.symbols, errno };
  return loaded;
}

/** The bound libc functions (opens libc on first call). */
export function libc(): LibcSymbols {
  return (loaded ?? load()).symbols;
}

/**
 * A live `Int32Array` of length 1 over this thread's `errno`. Cache it and
 * read `[0]` immediately after a call returned -1.
 */
export function errnoView(): Int32Array {
  return (loaded ?? load()).errno;
}
