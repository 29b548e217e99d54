#!/usr/bin/env python3
"""Client for the fwmark/DSCP netns tests: connects (TCP) or sends (UDP) to
ADDR:PORT with a chosen TOS / traffic-class byte on its socket, sends a
payload, reads the echo (bounded by --timeout seconds) and prints one JSON
line {"ok":true,"local":"ADDR:PORT","text":"..."} or {"ok":false,"error":"..."}.

Usage: marks_client.py --connect ADDR:PORT [--network tcp|udp] [--tos 0xb8]
                       [--payload TEXT] [--timeout S]

--tos sets IP_TOS (IPv4) or IPV6_TCLASS (IPv6): 0xb8 is DSCP EF (46 << 2).
"""
import json
import socket
import sys

IPV6_TCLASS = 67


def fmt(addr):
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def main():
    args = sys.argv[1:]
    opts = {"--network": "tcp", "--tos": "0", "--payload": "ping", "--timeout": "5"}
    for i in range(0, len(args), 2):
        opts[args[i]] = args[i + 1]
    text = opts["--connect"]
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
    else:
        host, _, port = text.rpartition(":")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    kind = socket.SOCK_STREAM if opts["--network"] == "tcp" else socket.SOCK_DGRAM
    tos = int(opts["--tos"], 0)
    payload = opts["--payload"].encode()
    s = socket.socket(family, kind)
    s.settimeout(float(opts["--timeout"]))
    try:
        if tos:
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, IPV6_TCLASS, tos)
            else:
                s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)
        s.connect((host, int(port)))
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
        print(json.dumps({"ok": False, "error": str(e)}))
        sys.exit(1)
    finally:
        s.close()
    print(json.dumps({"ok": True, "local": local, "text": data.decode(errors="replace")}))


if __name__ == "__main__":
    main()
