#!/usr/bin/env python3
"""Datagram integrity through a proxy, for the UDP netns tests.

  udp_burst.py serve --listen ADDR:PORT [--seconds S]
      raw echo: every datagram goes back unchanged to its sender; prints
      "ready" once bound; bounded by --seconds of wall clock.
  udp_burst.py send --target ADDR:PORT [--count N] [--burst B]
      sends N numbered datagrams (sizes in runs: 1200 B, 1200 B ending in a
      shorter one, varied, 64 B), B at a time without waiting, then counts the
      echoes until 2 s pass without one. Prints JSON {"local", "sent", "received",
      "corrupt", "duplicates", "out_of_order", "bytes"}: a datagram is corrupt
      when its bytes are not exactly those sent under its number.
"""
import json
import os
import selectors
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _peer import fmt, parse_endpoint, parse_opts, udp_socket  # noqa: E402


def size_of(seq):
    block, k = divmod(seq, 20)
    kind = block % 4
    if kind == 0:
        return 1200
    if kind == 1:
        return 300 if k == 19 else 1200
    if kind == 2:
        return 8 + (seq * 37) % 1400
    return 64


def payload(seq):
    n = size_of(seq)
    head = struct.pack("!II", seq, n)
    body = bytes(((seq * 7 + j) & 0xFF) for j in range(n - len(head)))
    return head + body


def serve(opts):
    host, port = parse_endpoint(opts["--listen"])
    s = udp_socket(host)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((host, port))
    s.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ)
    print("ready", flush=True)
    deadline = time.monotonic() + float(opts["--seconds"])
    while time.monotonic() < deadline:
        for _ in sel.select(timeout=0.5):
            for _ in range(512):
                try:
                    data, peer = s.recvfrom(65535)
                except BlockingIOError:
                    break
                try:
                    s.sendto(data, peer)
                except OSError:
                    pass


def send(opts):
    target = parse_endpoint(opts["--target"])
    count = min(int(opts["--count"]), 100000)
    burst = max(1, min(int(opts["--burst"]), 256))
    s = udp_socket(target[0])
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.connect(target)
    s.setblocking(False)
    seen = set()
    stats = {"local": fmt(s.getsockname()), "sent": 0, "received": 0, "corrupt": 0,
             "duplicates": 0, "out_of_order": 0, "bytes": 0}
    last = -1

    def drain():
        nonlocal last
        got = 0
        while True:
            try:
                data = s.recv(65535)
            except (BlockingIOError, ConnectionRefusedError):
                return got
            got += 1
            if len(data) < 8:
                stats["corrupt"] += 1
                continue
            seq, n = struct.unpack("!II", data[:8])
            if seq >= count or data != payload(seq):
                stats["corrupt"] += 1
                continue
            if seq in seen:
                stats["duplicates"] += 1
                continue
            seen.add(seq)
            if seq < last:
                stats["out_of_order"] += 1
            last = seq
            stats["received"] += 1
            stats["bytes"] += n

    for start in range(0, count, burst):
        for seq in range(start, min(start + burst, count)):
            try:
                s.send(payload(seq))
                stats["sent"] += 1
            except BlockingIOError:
                time.sleep(0.001)
        time.sleep(0.002)
        drain()
    quiet = time.monotonic()
    while time.monotonic() - quiet < 2:
        if drain():
            quiet = time.monotonic()
        time.sleep(0.01)
    print(json.dumps(stats), flush=True)


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ("serve", "send"):
        sys.exit("usage: udp_burst.py serve|send ...")
    mode = sys.argv[1]
    if mode == "serve":
        serve(parse_opts(sys.argv[2:], {"--seconds": "120"}))
    else:
        send(parse_opts(sys.argv[2:], {"--count": "3000", "--burst": "32"}))


if __name__ == "__main__":
    main()
