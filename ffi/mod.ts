/**
 * Linux sockets through libc FFI: errno errors, sockaddr/cmsg codecs, safe
 * socket wrappers, the epoll reactor and {@linkcode FdStream}.
 *
 * @module
 */

export * from "./errno.ts";
export * from "./sockaddr.ts";
export * from "./cmsg.ts";
export * from "./socket.ts";
export * from "./reactor.ts";
export * from "./stream.ts";
export { errnoView, libc } from "./libc.ts";
export { type LibcSymbols, SYMBOLS } from "./symbols.ts";
export * from "./pipe_pool.ts";
export * from "./timer_queues.ts";
