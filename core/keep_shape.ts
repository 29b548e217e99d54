/**
 * Keeps the hidden classes ("maps") of short-lived objects alive, so that
 * the JIT's optimised code for them survives garbage collections.
 *
 * V8's optimised code checks the maps of the objects it handles and holds
 * them weakly. A map whose last object died can be collected; the code that
 * checked it is then thrown away ("embedded weak objects cleared" in
 * `--trace-deopt`). Maps of dead objects normally survive a few collections
 * (`--retain-maps-for-n-gc`), but not memory-reducing ones, and under
 * `--optimize-for-size` (how the router runs) every major collection is
 * memory-reducing. The config worker's builders (tries, name tables,
 * scanners) live only as long as one compile, so their maps died between
 * reloads and every reload ran the compiler's hot code unoptimised: 10k-rule
 * full compile ~28 ms instead of ~11 ms (`docs/rules.md`, round 11).
 *
 * A class whose instances are made per compile calls {@linkcode keepShape}
 * in its constructor. A thread that wants its maps kept calls
 * {@linkcode keepShapes} once, then makes one small object of each such
 * class (the config worker compiles a tiny config): the first instance of
 * each class is kept for the life of the thread, and with it the maps that
 * later instances go through. Other threads keep nothing (their first
 * instance may be a big one).
 *
 * @module
 */

let kept: Map<unknown, object> | null = null;

/** From now on, this thread keeps the first instance of each class that calls {@linkcode keepShape}. */
export function keepShapes(): void {
  kept ??= new Map();
}

/** Keeps `o` when shapes are kept on this thread and it is the first of its class. */
export function keepShape(o: object): void {
  if (kept !== null && !kept.has(o.constructor)) kept.set(o.constructor, o);
}

/** The classes whose first instance this thread keeps (for tests). */
export function keptShapes(): string[] {
  return kept === null ? [] : [...kept.values()].map((o) => o.constructor.name);
}
