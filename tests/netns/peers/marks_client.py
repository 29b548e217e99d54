#!/usr/bin/env python3
"""Client for the fwmark/DSCP netns tests: connects (TCP) or sends (UDP) to
ADDR:PORT with a chosen TOS / traffic-class byte on its socket, sends a
payload, reads the echo (bounded by --timeout seconds) and prints one JSON
line {"ok":true,"local":"ADDR:PORT","text":"..."} or {"ok":false,"error":"..."}.

Usage: marks_client.py --connect ADDR:PORT [--network tcp|udp] [--tos 0xb8]
                       [--payload TEXT] [--timeout S]

--tos sets IP_TOS (IPv4) or IPV6_TCLASS (IPv6): 0xb8 is DSCP EF (46 << 2).
"""
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _peer import family, fmt, parse_endpoint, parse_opts, report, report_error  # noqa: E402

IPV6_TCLASS = 67


def main():
    opts = parse_opts(
        sys.argv[1:], {"--network": "tcp", "--tos": "0", "--payload": "ping", "--timeout": "5"}
    )
    target = parse_endpoint(opts["--connect"])
    fam = family(target[0])
    kind = socket.SOCK_STREAM if opts["--network"] == "tcp" else socket.SOCK_DGRAM
    tos = int(opts["--tos"], 0)
    payload = opts["--payload"].encode()
    s = socket.socket(fam, kind)
    s.settimeout(float(opts["--timeout"]))
    try:
        if tos:
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, IPV6_TCLASS, tos)
            else:
                s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)
        s.connect(target)
        if kind == socket.SOCK_STREAM:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            data = b""
            while len(data) < 65536:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        else:
            s.send(payload)
            data = s.recv(65536)
        local = fmt(s.getsockname())
    except OSError as e:
        sys.exit(report_error(e))
    finally:
        s.close()
    report({"ok": True, "local": local, "text": data.decode(errors="replace")})


if __name__ == "__main__":
    main()
