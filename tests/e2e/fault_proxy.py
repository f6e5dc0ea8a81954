"""A real HTTP hop in front of one model server that can slow down or fail on demand.

The end-to-end fault tests put it between the workers and a real
``riskstream serve``: it forwards every request (method, path, headers,
body) and the answer unchanged, but can first wait ``delay_s`` (a slow
server or network: every request, readiness probes included) or answer
HTTP 500 to a request whose body holds ``fail_marker`` (a record that
crashes the model). It runs its own event loop in a thread of the test
process; the test changes its behaviour by setting the attributes.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import aiohttp
from aiohttp import web

__all__ = ["FaultProxy"]

#: Headers that describe one hop's connection, not the message.
_HOP_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}
)


class FaultProxy:
    """Forwards to ``upstream``; ``delay_s`` and ``fail_marker`` inject faults."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.delay_s = 0.0
        self.fail_marker: bytes | None = None
        self.requests = 0
        self.failed = 0
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fault-proxy", daemon=True
        )
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> FaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=60), auto_decompress=False
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        # Requests held by a long delay are cut off at stop, not awaited.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
        # Requests still held by a delay end here, not when the loop is collected.
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        self.requests += 1
        body = await request.read()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        marker = self.fail_marker
        if marker is not None and marker in body:
            self.failed += 1
            return web.json_response(
                {"error": "injected failure: the model crashed"}, status=500
            )
        headers: dict[str, Any] = {
            k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS
        }
        try:
            async with self._session.request(
                request.method,
                f"{self.upstream}{request.rel_url}",
                headers=headers,
                data=body,
            ) as answer:
                payload = await answer.read()
                return web.Response(
                    body=payload,
                    status=answer.status,
                    headers={
                        k: v
                        for k, v in answer.headers.items()
                        if k.lower() not in _HOP_HEADERS
                    },
                )
        except (aiohttp.ClientError, OSError) as exc:
            return web.json_response({"error": f"upstream: {exc}"}, status=502)
