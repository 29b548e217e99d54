#!/usr/bin/env python3
"""Replays a captured QUIC client flight (a .hex fixture: one datagram per
line) from one socket to a target, then collects replies for --timeout
seconds. Prints JSON {"local": A:P, "sent": N, "replies": M}.

Usage: udp_quic_replay.py --fixture FILE --target A:P [--timeout S]
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
    opts = {"--timeout": "2"}
    for i in range(0, len(args), 2):
        opts[args[i]] = args[i + 1]
    with open(opts["--fixture"]) as f:
        datagrams = [bytes.fromhex(line.strip()) for line in f if line.strip()][:64]
    host, port = parse(opts["--target"])
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", 0))
    for d in datagrams:
        s.sendto(d, (host, port))
    replies = 0
    deadline = time.monotonic() + float(opts["--timeout"])
    while replies < 1000:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        s.settimeout(left)
        try:
            s.recvfrom(65535)
            replies += 1
        except socket.timeout:
            break
    local = s.getsockname()
    print(json.dumps({"local": f"{local[0]}:{local[1]}", "sent": len(datagrams), "replies": replies}))


if __name__ == "__main__":
    main()
