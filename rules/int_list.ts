/**
 * A growable list of 32-bit integers in one `Int32Array` (doubled when
 * full): what compiles collect by the thousand, without a JS array of
 * numbers to copy and collect afterwards.
 *
 * @module
 */

import { shapeOf } from "../core/keep_shape.ts";

/** See the module doc. `data[0 .. length)` is the list. */
export class IntList {
  data: Int32Array;
  length = 0;

  /** Room for `capacity` values before the first growth. */
  constructor(capacity = 1024) {
    this.data = new Int32Array(Math.max(1, capacity));
  }

  push(x: number): void {
    if (this.length === this.data.length) {
      const grown = new Int32Array(this.data.length * 2);
      grown.set(this.data);
      this.data = grown;
    }
    this.data[this.length++] = x;
  }

  /** The list in an array of its own length (the buffer itself when it is exactly full). */
  toArray(): Int32Array {
    return this.length === this.data.length ? this.data : this.data.slice(0, this.length);
  }
}
// Lives for one compile: keep its hidden class for the optimised code (keep_shape.ts).
shapeOf(() => new IntList(1));
