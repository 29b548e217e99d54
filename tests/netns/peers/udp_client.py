#!/usr/bin/env python3
"""UDP client for the netns tests: sends one datagram to ADDR:PORT, waits for
one reply (bounded by --timeout seconds) and prints JSON
{"ok":true,"from":"ADDR:PORT","text":"..."} or {"ok":false,"error":"..."}.

Usage: udp_client.py --connect ADDR:PORT [--payload TEXT] [--timeout S]
"""
import json
import socket
import sys


def main():
    args = sys.argv[1:]
    opts = {"--payload": "ping", "--timeout": "3"}
    for i in range(0, len(args), 2):
        opts[args[i]] = args[i + 1]
    text = opts["--connect"]
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
    else:
        host, _, port = text.rpartition(":")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(float(opts["--timeout"]))
    try:
        s.sendto(opts["--payload"].encode(), (host, int(port)))
        data, peer = s.recvfrom(4096)
    except OSError as e:
        print(json.dumps({"ok": False, "error": str(e)}))
        sys.exit(1)
    src = f"[{peer[0]}]:{peer[1]}" if family == socket.AF_INET6 else f"{peer[0]}:{peer[1]}"
    print(json.dumps({"ok": True, "from": src, "text": data.decode(errors="replace")}))


if __name__ == "__main__":
    main()
