# Full Node image: Alpine + the compiled `router` + nftables + iproute2.
# Not built on our development machines (no Docker engine there). Same
# glibc-on-Alpine arrangement as Dockerfile.slim (a `deno compile` binary
# links glibc); the router itself only needs libc.so.6 through FFI.
#
#   docker build -t vpn-router/router .
#   docker run --cap-add NET_ADMIN --network host \
#     -v /etc/vpn-router:/etc/vpn-router vpn-router/router
#
# The entrypoint applies our nftables table and policy rules (idempotent),
# then runs the router; see examples/entrypoint.sh.

ARG DENO_VERSION=2.9.6

FROM denoland/deno:${DENO_VERSION} AS build
WORKDIR /src
COPY . .
# build.sh: the flags the router needs (its --v8-flags, the
# embedded config worker); REQUIRE_COMPILE: no launcher fallback in an image.
RUN REQUIRE_COMPILE=1 ONLY=router DIST=/out ./build.sh

FROM gcr.io/distroless/cc-debian12 AS glibc

FROM alpine:3.20
RUN apk add --no-cache iproute2-minimal nftables
COPY --from=glibc /lib/x86_64-linux-gnu/libc.so.6 /lib/x86_64-linux-gnu/libm.so.6 \
     /lib/x86_64-linux-gnu/libgcc_s.so.1 /lib/x86_64-linux-gnu/libdl.so.2 \
     /lib/x86_64-linux-gnu/librt.so.1 /lib/x86_64-linux-gnu/libpthread.so.0 /usr/local/glibc/
COPY --from=glibc /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 /lib64/ld-linux-x86-64.so.2
COPY --from=build /out/router /usr/local/bin/router
COPY examples/entrypoint.sh /usr/local/bin/vpn-router-entrypoint
ENV LD_LIBRARY_PATH=/usr/local/glibc
HEALTHCHECK --interval=30s --timeout=3s CMD ["/usr/local/bin/router", "status", "--json"]
ENTRYPOINT ["/usr/local/bin/vpn-router-entrypoint"]
CMD ["/etc/vpn-router/router.json"]
