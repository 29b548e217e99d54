"""Shared helpers of the python netns peers (python3 stdlib only): option
parsing, ADDR:PORT endpoints, sockets of the right family, bounded receive
loops and the one-line JSON reports the TypeScript tests read.

The peers run as `python3 path/to/peer.py`, so each puts its own folder on
sys.path before `import _peer` (works from any cwd). Internal (leading `_`).
"""
import json
import socket
import time


def parse_opts(args, defaults, usage="expected --flag VALUE pairs"):
    """`--flag VALUE` pairs over `defaults` (a dict); an odd count exits with `usage`."""
    if len(args) % 2:
        raise SystemExit(usage)
    opts = dict(defaults)
    for i in range(0, len(args), 2):
        opts[args[i]] = args[i + 1]
    return opts


def parse_endpoint(text):
    """`ADDR:PORT` or `[V6]:PORT` -> (host, port); the port must be 1..65535."""
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
    else:
        host, _, port = text.rpartition(":")
    port = int(port)
    if not 0 < port < 65536:
        raise ValueError(f"{text}: port out of range")
    return host, port


def fmt(addr):
    """(host, port, ...) -> `ADDR:PORT` or `[V6]:PORT`."""
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def family(host):
    """AF_INET6 for an address with a colon, else AF_INET."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def udp_socket(host):
    """A UDP socket of `host`'s family."""
    return socket.socket(family(host), socket.SOCK_DGRAM)


def bind_any(s):
    """Binds `s` to the wildcard address of its family, any port (one fixed source port)."""
    s.bind(("::" if s.family == socket.AF_INET6 else "0.0.0.0", 0))


def recv_until(s, seconds, limit=1000, size=65535):
    """Yields (data, peer) from `s` for at most `seconds`, at most `limit` datagrams."""
    deadline = time.monotonic() + seconds
    for _ in range(limit):
        left = deadline - time.monotonic()
        if left <= 0:
            return
        s.settimeout(left)
        try:
            yield s.recvfrom(size)
        except socket.timeout:
            return


def report(obj):
    """Prints `obj` as one JSON line (flushed: the caller may be waiting for it)."""
    print(json.dumps(obj), flush=True)


def report_error(err):
    """Prints {"ok": false, "error": ...} and returns exit status 1."""
    report({"ok": False, "error": str(err)})
    return 1
