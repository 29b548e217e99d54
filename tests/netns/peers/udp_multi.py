#!/usr/bin/env python3
"""Sends one datagram to each target from ONE socket (one source port), then
collects replies for --timeout seconds. Prints JSON
{"local": ADDR:PORT, "replies": [{"from": ADDR:PORT, "text": ...}, ...]}.

Usage: udp_multi.py --targets A:P[,B:P...] [--payload TEXT] [--timeout S] [--repeat N]
--repeat sends the whole round N times (replies to every round are collected).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _peer import bind_any, fmt, parse_endpoint, parse_opts, recv_until, report, udp_socket  # noqa: E402


def main():
    opts = parse_opts(sys.argv[1:], {"--payload": "ping", "--timeout": "2", "--repeat": "1"})
    targets = [parse_endpoint(t) for t in opts["--targets"].split(",")]
    s = udp_socket(targets[0][0])
    bind_any(s)
    for r in range(int(opts["--repeat"])):
        for t in targets:
            s.sendto(f"{opts['--payload']}#{r}".encode(), t)
    replies = [{"from": fmt(peer), "text": data.decode(errors="replace")}
               for data, peer in recv_until(s, float(opts["--timeout"]))]
    report({"local": fmt(s.getsockname()), "replies": replies})


if __name__ == "__main__":
    main()
