#!/usr/bin/env python3
"""UDP request/response latency: one socket, one datagram in flight, up to
--count round trips within --seconds. Prints JSON
{"count": N, "lost": L, "p50_us": X, "p99_us": Y}. A reply missing for 200 ms
counts as lost and the next request goes out.

Usage: udp_pingpong.py --target A:P [--count N] [--seconds S]
"""
import json
import socket
import sys
import time


def parse(text):
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
    else:
        host, _, port = text.rpartition(":")
    return host, int(port)


def main():
    args = sys.argv[1:]
    opts = {"--count": "10000", "--seconds": "5"}
    for i in range(0, len(args), 2):
        opts[args[i]] = args[i + 1]
    host, port = parse(opts["--target"])
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((host, port))
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
    print(json.dumps({"count": len(samples), "lost": lost, "p50_us": pick(0.5), "p99_us": pick(0.99)}))


if __name__ == "__main__":
    main()
