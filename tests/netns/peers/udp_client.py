#!/usr/bin/env python3
"""UDP client for the netns tests: sends one datagram to ADDR:PORT, waits for
one reply (bounded by --timeout seconds) and prints JSON
{"ok":true,"from":"ADDR:PORT","text":"..."} or {"ok":false,"error":"..."}.

Usage: udp_client.py --connect ADDR:PORT [--payload TEXT] [--timeout S]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _peer import fmt, parse_endpoint, parse_opts, report, report_error, udp_socket  # noqa: E402


def main():
    opts = parse_opts(sys.argv[1:], {"--payload": "ping", "--timeout": "3"})
    target = parse_endpoint(opts["--connect"])
    s = udp_socket(target[0])
    s.settimeout(float(opts["--timeout"]))
    try:
        s.sendto(opts["--payload"].encode(), target)
        data, peer = s.recvfrom(4096)
    except OSError as e:
        sys.exit(report_error(e))
    report({"ok": True, "from": fmt(peer), "text": data.decode(errors="replace")})


if __name__ == "__main__":
    main()
