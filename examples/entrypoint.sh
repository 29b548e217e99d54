#!/bin/sh
# Container / host entry point replacing the sing-box start: put our TPROXY
# table and policy rules in place (idempotent, never touches other tables),
# check the kernel, then exec the router so it receives SIGTERM/SIGHUP.
#
#   entrypoint.sh [CONFIG]        (default /etc/vpn-router/router.json)
#   env: VPN_ROUTER_INTERFACES    ingress interfaces to steer, e.g. "eth1,wg-ingress"
#        VPN_ROUTER_PORT          TPROXY port (default 7893; must match the config)
set -eu
config=${1:-/etc/vpn-router/router.json}
router=${ROUTER_BIN:-router}

"$router" check --config "$config"
set -- --port "${VPN_ROUTER_PORT:-7893}" --sysctl
[ -n "${VPN_ROUTER_INTERFACES:-}" ] && set -- "$@" --interfaces "$VPN_ROUTER_INTERFACES"
"$router" tproxy-rules "$@" --apply
"$router" doctor || echo "entrypoint: doctor reported problems (see above); starting anyway" >&2
exec "$router" run --config "$config"
