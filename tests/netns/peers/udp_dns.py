#!/usr/bin/env python3
"""A tiny DNS peer (python3 stdlib) for the UDP netns tests.

serve: udp_dns.py serve --listen A:P --answer IPV4 [--seconds S] [--tcp 1]
  answers every A query with one A record (TTL 60) = --answer; other types
  get an empty NOERROR answer. With --tcp 1 it also answers DNS over TCP on
  the same address (RFC 1035 4.2.2: each message after its 2-byte length).
  Prints "ready" once bound.
query: udp_dns.py query --server A:P --name NAME [--timeout S] [--tcp 1]
  sends one A query (over TCP with --tcp 1) and prints JSON
  {"ok": true, "from": A:P, "answers": [...], "rcode": N} or {"ok": false, "error": ...}.
"""
import os
import random
import socket
import struct
import sys
import threading
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


def respond(msg, answer):
    """The response to query `msg`, or None when it is not one we answer."""
    if len(msg) < 12:
        return None
    tid, _flags, qd = struct.unpack("!HHH", msg[:6])
    if qd != 1:
        return None
    try:
        end = skip_name(msg, 12)
    except (ValueError, IndexError):
        return None
    qtype = struct.unpack("!H", msg[end:end + 2])[0]
    question = msg[12:end + 4]
    an = 1 if qtype == 1 else 0
    out = struct.pack("!HHHHHH", tid, 0x8180, 1, an, 0, 0) + question
    if an:
        out += b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + answer
    return out


def recv_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def serve_tcp_conn(conn, answer):
    with conn:
        conn.settimeout(10)
        try:
            for _ in range(100):
                head = recv_exact(conn, 2)
                if head is None:
                    return
                msg = recv_exact(conn, struct.unpack("!H", head)[0])
                out = respond(msg or b"", answer)
                if out is None:
                    return
                conn.sendall(struct.pack("!H", len(out)) + out)
        except OSError:
            return


def serve_tcp(listen, answer):
    family = socket.AF_INET6 if ":" in listen[0] else socket.AF_INET
    t = socket.socket(family, socket.SOCK_STREAM)
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind(listen)
    t.listen(16)

    def loop():
        while True:
            conn, _ = t.accept()
            threading.Thread(target=serve_tcp_conn, args=(conn, answer), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()


def serve(opts):
    listen = parse_endpoint(opts["--listen"])
    s = udp_socket(listen[0])
    s.bind(listen)
    answer = socket.inet_aton(opts["--answer"])
    if opts.get("--tcp") == "1":
        serve_tcp(listen, answer)
    print("ready", flush=True)
    deadline = time.monotonic() + float(opts.get("--seconds", "120"))
    while time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            msg, peer = s.recvfrom(4096)
        except socket.timeout:
            break
        out = respond(msg, answer)
        if out is not None:
            s.sendto(out, peer)


def query(opts):
    server = parse_endpoint(opts["--server"])
    s = udp_socket(server[0])
    s.settimeout(float(opts.get("--timeout", "3")))
    tid = random.randint(0, 0xFFFF)
    q = struct.pack("!HHHHHH", tid, 0x0100, 1, 0, 0, 0) + encode_name(opts["--name"]) + struct.pack("!HH", 1, 1)
    try:
        if opts.get("--tcp") == "1":
            s.close()
            family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
            s = socket.socket(family, socket.SOCK_STREAM)
            s.settimeout(float(opts.get("--timeout", "3")))
            s.connect(server)
            s.sendall(struct.pack("!H", len(q)) + q)
            head = recv_exact(s, 2)
            msg = recv_exact(s, struct.unpack("!H", head)[0]) if head else None
            if msg is None:
                return report_error("connection closed before the response")
            peer = server
        else:
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
