#!/usr/bin/env python3
"""UDP echo peer for the UDP netns tests: one socket per --listen address (so
each reply leaves from the exact address it was sent to), answering every
datagram with JSON {"local": ADDR:PORT, "peer": ADDR:PORT, "text": payload}.

Usage: udp_echo.py --listen A:P[,B:P...] [--seconds S]
Prints "ready" once bound. Bounded by --seconds of wall clock.
"""
import json
import selectors
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
    opts = {"--seconds": "120"}
    for i in range(0, len(args), 2):
        opts[args[i]] = args[i + 1]
    sel = selectors.DefaultSelector()
    for text in opts["--listen"].split(","):
        host, port = parse(text)
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_DGRAM)
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
