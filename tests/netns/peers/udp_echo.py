#!/usr/bin/env python3
"""UDP echo peer for the UDP netns tests: one socket per --listen address (so
each reply leaves from the exact address it was sent to), answering every
datagram with JSON {"local": ADDR:PORT, "peer": ADDR:PORT, "text": payload}.

Usage: udp_echo.py --listen A:P[,B:P...] [--seconds S]
Prints "ready" once bound. Bounded by --seconds of wall clock.
"""
import json
import os
import selectors
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _peer import fmt, parse_endpoint, parse_opts, udp_socket  # noqa: E402


def main():
    opts = parse_opts(sys.argv[1:], {"--seconds": "120"})
    sel = selectors.DefaultSelector()
    for text in opts["--listen"].split(","):
        host, port = parse_endpoint(text)
        s = udp_socket(host)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind((host, port))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    print("ready", flush=True)
    deadline = time.monotonic() + float(opts["--seconds"])
    while time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            s = key.fileobj
            for _ in range(256):
                try:
                    data, peer = s.recvfrom(65535)
                except BlockingIOError:
                    break
                local = fmt(s.getsockname())
                reply = {"local": local, "peer": fmt(peer), "text": data.decode(errors="replace")[:200]}
                try:
                    s.sendto(json.dumps(reply).encode(), peer)
                except OSError:
                    pass


if __name__ == "__main__":
    main()
