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
 * reloads and every reload ran the compiler's hot code unoptimised
 * (`docs/rules.md`, round 11).
 *
 * A module whose class makes such objects registers how to make a small one
 * ({@linkcode shapeOf}); a thread that wants those maps kept calls
 * {@linkcode keepShapes} once: one small object of each registered class is
 * made and kept for the life of the thread, and with it the map every later
 * instance ends up with (instances of a class get their fields in the same
 * order, so they share maps). Other threads keep nothing.
 *
 * @module
 */

const factories: (() => object)[] = [];
let kept: object[] | null = null;

/**
 * Registers `make`, which returns a small instance of a class whose
 * instances live for one compile (call it at module level, after the class).
 */
export function shapeOf(make: () => object): void {
  factories.push(make);
  if (kept !== null) kept.push(make());
}

/** From now on, this thread keeps one object of each registered class (see the module doc). */
export function keepShapes(): void {
  kept ??= factories.map((make) => make());
}

/** Names of the classes whose objects this thread keeps (for tests). */
export function keptShapes(): string[] {
  return kept === null ? [] : kept.map((o) => o.constructor.name);
}
