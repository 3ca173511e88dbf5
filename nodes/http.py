"""A tiny asyncio HTTP/1.0 server for operators: ``GET /healthz`` and ``GET /metrics``.

``/healthz`` answers 200 ``ok`` when the consumer and publisher loops are alive and the
store answers, else 503 with one reason a line. ``/metrics`` is the Prometheus text format.
No dependency beyond asyncio; one request per connection; bind it to 127.0.0.1 or a
management interface only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

HealthCheck = Callable[[], Awaitable[list[str]]]  # the problems; empty = healthy
MetricsText = Callable[[], Awaitable[str]]

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class HttpServer:
    """Serves health and metrics on ``host:port`` until :meth:`close`."""

    def __init__(self, host: str, port: int, health: HealthCheck, metrics: MetricsText) -> None:
        self.host = host
        self.port = port
        self.health = health
        self.metrics = metrics
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        sockets = self._server.sockets
        if sockets:
            self.port = int(sockets[0].getsockname()[1])  # port 0: the one the OS chose

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5.0)
            while True:  # drain the headers
                line = await asyncio.wait_for(reader.readline(), 5.0)
                if line in (b"\r\n", b"\n", b""):
                    break
            status, content_type, body = await self._route(request)
            head = (
                f"HTTP/1.0 {status} {_REASONS[status]}\r\n"
                f"Content-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode("ascii") + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _route(self, request: bytes) -> tuple[int, str, bytes]:
        parts = request.decode("latin-1").split()
        if len(parts) < 2:
            return 405, "text/plain", b"bad request\n"
        method, target = parts[0], parts[1].split("?", 1)[0]
        if method != "GET":
            return 405, "text/plain", b"GET only\n"
        if target == "/healthz":
            problems = await self.health()
            if problems:
                return 503, "text/plain", ("\n".join(problems) + "\n").encode()
            return 200, "text/plain", b"ok\n"
        if target == "/metrics":
            text = await self.metrics()
            return 200, "text/plain; version=0.0.4", text.encode()
        return 404, "text/plain", b"not found: try /healthz or /metrics\n"
