/**
 * The libc symbol table of the data plane, as a typed constant. Each entry
 * carries its C prototype. Sizes (`size_t`, `socklen_t`) are declared `u32`
 * and `ssize_t` results `i32`: 64-bit integer types make Deno take a slower
 * path and return BigInts (see DESIGN.md §3); every length we pass is far
 * below 2^31. Pointers we fill (sockaddr, socklen_t*, iovec, …) are
 * `buffer` (a `Uint8Array`), optional pointers we never use are `pointer`
 * (pass `null`).
 *
 * Nothing is opened here: see `libc.ts` for the lazy loader.
 *
 * @module
 */

/** The symbols we bind from `libc.so.6`. */
export const SYMBOLS = {
  /** int socket(int domain, int type, int protocol); */
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  /** int setsockopt(int fd, int level, int optname, const void *optval, socklen_t optlen); */
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  /** int getsockopt(int fd, int level, int optname, void *optval, socklen_t *optlen); */
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  /** int bind(int fd, const struct sockaddr *addr, socklen_t addrlen); */
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  /** int listen(int fd, int backlog); */
  listen: { parameters: ["i32", "i32"], result: "i32" },
  /** int accept4(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags); */
  accept4: { parameters: ["i32", "buffer", "buffer", "i32"], result: "i32" },
  /** int connect(int fd, const struct sockaddr *addr, socklen_t addrlen); */
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  /** int getsockname(int fd, struct sockaddr *addr, socklen_t *addrlen); */
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  /** int getpeername(int fd, struct sockaddr *addr, socklen_t *addrlen); */
  getpeername: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  /** ssize_t recv(int fd, void *buf, size_t len, int flags); */
  recv: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  /** ssize_t send(int fd, const void *buf, size_t len, int flags); */
  send: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  /** ssize_t recvmsg(int fd, struct msghdr *msg, int flags); */
  recvmsg: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  /** ssize_t sendmsg(int fd, const struct msghdr *msg, int flags); */
  sendmsg: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  /** int recvmmsg(int fd, struct mmsghdr *msgvec, unsigned int vlen, int flags, struct timespec *timeout); */
  recvmmsg: { parameters: ["i32", "buffer", "u32", "i32", "pointer"], result: "i32" },
  /** int sendmmsg(int fd, struct mmsghdr *msgvec, unsigned int vlen, int flags); */
  sendmmsg: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  /** int shutdown(int fd, int how); */
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  /** int close(int fd); */
  close: { parameters: ["i32"], result: "i32" },
  /** int pipe2(int pipefd[2], int flags); */
  pipe2: { parameters: ["buffer", "i32"], result: "i32" },
  /** ssize_t splice(int fd_in, loff_t *off_in, int fd_out, loff_t *off_out, size_t len, unsigned int flags); */
  splice: {
    parameters: ["i32", "pointer", "i32", "pointer", "u32", "u32"],
    result: "i32",
  },
  /** int fcntl(int fd, int cmd, int arg);  (the variadic int form) */
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  /** int epoll_create1(int flags); */
  epoll_create1: { parameters: ["i32"], result: "i32" },
  /** int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event); */
  epoll_ctl: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  /** int epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout);  (sync: timeout 0 only) */
  epoll_wait: { parameters: ["i32", "buffer", "i32", "i32"], result: "i32" },
  /**
   * int epoll_pwait2(int epfd, struct epoll_event *events, int maxevents,
   *                  const struct timespec *timeout, const sigset_t *sigmask);  (Linux >= 5.11)
   * Sync, with a sub-millisecond timeout: the reactor's short blocking wait.
   * Optional: null with an older glibc (the reactor then skips that wait).
   */
  epoll_pwait2: {
    parameters: ["i32", "buffer", "i32", "buffer", "pointer"],
    result: "i32",
    optional: true,
  },
  /** The same epoll_wait, run on a worker thread: resolves a Promise. errno is not visible. */
  epoll_wait_nb: {
    name: "epoll_wait",
    parameters: ["i32", "buffer", "i32", "i32"],
    result: "i32",
    nonblocking: true,
  },
  /** int eventfd(unsigned int initval, int flags); */
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  /** ssize_t read(int fd, void *buf, size_t count); */
  read: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  /** ssize_t write(int fd, const void *buf, size_t count); */
  write: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  /** int *__errno_location(void);  (thread-local; main thread only) */
  __errno_location: { parameters: [], result: "pointer" },
  /** unsigned int if_nametoindex(const char *ifname); */
  if_nametoindex: { parameters: ["buffer"], result: "u32" },
  /** int getrlimit(int resource, struct rlimit *rlim); */
  getrlimit: { parameters: ["i32", "buffer"], result: "i32" },
  /** int setrlimit(int resource, const struct rlimit *rlim); */
  setrlimit: { parameters: ["i32", "buffer"], result: "i32" },
  /** int mallopt(int param, int value);  (glibc; 1 on success) */
  mallopt: { parameters: ["i32", "i32"], result: "i32", optional: true },
} as const satisfies Deno.ForeignLibraryInterface;

/** The bound functions, as `Deno.dlopen` types them. */
export type LibcSymbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
