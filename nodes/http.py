"""The operators' HTTP endpoint, served by aiohttp: ``GET /healthz`` and ``GET /metrics``.

``/healthz`` answers 200 ``ok`` when every supervised loop runs, Kafka and the store answer,
else 503 with one reason a line (a loop down for longer than ``[retry] unhealthy_after_s``
is named). ``/metrics`` is the Prometheus text format of the node's own registry.

Limits, since the port faces a management network: request line and header fields at most
``MAX_LINE_BYTES`` / ``MAX_FIELD_BYTES`` (aiohttp answers 400 beyond), at most
``MAX_CONNECTIONS`` open connections (one more is answered 503 and closed before any byte
is parsed), idle keep-alive connections closed after ``KEEPALIVE_S``, every connection
closed ``MAX_CONNECTION_S`` after it opened (so clients that connect and send nothing
cannot hold the slots), and no request body is read. Bind it to 127.0.0.1 or a
management interface only (``[http] listen``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

HealthCheck = Callable[[], Awaitable[list[str]]]  # the problems; empty = healthy
MetricsText = Callable[[], Awaitable[bytes]]

#: The Prometheus text exposition format's content type.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_LINE_BYTES = 2048
MAX_FIELD_BYTES = 4096
MAX_CONNECTIONS = 32
KEEPALIVE_S = 5.0
MAX_CONNECTION_S = 30.0
_BUSY_BODY = b"too many connections\n"
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    + f"Content-Length: {len(_BUSY_BODY)}\r\nConnection: close\r\n\r\n".encode()
    + _BUSY_BODY
)


class _Busy(asyncio.Protocol):
    """Answers 503 and hangs up: the connection limit is reached."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(_BUSY)
        transport.close()


class HttpServer:
    """Serves health and metrics on ``host:port`` (port 0: any free one) until :meth:`close`."""

    def __init__(
        self,
        host: str,
        port: int,
        health: HealthCheck,
        metrics: MetricsText,
        *,
        max_connections: int = MAX_CONNECTIONS,
        max_connection_s: float = MAX_CONNECTION_S,
    ) -> None:
        self.host = host
        self.port = port
        self.health = health
        self.metrics = metrics
        self.max_connections = max_connections
        self.max_connection_s = max_connection_s
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=1024)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            max_line_size=MAX_LINE_BYTES,
            max_field_size=MAX_FIELD_BYTES,
            keepalive_timeout=KEEPALIVE_S,
        )
        await runner.setup()
        handlers = runner.server
        assert handlers is not None
        limit, lifetime = self.max_connections, self.max_connection_s
        loop = asyncio.get_running_loop()

        def protocol() -> asyncio.Protocol:
            if len(handlers.connections) >= limit:
                return _Busy()
            handler = handlers()
            loop.call_later(lifetime, handler.force_close)  # a no-op once it has closed
            return handler

        try:
            self._server = await loop.create_server(
                protocol, self.host, self.port, backlog=limit, reuse_address=True
            )
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        sockets = self._server.sockets
        if sockets:
            self.port = int(sockets[0].getsockname()[1])  # port 0: the one the OS chose

    async def close(self) -> None:
        server, self._server = self._server, None
        runner, self._runner = self._runner, None
        if server is not None:
            server.close()
        if runner is not None:
            await runner.cleanup()  # closes the open connections
        if server is not None:
            await server.wait_closed()

    async def _healthz(self, _request: web.Request) -> web.Response:
        problems = await self.health()
        if problems:
            return web.Response(status=503, text="\n".join(problems) + "\n")
        return web.Response(text="ok\n")

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = await self.metrics()
        return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})
