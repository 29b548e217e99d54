/**
 * Errors the Slim Node service raises and the HTTP layer maps to status
 * codes in one place (`app.ts`). Validation errors are
 * {@linkcode ValidationError} from `validate.ts` (400).
 *
 * @module
 */

/** No such peer or rule (404). */
export class NotFoundError extends Error {
  override name = "NotFoundError";
}

/** The request conflicts with the current state (409). */
export class ConflictError extends Error {
  override name = "ConflictError";
}

/** The kernel refused a change; the state was left as it was (500). */
export class KernelError extends Error {
  override name = "KernelError";
}
