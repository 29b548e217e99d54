#!/usr/bin/env python3
"""Stand-in TPROXY peer for the netns tests (the router process is built elsewhere).

Usage: transparent_listener.py --listen ADDR:PORT [--network tcp|udp] [--max N] [--seconds S]

TCP: an IP_TRANSPARENT listener; for each accepted connection it writes one JSON
line {"local": getsockname (= the client's original destination), "peer": ...,
"mark": SO_MARK of the accepted socket} and closes.
UDP: an IP_TRANSPARENT socket with IP_RECVORIGDSTADDR / IPV6_RECVORIGDSTADDR;
for each datagram it replies with the same JSON, sent from a transparent socket
bound to the original destination (so the client sees the address it sent to).
Prints "ready" on stdout once bound. Bounded: exits after --max events or
--seconds of wall clock.
"""
import json
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _peer import family, fmt, parse_endpoint, parse_opts  # noqa: E402

SOL_IP = 0
IP_TRANSPARENT = 19
IP_RECVORIGDSTADDR = 20
IP_ORIGDSTADDR = 20
SOL_IPV6 = 41
IPV6_TRANSPARENT = 75
IPV6_RECVORIGDSTADDR = 74
IPV6_ORIGDSTADDR = 74
SO_MARK = 36


def make_socket(fam, kind):
    s = socket.socket(fam, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if fam == socket.AF_INET6:
        s.setsockopt(SOL_IPV6, IPV6_TRANSPARENT, 1)
    else:
        # IP_TRANSPARENT before bind(): lets the socket own non-local addresses.
        s.setsockopt(SOL_IP, IP_TRANSPARENT, 1)
    return s


def orig_dst(cmsgs, fam):
    for level, ctype, data in cmsgs:
        if level == SOL_IP and ctype == IP_ORIGDSTADDR:
            port = struct.unpack("!H", data[2:4])[0]
            return (socket.inet_ntop(socket.AF_INET, data[4:8]), port)
        if level == SOL_IPV6 and ctype == IPV6_ORIGDSTADDR:
            port = struct.unpack("!H", data[2:4])[0]
            return (socket.inet_ntop(socket.AF_INET6, data[8:24]), port)
    return None


def main():
    opts = parse_opts(sys.argv[1:], {"--network": "tcp", "--max": "100", "--seconds": "30"})
    host, port = parse_endpoint(opts["--listen"])
    fam = family(host)
    deadline = time.monotonic() + float(opts["--seconds"])
    remaining = int(opts["--max"])
    if opts["--network"] == "tcp":
        s = make_socket(fam, socket.SOCK_STREAM)
        s.bind((host, port))
        s.listen(64)
        print("ready", flush=True)
        while remaining > 0 and time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                c, peer = s.accept()
            except socket.timeout:
                break
            info = {"local": fmt(c.getsockname()), "peer": fmt(peer),
                    "mark": c.getsockopt(socket.SOL_SOCKET, SO_MARK)}
            print(json.dumps(info), flush=True)
            c.sendall((json.dumps(info) + "\n").encode())
            # Drain until the client half-closes (bounded), so close() sends
            # FIN rather than RST for unread bytes.
            c.settimeout(5)
            try:
                for _ in range(1024):
                    if not c.recv(65536):
                        break
            except OSError:
                pass
            c.close()
            remaining -= 1
    else:
        s = make_socket(fam, socket.SOCK_DGRAM)
        if fam == socket.AF_INET6:
            s.setsockopt(SOL_IPV6, IPV6_RECVORIGDSTADDR, 1)
        else:
            s.setsockopt(SOL_IP, IP_RECVORIGDSTADDR, 1)
        s.bind((host, port))
        print("ready", flush=True)
        while remaining > 0 and time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data, cmsgs, _flags, peer = s.recvmsg(2048, 256)
            except socket.timeout:
                break
            dst = orig_dst(cmsgs, fam)
            info = {"local": fmt(dst) if dst else None, "peer": fmt(peer), "bytes": len(data)}
            print(json.dumps(info), flush=True)
            if dst:
                r = make_socket(fam, socket.SOCK_DGRAM)
                r.bind(dst)
                r.sendto((json.dumps(info) + "\n").encode(), peer[:2] if fam == socket.AF_INET else peer)
                r.close()
            remaining -= 1


if __name__ == "__main__":
    main()
