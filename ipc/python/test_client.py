"""Tests of vpn_router_client against a live IpcServer with fake handlers.

Run by ipc/python_client_test.ts: ``python3 test_client.py SOCKET_PATH``.
Exit code 0 when every test passed.
"""

import asyncio
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from vpn_router_client import (  # noqa: E402
    AsyncRouterClient,
    AsyncRustRouterClient,
    RouterIpcError,
)

SOCKET = os.environ.get("TEST_ROUTER_SOCKET", "")


class ClientTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.client = await AsyncRustRouterClient(SOCKET, timeout=10).connect()

    async def asyncTearDown(self):
        await self.client.close()

    async def test_ping_and_status(self):
        self.assertEqual(await self.client.ping(), {"pong": True})
        status = await self.client.status()
        self.assertEqual(status["pid"], 4242)
        self.assertEqual([o["tag"] for o in status["outbounds"]], ["direct", "wg-us", "xray-jp"])

    async def test_reload_ok_and_config_invalid(self):
        r = await self.client.reload(path="/etc/vpn-router/ok.json", close_removed=True)
        self.assertEqual(r["closed"], 2)
        r = await self.client.reload(config={"route": {"rules": []}})
        self.assertEqual(r["rules"], 3)
        with self.assertRaises(RouterIpcError) as cm:
            await self.client.reload(path="/etc/vpn-router/bad.json")
        self.assertEqual(cm.exception.code, "config_invalid")
        self.assertIn("route.rules[3].ip_cidr[0]", cm.exception.message)
        with self.assertRaises(ValueError):
            await self.client.reload()

    async def test_route_test(self):
        r = await self.client.route_test("1.1.1.1:443", domain="www.Netflix.com", network="tcp")
        self.assertEqual((r["outbound"], r["rule"], r["final"]), ("wg-us", 0, False))
        r = await self.client.route_test("8.8.8.8:443")
        self.assertEqual((r["outbound"], r["rule"], r["final"]), ("direct", None, True))
        with self.assertRaises(RouterIpcError) as cm:
            await self.client.route_test("8.8.8.8")
        self.assertEqual(cm.exception.code, "invalid_params")
        self.assertIn("params.dst", cm.exception.message)
        with self.assertRaises(TypeError):
            await self.client.route_test("8.8.8.8:1", port=3)
        r = await self.client.route_test("10.53.53.1:443")
        self.assertEqual((r["outbound"], r["dns_name"]), ("wg-us", "dns.netflix.com"))
        r = await self.client.route_test("10.53.53.1:443", dns=False)
        self.assertNotIn("dns_name", r)

    async def test_concurrent_calls_matched_by_id(self):
        dsts = [f"10.1.{i}.1:{53 if i % 2 else 443}" for i in range(50)]
        results = await asyncio.gather(*(self.client.route_test(d) for d in dsts))
        for i, r in enumerate(results):
            self.assertEqual(r["outbound"], "block" if i % 2 else "xray-jp")

    async def test_connections_outbounds_stats(self):
        self.assertEqual((await self.client.connections_list(limit=4))["total"], 4)
        self.assertEqual(await self.client.connections_close(id=3), {"closed": 1})
        self.assertEqual(await self.client.connections_close(outbound="wg-us"), {"closed": 7})
        with self.assertRaises(ValueError):
            await self.client.connections_close()
        self.assertEqual(len((await self.client.outbounds_list())["outbounds"]), 3)
        self.assertEqual((await self.client.stats())["bytes_up"], 10)
        self.assertNotIn("rules", await self.client.stats())
        self.assertEqual((await self.client.shutdown(drain_ms=5000))["drain_ms"], 5000)
        hot = await self.client.stats(rules=True, limit=3)
        self.assertEqual(hot["rules"], [{"rule": None, "outbound": "direct", "hits": 3}])

    async def test_unknown_method_keeps_connection(self):
        with self.assertRaises(RouterIpcError) as cm:
            await self.client.call("no.such.method")
        self.assertEqual(cm.exception.code, "method_not_found")
        self.assertEqual(await self.client.ping(), {"pong": True})

    async def test_timeout_then_usable(self):
        with self.assertRaises(RouterIpcError) as cm:
            await self.client.call("connections.list", {"outbound": "hang"}, timeout=0.05)
        self.assertEqual(cm.exception.code, "timeout")
        self.assertEqual(await self.client.ping(), {"pong": True})

    async def test_request_too_long_is_refused_locally(self):
        small = AsyncRouterClient(SOCKET, max_line_bytes=64)
        async with small:
            with self.assertRaises(RouterIpcError) as cm:
                await small.reload(config={"pad": "x" * 100})
            self.assertEqual(cm.exception.code, "line_too_long")
            self.assertEqual(await small.ping(), {"pong": True})

    async def test_connect_failed(self):
        with self.assertRaises(RouterIpcError) as cm:
            await AsyncRouterClient(SOCKET + ".missing").connect()
        self.assertEqual(cm.exception.code, "connect_failed")

    async def test_closed_client_raises(self):
        c = await AsyncRouterClient(SOCKET).connect()
        await c.close()
        with self.assertRaises(RouterIpcError) as cm:
            await c.ping()
        self.assertEqual(cm.exception.code, "connection_closed")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        SOCKET = sys.argv.pop(1)
    if not SOCKET:
        sys.exit("usage: test_client.py SOCKET_PATH")
    unittest.main(verbosity=2)
