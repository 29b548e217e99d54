"""Asyncio client for the vpn-router IPC socket (NDJSON over a Unix socket).

Standard library only. One JSON object per line each way; concurrent calls
are matched by their request id.

Example::

    import asyncio
    from vpn_router_client import AsyncRustRouterClient

    async def main():
        async with AsyncRustRouterClient("/run/vpn-router/router.sock") as router:
            print(await router.status())
            print(await router.route_test("1.1.1.1:443", domain="www.netflix.com"))

    asyncio.run(main())
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from typing import Any, Dict, Optional

__all__ = [
    "AsyncRustRouterClient",
    "AsyncRouterClient",
    "RouterIpcError",
    "DEFAULT_SOCKET",
]

#: Default socket path; overridden by the ``VPN_ROUTER_SOCKET`` environment variable.
DEFAULT_SOCKET = "/run/vpn-router/router.sock"

_ROUTE_TEST_KEYS = ("domain", "src", "network", "protocol", "mark", "dscp", "inbound", "dns")


class RouterIpcError(Exception):
    """An IPC failure: ``code`` is the server's error code (``config_invalid``,
    ``invalid_params``, ``method_not_found``, ...) or a client-side one
    (``timeout``, ``connection_closed``, ``connect_failed``, ``bad_response``,
    ``line_too_long``)."""

    def __init__(self, code: str, message: str, data: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.data = data


class AsyncRustRouterClient:
    """Client of the router's IPC socket.

    :param path: socket path (default ``$VPN_ROUTER_SOCKET`` or
        ``/run/vpn-router/router.sock``).
    :param timeout: seconds to wait for each reply (``None``: forever).
    :param max_line_bytes: longest request sent and reply accepted.
    """

    def __init__(
        self,
        path: Optional[str] = None,
        *,
        timeout: Optional[float] = 30.0,
        max_line_bytes: int = 1 << 20,
        max_reply_bytes: int = 64 << 20,
    ) -> None:
        self.path = path or os.environ.get("VPN_ROUTER_SOCKET") or DEFAULT_SOCKET
        self.timeout = timeout
        self.max_line_bytes = max_line_bytes
        self.max_reply_bytes = max_reply_bytes
        self._reader: Optional[asyncio.StreamReader] = None
        self._writer: Optional[asyncio.StreamWriter] = None
        self._read_task: Optional[asyncio.Task] = None
        self._pending: Dict[int, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self._fatal: Optional[RouterIpcError] = None
        self._server_error: Optional[RouterIpcError] = None
        self._write_lock = asyncio.Lock()

    # ------------------------------------------------------------ lifecycle

    async def connect(self) -> "AsyncRustRouterClient":
        """Opens the connection; raises ``RouterIpcError('connect_failed', ...)``."""
        if self._writer is not None:
            return self
        try:
            self._reader, self._writer = await asyncio.open_unix_connection(
                self.path, limit=self.max_reply_bytes + 1
            )
        except OSError as e:
            raise RouterIpcError("connect_failed", f"Cannot connect to {self.path}: {e}") from e
        self._fatal = None
        self._read_task = asyncio.get_running_loop().create_task(self._read_loop())
        return self

    async def close(self) -> None:
        """Closes the connection; pending calls fail with ``connection_closed``."""
        self._fail(RouterIpcError("connection_closed", f"connection to {self.path} closed by client"))
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
        task, self._read_task = self._read_task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass

    async def __aenter__(self) -> "AsyncRustRouterClient":
        return await self.connect()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # ------------------------------------------------------------ calls

    async def call(self, method: str, params: Optional[Dict[str, Any]] = None,
                   *, timeout: Any = ...) -> Any:
        """Sends one request and returns its ``result``; raises ``RouterIpcError``."""
        if self._fatal is not None:
            raise self._fatal
        if self._writer is None:
            raise RouterIpcError("connection_closed", "not connected; call connect() first")
        req_id = next(self._ids)
        msg: Dict[str, Any] = {"id": req_id, "method": method}
        if params is not None:
            msg["params"] = params
        line = json.dumps(msg, separators=(",", ":")).encode()
        if len(line) > self.max_line_bytes:
            raise RouterIpcError(
                "line_too_long",
                f"{method} request is {len(line)} bytes; the limit is {self.max_line_bytes}",
            )
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        try:
            async with self._write_lock:
                self._writer.write(line + b"\n")
                await self._writer.drain()
        except (OSError, RuntimeError) as e:
            self._pending.pop(req_id, None)
            raise RouterIpcError("connection_closed", f"{method}: cannot send: {e}") from e
        wait = self.timeout if timeout is ... else timeout
        try:
            return await asyncio.wait_for(asyncio.shield(fut), wait)
        except asyncio.TimeoutError:
            raise RouterIpcError("timeout", f"{method}: no reply within {wait} s") from None
        finally:
            self._pending.pop(req_id, None)

    async def ping(self) -> Dict[str, Any]:
        """``ping`` → ``{"pong": True}``."""
        return await self.call("ping")

    async def status(self) -> Dict[str, Any]:
        """``status``: version, uptime, flows, rules, outbounds with state."""
        return await self.call("status")

    async def reload(self, path: Optional[str] = None, config: Optional[Dict[str, Any]] = None,
                     *, close_removed: Optional[bool] = None) -> Dict[str, Any]:
        """``reload`` from a config file ``path`` or an inline ``config`` (exactly one)."""
        if (path is None) == (config is None):
            raise ValueError("reload: pass exactly one of path or config")
        params: Dict[str, Any] = {"path": path} if path is not None else {"config": config}
        if close_removed is not None:
            params["close_removed"] = close_removed
        return await self.call("reload", params)

    async def route_test(self, dst: str, **kw: Any) -> Dict[str, Any]:
        """``route.test`` for ``dst`` ("IP:PORT"); keywords: domain, src, network,
        protocol, mark, dscp, inbound, dns (False: ignore names from DNS answers).
        Returns outbound, rule (index or None), final, and dns_name when the router
        tested the flow with the name its DNS answers gave ``dst``."""
        unknown = set(kw) - set(_ROUTE_TEST_KEYS)
        if unknown:
            raise TypeError(f"route_test: unknown keyword(s): {', '.join(sorted(unknown))}")
        params = {"dst": dst}
        params.update({k: v for k, v in kw.items() if v is not None})
        return await self.call("route.test", params)

    async def connections_list(self, limit: Optional[int] = None,
                               outbound: Optional[str] = None) -> Dict[str, Any]:
        """``connections.list``, optionally limited / filtered by outbound."""
        params: Dict[str, Any] = {}
        if limit is not None:
            params["limit"] = limit
        if outbound is not None:
            params["outbound"] = outbound
        return await self.call("connections.list", params)

    async def connections_close(self, id: Optional[int] = None,  # noqa: A002
                                outbound: Optional[str] = None) -> Dict[str, Any]:
        """``connections.close`` by flow ``id`` or every flow of ``outbound``."""
        if (id is None) == (outbound is None):
            raise ValueError("connections_close: pass exactly one of id or outbound")
        return await self.call("connections.close",
                               {"id": id} if id is not None else {"outbound": outbound})

    async def outbounds_list(self) -> Dict[str, Any]:
        """``outbounds.list``."""
        return await self.call("outbounds.list")

    async def shutdown(self, drain_ms: Optional[int] = None) -> Dict[str, Any]:
        """``shutdown``: the router stops taking flows and exits once its TCP flows
        end or ``drain_ms`` passed (default 0: at once)."""
        return await self.call("shutdown", {} if drain_ms is None else {"drain_ms": drain_ms})

    async def stats(self, rules: bool = False, limit: Optional[int] = None) -> Dict[str, Any]:
        """``stats``: counters; with ``rules=True`` also the most hit route rules
        (``rules``: at most ``limit`` of them, most hit first, then final; ``rules_hit``)."""
        params: Dict[str, Any] = {}
        if rules:
            params["rules"] = True
        if limit is not None:
            params["limit"] = limit
        return await self.call("stats", params)

    # ------------------------------------------------------------ internals

    def _fail(self, err: RouterIpcError) -> None:
        if self._fatal is None:
            self._fatal = err
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(self._fatal)
                # Mark retrieved so asyncio does not warn when the waiter is gone.
                fut.exception()

    async def _read_loop(self) -> None:
        reason: Optional[RouterIpcError] = None
        assert self._reader is not None
        try:
            while True:
                try:
                    raw = await self._reader.readline()
                except ValueError:  # asyncio's LimitOverrunError wrapper
                    reason = RouterIpcError("bad_response", "reply exceeds the line limit")
                    break
                if not raw:
                    break
                text = raw.decode("utf-8", "replace").strip()
                if not text:
                    continue
                try:
                    msg = json.loads(text)
                except ValueError as e:
                    reason = RouterIpcError("bad_response", f"Cannot parse reply: {e}")
                    break
                if not isinstance(msg, dict):
                    reason = RouterIpcError("bad_response", "reply: expected a JSON object")
                    break
                err = msg.get("error")
                if msg.get("id") is None:
                    if isinstance(err, dict):
                        self._server_error = RouterIpcError(
                            str(err.get("code")), str(err.get("message")), err.get("data"))
                    continue
                fut = self._pending.get(msg["id"])
                if fut is None or fut.done():
                    continue  # late reply after a timeout
                if isinstance(err, dict):
                    fut.set_exception(RouterIpcError(
                        str(err.get("code")), str(err.get("message")), err.get("data")))
                else:
                    fut.set_result(msg.get("result"))
        except (OSError, asyncio.IncompleteReadError) as e:
            reason = RouterIpcError("connection_closed", f"connection to {self.path} failed: {e}")
        self._fail(self._server_error or reason or RouterIpcError(
            "connection_closed", f"connection to {self.path} closed by the router"))


#: Shorter alias.
AsyncRouterClient = AsyncRustRouterClient
