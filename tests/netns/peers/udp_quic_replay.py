#!/usr/bin/env python3
"""Replays a captured QUIC client flight (a .hex fixture: one datagram per
line) from one socket to a target, then collects replies for --timeout
seconds. Prints JSON {"local": A:P, "sent": N, "replies": M}.

Usage: udp_quic_replay.py --fixture FILE --target A:P [--timeout S]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _peer import bind_any, fmt, parse_endpoint, parse_opts, recv_until, report, udp_socket  # noqa: E402


def main():
    opts = parse_opts(sys.argv[1:], {"--timeout": "2"})
    with open(opts["--fixture"]) as f:
        datagrams = [bytes.fromhex(line.strip()) for line in f if line.strip()][:64]
    target = parse_endpoint(opts["--target"])
    s = udp_socket(target[0])
    bind_any(s)
    for d in datagrams:
        s.sendto(d, target)
    replies = sum(1 for _ in recv_until(s, float(opts["--timeout"])))
    report({"local": fmt(s.getsockname()), "sent": len(datagrams), "replies": replies})


if __name__ == "__main__":
    main()
