"""A node's loops under its supervisor, against the real broker and store: a crashing loop
is restarted and named by /healthz once down too long, while the other loops go on; a
fatal (configuration) error ends `exchange node run` with exit code 1. Also the limits of
the HTTP endpoint."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from connectors.api import ConnectorContext
from exchange.errors import ExchangeError, Reason
from nodes.config import load_config
from nodes.daemon import Node
from nodes.http import HttpServer
from nodes.supervisor import TaskState
from tests.helpers.federation import Federation
from tests.helpers.nodes import FAST
from tests.node.helpers import REPO
from tests.node.test_daemon import send_alert

RETRY = {"initial_ms": 10, "max_ms": 50, "unhealthy_after_s": 0.5}


class Crasher:
    """An inbound connector whose run() fails at once, every time (a plugin's bug)."""

    def __init__(self, context: ConnectorContext) -> None:
        self.runs = 0

    async def run(self, context: ConnectorContext) -> None:
        self.runs += 1
        raise RuntimeError(f"plugin bug, run {self.runs}")

    async def close(self) -> None:
        return None


class Misconfigured:
    """An inbound connector that finds its configuration unusable (a fatal error)."""

    def __init__(self, context: ConnectorContext) -> None:
        return None

    async def run(self, context: ConnectorContext) -> None:
        raise ExchangeError(Reason.BAD_CONFIG, "the case system refuses our credentials")

    async def close(self) -> None:
        return None


@asynccontextmanager
async def started(node: Node) -> AsyncIterator[Node]:
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


async def _get(session: aiohttp.ClientSession, port: int, path: str) -> tuple[int, str]:
    async with session.get(f"http://127.0.0.1:{port}{path}") as response:
        return response.status, await response.text()


@pytest.mark.integration
async def test_a_crashing_loop_is_restarted_and_named_by_healthz(
    live_federation: Federation,
) -> None:
    """A loop that keeps failing is restarted with backoff (counted in /metrics), /healthz
    answers 503 naming it once it has been down longer than unhealthy_after_s, and the
    node's other loops keep publishing and storing meanwhile."""
    fed = live_federation
    crasher = {"name": "crasher", "plugin": "tests.node.test_supervised_node:Crasher"}
    config = load_config(
        fed.config_path("FR"),
        **{**FAST, "http": {"listen": "127.0.0.1:0"}},
        retry=RETRY,
        connectors=[crasher],
    )
    async with started(Node(config)) as fr, aiohttp.ClientSession() as session:
        assert fr.http is not None
        await send_alert(fr, "still flowing")
        await fr.wait_stored(1)
        deadline = time.monotonic() + 20
        status, body = 0, ""
        while time.monotonic() < deadline:
            status, body = await _get(session, fr.http.port, "/healthz")
            if status == 503 and "task inbound:crasher down for" in body:
                break
            await asyncio.sleep(0.05)
        assert status == 503
        assert "task inbound:crasher down for" in body
        assert "RuntimeError: plugin bug" in body
        assert "publisher" not in body
        assert "consumer" not in body
        loop = fr.supervisor.loops["inbound:crasher"]
        assert loop.restarts >= 2
        assert fr.supervisor.loops["consumer"].state is TaskState.RUNNING
        status, text = await _get(session, fr.http.port, "/metrics")
        assert status == 200
        assert 'exchange_task_restarts_total{task="inbound:crasher"}' in text
        assert 'exchange_task_up{task="consumer"} 1.0' in text
        await send_alert(fr, "after the restarts")
        await fr.wait_stored(2)


@pytest.mark.integration
async def test_http_limits_header_size_and_connections(live_federation: Federation) -> None:
    """An oversized header is refused with 4xx; connections beyond the limit get 503 and
    are closed, and the endpoint serves again once they are gone."""
    fed = live_federation
    config = load_config(fed.config_path("FR"), **{**FAST, "http": {"listen": "127.0.0.1:0"}})
    async with started(Node(config)) as fr:
        assert fr.http is not None
        port = fr.http.port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readline(), 10)
        assert head.split()[1] in (b"400", b"431")
        writer.close()
        held = []
        for _ in range(fr.http.max_connections):
            held.append(await asyncio.open_connection("127.0.0.1", port))
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            refused = await asyncio.wait_for(reader.read(), 10)
            assert refused.startswith(b"HTTP/1.1 503")
            writer.close()
        finally:
            for _, w in held:
                w.close()
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 10
            status = 0
            while time.monotonic() < deadline:
                status, _ = await _get(session, port, "/metrics")
                if status == 200:
                    break
                await asyncio.sleep(0.05)
            assert status == 200


@pytest.mark.integration
def test_node_run_exits_1_when_a_loop_fails_fatally(live_federation: Federation) -> None:
    """`exchange node run` stops and exits 1 when a loop fails with a configuration error,
    naming the loop in its log; it is not restarted."""
    path = live_federation.config_path("FR")
    with path.open("a", encoding="utf-8") as fh:
        fh.write(
            '\n[[connectors]]\nname = "misconfigured"\n'
            'plugin = "tests.node.test_supervised_node:Misconfigured"\n'
        )
    env: dict[str, Any] = {
        **os.environ,
        "EXCHANGE_HTTP__LISTEN": "",
        "EXCHANGE_LOG__FORMAT": "json",
    }
    done = subprocess.run(
        [sys.executable, "-m", "exchange.cli", "node", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "task failed fatally" in done.stderr
    assert "inbound:misconfigured" in done.stderr
    assert "task failed; restarting" not in done.stderr


async def test_idle_connections_cannot_hold_the_endpoint() -> None:
    """Connections that never send a request are closed after the connection lifetime, so
    the endpoint answers again without anyone closing them."""

    async def healthy() -> list[str]:
        return []

    async def no_metrics() -> bytes:
        return b""

    server = HttpServer(
        "127.0.0.1", 0, healthy, no_metrics, max_connections=2, max_connection_s=0.5
    )
    await server.start()
    try:
        idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]
        for reader, _ in idle:  # closed by the server: EOF, without a byte sent
            assert await asyncio.wait_for(reader.read(), 10) == b""
        async with aiohttp.ClientSession() as session:
            assert await _get(session, server.port, "/healthz") == (200, "ok\n")
        for _, writer in idle:
            writer.close()
    finally:
        await server.close()


@pytest.mark.integration
async def test_the_retention_purge_survives_an_unexpected_error(
    live_federation: Federation,
) -> None:
    """An error that is not an ExchangeError in the retention purge (it used to end the loop
    for good, silently) restarts it; it purges again afterwards."""
    fed = live_federation
    failures, purges = 2, 0
    purged_again = asyncio.Event()

    def clock() -> datetime:
        nonlocal failures, purges
        if sys._getframe(1).f_code.co_name == "_purge_loop":  # only the purge's reading
            if failures:
                failures -= 1
                raise RuntimeError("clock source unavailable")
            purges += 1
            if purges >= 3:
                purged_again.set()
        return datetime.now(UTC)

    config = load_config(
        fed.config_path("FR"),
        **FAST,
        retry=RETRY,
        store={"url": "sqlite:///node.db", "purge_interval_s": 0.05},
    )
    async with started(Node(config, clock=clock)) as fr:
        await asyncio.wait_for(purged_again.wait(), 20)
        retention = fr.supervisor.loops["retention"]
        assert purges >= 3
        assert retention.restarts == 2
        assert retention.state is TaskState.RUNNING
        assert retention.last_error == "RuntimeError: clock source unavailable"
        assert fr.metrics.task_restarts.value("retention") == 2
