"""Ingest through the ``http-inbound`` REST API: 1 KB alerts POSTed until signed on the bus.

A node (FR, in this process, SQLite store, the tuned test config) serves the REST API; an
aiohttp client POSTs ``5,000 * BENCH_SCALE`` alerts of about 1 KB (``alert_payload``), one
at a time, then with 16 requests in flight, then ``50,000 * BENCH_SCALE`` in batches of
1,000 (``/v1/alerts/batch``, two in flight); the clock stops when the node's publisher has
had every one acknowledged by Kafka (signed, ``acks=all``). Baseline, in the same run: raw
aiokafka produce of as many 1 KB records (:func:`tests.bench.bench_raw_kafka.raw_produce`).
The client shares the node's event loop and the machine's cores: the figure is a floor.
(aiohttp, not httpx, as the client: httpx's own overhead capped it near 100 requests a
second on this machine, whatever the server.)
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from connectors.http_inbound import HttpInboundConnector
from connectors.tokens import hash_token
from nodes.config import load_config
from nodes.daemon import Node
from tests.bench.bench_raw_kafka import raw_produce, records
from tests.bench.harness import BenchContext, Figure
from tests.helpers.broker import create_topics
from tests.helpers.federation import alert_payload, make_federation

N_FULL = 5_000
N_BATCHED = 50_000
TOKEN = "bench-token-0123456789abcdef"
BASELINE = "raw aiokafka produce 1 KB (acks=all, idempotent)"


async def _post_all(
    client: aiohttp.ClientSession, bodies: list[dict[str, Any]], width: int, batch: int
) -> None:
    if batch > 1:
        chunks = [bodies[i : i + batch] for i in range(0, len(bodies), batch)]
        requests = iter([("/v1/alerts/batch", {"items": chunk}) for chunk in chunks])
    else:
        requests = iter([("/v1/alerts", body) for body in bodies])
    headers = {"Authorization": f"Bearer {TOKEN}"}

    async def worker() -> None:
        for path, body in requests:
            async with client.post(path, json=body, headers=headers) as answer:
                text = await answer.text()
                if answer.status != 202:
                    raise RuntimeError(f"POST answered {answer.status}: {text[:200]}")

    await asyncio.gather(*(worker() for _ in range(width)))


async def _ingest(ctx: BenchContext, folder: Path, n: int, width: int, batch: int = 1) -> float:
    """Alerts a second, from the first POST until all ``n`` are acknowledged by Kafka."""
    now = datetime.now(UTC)
    fed = make_federation(
        folder / f"fed-{width}-{batch}",
        ("FR", "DE"),
        now,
        bootstrap=ctx.bootstrap,
        prefix=f"{ctx.prefix}i{width}b{batch}",
    )
    rest = {
        "name": "rest",
        "plugin": "http-inbound",
        "options": {
            "listen": "127.0.0.1:0",
            "max_body_bytes": 8 << 20,
            "tokens": [{"name": "bench", "sha256": hash_token(TOKEN), "roles": ["submit"]}],
        },
    }
    node = Node(load_config(fed.config_path("FR"), http={"listen": ""}, connectors=[rest]))
    bodies = [
        {"payload": alert_payload(i, now=now), "handling": {"tlp": "AMBER", "code": "H1"}}
        for i in range(n + 1)
    ]
    await node.start()
    try:
        server = node.connectors["rest"]
        assert isinstance(server, HttpInboundConnector)
        await asyncio.wait_for(server.listening.wait(), 30)
        base = f"http://127.0.0.1:{server.port}"
        connector = aiohttp.TCPConnector(limit=width)
        async with aiohttp.ClientSession(base, connector=connector) as client:
            await _post_all(client, bodies[:1], 1, 1)  # warm-up: topics made, first batch sent
            await node.wait_published(1, within_s=120)
            t0 = time.perf_counter()
            await _post_all(client, bodies[1:], width, batch)
            await node.wait_published(n + 1, within_s=600)
            elapsed = time.perf_counter() - t0
    finally:
        await node.stop()
    return n / elapsed


async def run(ctx: BenchContext) -> list[Figure]:
    n = ctx.n(N_FULL)
    topic = ctx.topic("inbound-raw")
    await create_topics(ctx.bootstrap, [topic], partitions=3)
    values, keys = records(n)
    raw = await raw_produce(ctx.bootstrap, topic, values, keys)
    with tempfile.TemporaryDirectory(prefix="bench-inbound-") as tmp:
        single = await _ingest(ctx, Path(tmp), max(100, n // 10), 1)
        wide = await _ingest(ctx, Path(tmp), n, 16)
        batched = await _ingest(ctx, Path(tmp), ctx.n(N_BATCHED), 2, 1000)
    return [
        Figure(BASELINE, raw, "msg/s"),
        Figure(
            "http-inbound POST -> signed on the bus, one at a time", single, "msg/s", BASELINE, raw
        ),
        Figure(
            "http-inbound POST -> signed on the bus, 16 in flight", wide, "msg/s", BASELINE, raw
        ),
        Figure(
            "http-inbound POST /v1/alerts/batch of 1,000 -> signed on the bus, 2 in flight",
            batched,
            "msg/s",
            BASELINE,
            raw,
        ),
    ]
