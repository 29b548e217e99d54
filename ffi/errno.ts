/**
 * errno values (Linux x86_64/aarch64 generic numbers) and the one error
 * class every failing libc call becomes.
 *
 * @module
 */

/** Linux errno numbers we branch on or name. */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  ENFILE: 23,
  EMFILE: 24,
  ENOSPC: 28,
  ESPIPE: 29,
  EPIPE: 32,
  ENOSYS: 38,
  ENOPROTOOPT: 92,
  EPROTONOSUPPORT: 93,
  EOPNOTSUPP: 95,
  EAFNOSUPPORT: 97,
  EADDRINUSE: 98,
  EADDRNOTAVAIL: 99,
  ENETDOWN: 100,
  ENETUNREACH: 101,
  ENETRESET: 102,
  ECONNABORTED: 103,
  ECONNRESET: 104,
  ENOBUFS: 105,
  EISCONN: 106,
  ENOTCONN: 107,
  ETIMEDOUT: 110,
  ECONNREFUSED: 111,
  EHOSTDOWN: 112,
  EHOSTUNREACH: 113,
  EALREADY: 114,
  EINPROGRESS: 115,
} as const;

const NAMES: Map<number, string> = new Map(
  Object.entries(Errno).map(([name, n]) => [n, name]),
);

/** The symbolic name of an errno number (`"ECONNREFUSED"`), or `"E<n>"`. */
export function errnoName(errno: number): string {
  return NAMES.get(errno) ?? `E${errno}`;
}

/** A libc call failed: `errno`, the `syscall` name and the symbolic `code`. */
export class ErrnoError extends Error {
  /** The errno number. */
  readonly errno: number;
  /** The failing libc function, e.g. `"connect"`. */
  readonly syscall: string;
  /** Symbolic errno, e.g. `"ECONNREFUSED"`. */
  readonly code: string;

  /** Creates the error; `detail` is appended to the message (e.g. an address). */
  constructor(syscall: string, errno: number, detail?: string) {
    const code = errnoName(errno);
    super(`${syscall}: ${code} (errno ${errno})${detail ? ` ${detail}` : ""}`);
    this.name = "ErrnoError";
    this.errno = errno;
    this.syscall = syscall;
    this.code = code;
  }
}

/** A dial or wait ran out of time (`name === "TimeoutError"`). */
export class TimeoutError extends Error {
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "TimeoutError";
  }
}

/** The fd was closed or unregistered while a wait was pending (`name === "ClosedError"`). */
export class ClosedError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "ClosedError";
  }
}
