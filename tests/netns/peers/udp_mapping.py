#!/usr/bin/env python3
"""NAT-behaviour probe for the UDP netns tests (python3 stdlib only), the way
a STUN client looks at its NAT.

client: from ONE socket, sends to each --first target and reports the
  address each echo server saw (udp_echo.py answers with it as "peer");
  then waits until the file --go exists, reporting whatever arrived meanwhile
  (nothing should: those are datagrams from senders it never sent to); then
  sends to each --then target and reports those answers too. Three JSON
  lines: {"phase": "first" | "waited" | "then", ...}. With --answer 1, before
  "then" it sends one datagram back to each sender of what arrived while it
  waited, and reports {"phase": "answered", "to": [...]}.

    udp_mapping.py client --first A:P,B:P --then C:P --go FILE [--timeout S] [--answer 1]

poke: sends --count datagrams from --from (ADDR:PORT, port 0 = any) to --to;
  with --wait S, then reports what came back within S seconds. With
  --senders N (N <= 1000, port 0), N - 1 more sockets send one datagram each
  first, each from its own port.

    udp_mapping.py poke --from ADDR:PORT --to ADDR:PORT [--count N] [--wait S] [--senders N]

Bounded: every wait has a deadline (--timeout for replies, 20 s for --go).
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _peer import bind_any, fmt, parse_endpoint, parse_opts, recv_until, report, udp_socket  # noqa: E402


def answers(s, seconds, want):
    """Replies of the echo servers until `want` of them came or `seconds` passed."""
    out = []
    for data, peer in recv_until(s, seconds):
        try:
            body = json.loads(data.decode())
        except ValueError:
            body = {}
        out.append({"from": fmt(peer), "peer": body.get("peer"), "text": body.get("text")})
        if len(out) >= want:
            break
    return out


def client(opts):
    first = [parse_endpoint(t) for t in opts["--first"].split(",")]
    then = [parse_endpoint(t) for t in opts["--then"].split(",")]
    timeout = float(opts["--timeout"])
    s = udp_socket(first[0][0])
    bind_any(s)
    for i, t in enumerate(first):
        s.sendto(f"first#{i}".encode(), t)
    report({"phase": "first", "local": fmt(s.getsockname()), "replies": answers(s, timeout, len(first))})
    got = []
    deadline = time.monotonic() + 20
    while not os.path.exists(opts["--go"]) and time.monotonic() < deadline:
        for data, peer in recv_until(s, 0.1):
            got.append({"from": fmt(peer), "text": data.decode(errors="replace")[:100]})
    # What was queued just before the file appeared.
    for data, peer in recv_until(s, 0.3):
        got.append({"from": fmt(peer), "text": data.decode(errors="replace")[:100]})
    report({"phase": "waited", "got": got})
    if opts["--answer"] == "1":
        senders = sorted({g["from"] for g in got})
        for who in senders:
            s.sendto(b"answer", parse_endpoint(who))
        report({"phase": "answered", "to": senders})
    for i, t in enumerate(then):
        s.sendto(f"then#{i}".encode(), t)
    report({"phase": "then", "replies": answers(s, timeout, len(then))})


def poke(opts):
    # --from may name port 0 (any), which parse_endpoint refuses.
    text = opts["--from"]
    host, port = parse_endpoint(text[:-2] + ":1") if text.endswith(":0") else parse_endpoint(text)
    port = 0 if text.endswith(":0") else port
    to = parse_endpoint(opts["--to"])
    senders = int(opts["--senders"])
    if senders > 1 and port != 0:
        raise SystemExit("--senders needs --from ADDR:0 (one port each)")
    # Extra senders poke once each, kept open so that each has a port of its own.
    extras = []
    for _ in range(min(senders, 1000) - 1):
        extra = udp_socket(host)
        extra.bind((host, 0))
        extra.sendto(b"unsolicited", to)
        extras.append(extra)
    s = udp_socket(host)
    s.bind((host, port))
    for i in range(int(opts["--count"])):
        s.sendto(f"unsolicited#{i}".encode(), to)
    answers = []
    for data, peer in recv_until(s, float(opts["--wait"])):
        answers.append({"from": fmt(peer), "text": data.decode(errors="replace")[:100]})
        break
    report({"ok": True, "from": fmt(s.getsockname()), "answers": answers})


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ("client", "poke"):
        raise SystemExit(__doc__)
    defaults = {"--timeout": "3", "--count": "5", "--then": "", "--go": "", "--wait": "0",
                "--answer": "0", "--senders": "1"}
    opts = parse_opts(sys.argv[2:], defaults)
    client(opts) if sys.argv[1] == "client" else poke(opts)


if __name__ == "__main__":
    main()
