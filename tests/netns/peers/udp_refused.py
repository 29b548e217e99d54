#!/usr/bin/env python3
"""UDP client for the block/refusal netns tests: a *connected* UDP socket
sends one datagram to ADDR:PORT and waits (bounded by --timeout seconds) for
the outcome of its next recv(): a reply ("data"), ECONNREFUSED ("refused",
what an ICMP port unreachable causes) or nothing ("timeout"). A raw ICMP /
ICMPv6 socket opened first records the source, type and code of the first
"destination unreachable" that arrives, so the test can check who sent it.

Prints one JSON line:
{"ok":true,"result":"refused","elapsed_ms":3.1,"local":"A:P","icmp":{"from":"ADDR","type":3,"code":3}}

Usage: udp_refused.py --connect ADDR:PORT [--payload TEXT] [--timeout S]
"""
import os
import select
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _peer import bind_any, fmt, parse_endpoint, parse_opts, report, report_error, udp_socket  # noqa: E402


def icmp_socket(v6):
    """A raw socket that sees incoming ICMP (v4: with IP header) or ICMPv6 (without)."""
    if v6:
        return socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)


def read_unreach(raw, v6, port):
    """The first queued destination-unreachable quoting source port `port`, as a dict, or None."""
    while True:
        try:
            data, peer = raw.recvfrom(65535, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return None
        off = 0 if v6 else (data[0] & 0x0F) * 4
        want = 1 if v6 else 3
        if len(data) < off + 8 or data[off] != want:
            continue
        quote = data[off + 8:]
        qoff = 40 if v6 else (quote[0] & 0x0F) * 4 if quote else 0
        if len(quote) < qoff + 8 or int.from_bytes(quote[qoff:qoff + 2], "big") != port:
            continue
        return {"from": peer[0], "type": data[off], "code": data[off + 1], "quoted": len(quote)}


def main():
    opts = parse_opts(sys.argv[1:], {"--payload": "ping", "--timeout": "3"})
    target = parse_endpoint(opts["--connect"])
    v6 = ":" in target[0]
    raw = icmp_socket(v6)
    s = udp_socket(target[0])
    bind_any(s)
    s.connect(target)
    port = s.getsockname()[1]
    timeout = float(opts["--timeout"])
    start = time.monotonic()
    result = "timeout"
    text = None
    try:
        s.send(opts["--payload"].encode())
        s.settimeout(timeout)
        try:
            text = s.recv(4096).decode(errors="replace")
            result = "data"
        except ConnectionRefusedError:
            result = "refused"
        except socket.timeout:
            result = "timeout"
    except OSError as e:
        sys.exit(report_error(e))
    elapsed = (time.monotonic() - start) * 1000
    # The ICMP message (if any) arrived before the socket error; give a
    # straggler a moment when there was none.
    if result != "refused":
        select.select([raw], [], [], 0.2)
    icmp = read_unreach(raw, v6, port)
    report({"ok": True, "result": result, "elapsed_ms": round(elapsed, 1),
            "local": fmt(s.getsockname()), "text": text, "icmp": icmp})


if __name__ == "__main__":
    main()
