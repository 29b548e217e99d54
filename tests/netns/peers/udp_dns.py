#!/usr/bin/env python3
"""A tiny DNS peer (python3 stdlib) for the UDP netns tests.

serve: udp_dns.py serve --listen A:P --answer IPV4 [--seconds S]
  answers every A query with one A record (TTL 60) = --answer; other types
  get an empty NOERROR answer. Prints "ready" once bound.
query: udp_dns.py query --server A:P --name NAME [--timeout S]
  sends one A query and prints JSON {"ok": true, "from": A:P, "answers": [...], "rcode": N}
  or {"ok": false, "error": ...}.
"""
import os
import random
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _peer import fmt, parse_endpoint, parse_opts, report, report_error, udp_socket  # noqa: E402


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def skip_name(msg, off):
    for _ in range(128):
        n = msg[off]
        if n == 0:
            return off + 1
        if n & 0xC0 == 0xC0:
            return off + 2
        off += 1 + n
    raise ValueError("name too long")


def serve(opts):
    listen = parse_endpoint(opts["--listen"])
    s = udp_socket(listen[0])
    s.bind(listen)
    answer = socket.inet_aton(opts["--answer"])
    print("ready", flush=True)
    deadline = time.monotonic() + float(opts.get("--seconds", "120"))
    while time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            msg, peer = s.recvfrom(4096)
        except socket.timeout:
            break
        if len(msg) < 12:
            continue
        tid, _flags, qd = struct.unpack("!HHH", msg[:6])
        if qd != 1:
            continue
        try:
            end = skip_name(msg, 12)
        except (ValueError, IndexError):
            continue
        qtype = struct.unpack("!H", msg[end:end + 2])[0]
        question = msg[12:end + 4]
        an = 1 if qtype == 1 else 0
        out = struct.pack("!HHHHHH", tid, 0x8180, 1, an, 0, 0) + question
        if an:
            out += b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + answer
        s.sendto(out, peer)


def query(opts):
    server = parse_endpoint(opts["--server"])
    s = udp_socket(server[0])
    s.settimeout(float(opts.get("--timeout", "3")))
    tid = random.randint(0, 0xFFFF)
    q = struct.pack("!HHHHHH", tid, 0x0100, 1, 0, 0, 0) + encode_name(opts["--name"]) + struct.pack("!HH", 1, 1)
    try:
        s.sendto(q, server)
        msg, peer = s.recvfrom(4096)
    except OSError as e:
        return report_error(e)
    rid, flags, qd, an = struct.unpack("!HHHH", msg[:8])
    if rid != tid:
        return report_error("transaction id mismatch")
    off = 12
    for _ in range(qd):
        off = skip_name(msg, off) + 4
    answers = []
    for _ in range(an):
        off = skip_name(msg, off)
        rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
        off += 10
        if rtype == 1 and rdlen == 4:
            answers.append(socket.inet_ntoa(msg[off:off + 4]))
        off += rdlen
    report({"ok": True, "from": fmt(peer), "answers": answers, "rcode": flags & 0xF})
    return 0


def main():
    mode = sys.argv[1]
    opts = parse_opts(sys.argv[2:], {})
    sys.exit(serve(opts) if mode == "serve" else query(opts))


if __name__ == "__main__":
    main()
