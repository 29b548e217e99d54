#!/usr/bin/env python3
"""A tiny OpenVPN stand-in for the egress-kind tests: creates a real TUN
device (IFF_TUN | IFF_NO_PI, via /dev/net/tun) and carries its packets over
UDP to a peer running the same script in another namespace. Each IP packet
read from the TUN is sent as one datagram to --peer; each datagram received
from --peer (and only from it) is written to the TUN as one IP packet.

Usage: kinds_udp_tun.py --tun NAME --local ADDR:PORT --peer ADDR:PORT
                        [--seconds S]

The device exists while the process runs (it is not persistent) and goes
away when the process exits. Prints "ready" once the device and the socket
exist; the caller then sets addresses/routes with `ip`. On exit (SIGTERM,
--seconds of wall clock, default 120) prints one JSON line with packet and
byte counts of both directions.
"""
import fcntl
import os
import selectors
import signal
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _peer import parse_endpoint, parse_opts, report, udp_socket  # noqa: E402

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_PACKET = 65535


def main():
    opts = parse_opts(sys.argv[1:], {"--seconds": "120"},
                      "usage: --tun NAME --local A:P --peer A:P [--seconds S]")
    name = opts["--tun"]
    if not 0 < len(name) < 16:
        raise SystemExit(f"--tun: {name!r}: expected 1..15 characters")
    seconds = float(opts["--seconds"])
    if not 0 < seconds <= 3600:
        raise SystemExit(f"--seconds: {seconds}: expected 0..3600")
    local = parse_endpoint(opts["--local"])
    peer = parse_endpoint(opts["--peer"])

    tun = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    udp = udp_socket(local[0])
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    udp.bind(local)
    udp.setblocking(False)

    stats = {"tun_to_udp": 0, "tun_to_udp_bytes": 0, "udp_to_tun": 0, "udp_to_tun_bytes": 0,
             "dropped": 0}
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    sel = selectors.DefaultSelector()
    sel.register(tun, selectors.EVENT_READ, "tun")
    sel.register(udp, selectors.EVENT_READ, "udp")
    print("ready", flush=True)
    deadline = time.monotonic() + seconds
    while not stop and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.2):
            # Drain each ready source in a bounded batch.
            for _ in range(256):
                try:
                    if key.data == "tun":
                        pkt = os.read(tun, MAX_PACKET)
                        try:
                            udp.sendto(pkt, peer)
                            stats["tun_to_udp"] += 1
                            stats["tun_to_udp_bytes"] += len(pkt)
                        except (BlockingIOError, OSError):
                            stats["dropped"] += 1
                    else:
                        pkt, src = udp.recvfrom(MAX_PACKET)
                        if (src[0], src[1]) != peer:
                            stats["dropped"] += 1
                            continue
                        try:
                            os.write(tun, pkt)
                            stats["udp_to_tun"] += 1
                            stats["udp_to_tun_bytes"] += len(pkt)
                        except OSError:
                            stats["dropped"] += 1
                except BlockingIOError:
                    break
    report(stats)
    os.close(tun)
    udp.close()


if __name__ == "__main__":
    main()
