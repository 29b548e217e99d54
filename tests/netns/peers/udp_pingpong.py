#!/usr/bin/env python3
"""UDP request/response latency: one socket, one datagram in flight, up to
--count round trips within --seconds. Prints JSON
{"count": N, "lost": L, "p50_us": X, "p99_us": Y}. A reply missing for 200 ms
counts as lost and the next request goes out.

Usage: udp_pingpong.py --target A:P [--count N] [--seconds S]
"""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _peer import parse_endpoint, parse_opts, report, udp_socket  # noqa: E402


def main():
    opts = parse_opts(sys.argv[1:], {"--count": "10000", "--seconds": "5"})
    target = parse_endpoint(opts["--target"])
    s = udp_socket(target[0])
    s.connect(target)
    s.settimeout(0.2)
    samples, lost = [], 0
    deadline = time.monotonic() + float(opts["--seconds"])
    for i in range(int(opts["--count"])):
        if time.monotonic() > deadline:
            break
        t0 = time.perf_counter_ns()
        s.send(b"%d" % i)
        try:
            while True:
                data = s.recv(65535)
                if b'"text": "%d"' % i in data or data == b"%d" % i:
                    break
        except socket.timeout:
            lost += 1
            continue
        samples.append((time.perf_counter_ns() - t0) / 1000)
    samples.sort()
    pick = lambda p: round(samples[min(len(samples) - 1, int(p * len(samples)))], 1) if samples else None
    report({"count": len(samples), "lost": lost, "p50_us": pick(0.5), "p99_us": pick(0.99)})


if __name__ == "__main__":
    main()
