#!/usr/bin/env python3
"""Sends one datagram to each target from ONE socket (one source port), then
collects replies for --timeout seconds. Prints JSON
{"local": ADDR:PORT, "replies": [{"from": ADDR:PORT, "text": ...}, ...]}.

Usage: udp_multi.py --targets A:P[,B:P...] [--payload TEXT] [--timeout S] [--repeat N]
--repeat sends the whole round N times (replies to every round are collected).
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


def fmt(addr):
    return f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"


def main():
    args = sys.argv[1:]
    opts = {"--payload": "ping", "--timeout": "2", "--repeat": "1"}
    for i in range(0, len(args), 2):
        opts[args[i]] = args[i + 1]
    targets = [parse(t) for t in opts["--targets"].split(",")]
    fam = socket.AF_INET6 if ":" in targets[0][0] else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", 0))
    for r in range(int(opts["--repeat"])):
        for t in targets:
            s.sendto(f"{opts['--payload']}#{r}".encode(), t)
    replies = []
    deadline = time.monotonic() + float(opts["--timeout"])
    while len(replies) < 1000:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        s.settimeout(left)
        try:
            data, peer = s.recvfrom(65535)
        except socket.timeout:
            break
        replies.append({"from": fmt(peer), "text": data.decode(errors="replace")})
    print(json.dumps({"local": fmt(s.getsockname()), "replies": replies}))


if __name__ == "__main__":
    main()
