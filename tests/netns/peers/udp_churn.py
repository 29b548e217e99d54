#!/usr/bin/env python3
"""Session churn for the UDP netns tests: --count sessions, each a fresh
socket (new source port) sending one datagram to a target (round-robin over
--targets), in batches of --batch sockets that wait up to --wait seconds for
their replies before closing. Bounded by --count and --seconds.
Prints JSON {"sent": N, "replies": M, "seconds": S}.

Usage: udp_churn.py --targets A:P[,B:P...] --count N [--batch B] [--wait S] [--seconds S]
"""
import os
import selectors
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _peer import parse_endpoint, parse_opts, report, udp_socket  # noqa: E402


def main():
    opts = parse_opts(sys.argv[1:], {"--batch": "200", "--wait": "0.5", "--seconds": "120"})
    targets = [parse_endpoint(t) for t in opts["--targets"].split(",")]
    count, batch, wait = int(opts["--count"]), int(opts["--batch"]), float(opts["--wait"])
    start = time.monotonic()
    deadline = start + float(opts["--seconds"])
    sent = replies = 0
    while sent < count and time.monotonic() < deadline:
        sel = selectors.DefaultSelector()
        socks = []
        for _ in range(min(batch, count - sent)):
            target = targets[sent % len(targets)]
            s = udp_socket(target[0])
            s.setblocking(False)
            try:
                s.sendto(b"churn", target)
            except OSError:
                pass
            sent += 1
            socks.append(s)
            sel.register(s, selectors.EVENT_READ)
        pending = len(socks)
        until = time.monotonic() + wait
        while pending > 0:
            left = until - time.monotonic()
            if left <= 0:
                break
            for key, _ in sel.select(timeout=left):
                try:
                    key.fileobj.recvfrom(65535)
                    replies += 1
                except OSError:
                    pass
                sel.unregister(key.fileobj)
                pending -= 1
        for s in socks:
            s.close()
        sel.close()
    report({"sent": sent, "replies": replies, "seconds": round(time.monotonic() - start, 3)})


if __name__ == "__main__":
    main()
