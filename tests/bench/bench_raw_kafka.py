"""The baseline: raw aiokafka throughput of 1 KB records, with the settings the nodes use.

Produce: idempotent, ``acks="all"``, 1 MB batches, 5 ms linger. Consume:
``getmany(max_records=2000)`` over every partition from the beginning. Other benchmarks
reuse :func:`raw_produce` / :func:`raw_consume` to measure "raw aiokafka
produce+consume of the same bytes" as their baseline in the same run.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.bench.harness import BenchContext, Figure
from tests.helpers.broker import create_topics

PARTITIONS = 3
RECORD_BYTES = 1024
N_FULL = 100_000
N_KEYS = 1_000


async def raw_produce(
    bootstrap: str, topic: str, values: Sequence[bytes], keys: Sequence[bytes | None]
) -> float:
    """Send ``values`` (with ``keys``) to ``topic``; records per second until all are acked."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        max_batch_size=1_048_576,
        linger_ms=5,
    )
    await producer.start()
    try:
        t0 = time.perf_counter()
        futures = [await producer.send(topic, v, key=k) for v, k in zip(values, keys, strict=True)]
        await asyncio.gather(*futures)
        elapsed = time.perf_counter() - t0
    finally:
        await producer.stop()
    return len(values) / elapsed


async def raw_consume(bootstrap: str, topic: str, n: int, timeout_s: float = 120) -> float:
    """Read ``n`` records of ``topic`` from the beginning; records per second."""
    # No group: the consumer reads every partition, from the earliest offset.
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        got = 0
        t0 = time.perf_counter()
        async with asyncio.timeout(timeout_s):
            while got < n:
                batch = await consumer.getmany(timeout_ms=1_000, max_records=2_000)
                got += sum(len(records) for records in batch.values())
        elapsed = time.perf_counter() - t0
    finally:
        await consumer.stop()
    if got != n:
        raise RuntimeError(f"consumed {got} records of {topic}, expected {n}")
    return n / elapsed


def records(n: int, size: int = RECORD_BYTES) -> tuple[list[bytes], list[bytes | None]]:
    """``n`` distinct random values of ``size`` bytes, keyed over :data:`N_KEYS` UUID keys."""
    keys = [str(uuid.uuid4()).encode() for _ in range(N_KEYS)]
    blob = os.urandom(size + n)
    values = [blob[i : i + size] for i in range(n)]
    return values, [keys[i % N_KEYS] for i in range(n)]


async def run(ctx: BenchContext) -> list[Figure]:
    """Produce then consume ``100,000 * BENCH_SCALE`` 1 KB records."""
    n = ctx.n(N_FULL)
    topic = ctx.topic("raw")
    await create_topics(ctx.bootstrap, [topic], partitions=PARTITIONS)
    values, keys = records(n)
    produced = await raw_produce(ctx.bootstrap, topic, values, keys)
    consumed = await raw_consume(ctx.bootstrap, topic, n)
    return [
        Figure("raw aiokafka produce 1 KB (acks=all, idempotent)", produced, "msg/s"),
        Figure("raw aiokafka consume 1 KB (getmany 2000)", consumed, "msg/s"),
    ]
