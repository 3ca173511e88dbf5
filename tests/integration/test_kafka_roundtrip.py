"""The test broker delivers what an idempotent producer sends: once each, in order per key."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.helpers.broker import create_topics, unique_topic

pytestmark = pytest.mark.integration

N_RECORDS = 1_000
N_KEYS = 20
PARTITIONS = 4


async def _consume_all(bootstrap: str, topic: str, want: int) -> list[tuple[int, bytes, bytes]]:
    """(partition, key, value) of each record on ``topic``: ``want`` of them, then any extra."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        got: list[tuple[int, bytes, bytes]] = []
        async with asyncio.timeout(30):
            while len(got) < want:
                batch = await consumer.getmany(timeout_ms=500, max_records=500)
                for tp in sorted(batch, key=lambda t: t.partition):
                    got.extend((tp.partition, r.key, r.value) for r in batch[tp])
        # Anything beyond ``want`` would be a duplicate: give it a chance to show.
        extra = await consumer.getmany(timeout_ms=1_000)
        got.extend((tp.partition, r.key, r.value) for tp, rs in extra.items() for r in rs)
        return got
    finally:
        await consumer.stop()


async def test_idempotent_records_arrive_once_each_in_order_per_key(kafka_bootstrap: str) -> None:
    """1,000 records over 20 keys and 4 partitions come back exactly once each, in order per key."""
    topic = unique_topic("roundtrip")
    await create_topics(kafka_bootstrap, [topic], partitions=PARTITIONS)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all", linger_ms=5
    )
    await producer.start()
    sent: dict[bytes, list[bytes]] = defaultdict(list)
    try:
        futures = []
        for i in range(N_RECORDS):
            key = f"key-{i % N_KEYS:02d}".encode()
            value = f"{key.decode()}:{i:05d}:".encode() + bytes([i % 256]) * 100
            sent[key].append(value)
            futures.append(await producer.send(topic, value=value, key=key))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()

    got = await _consume_all(kafka_bootstrap, topic, N_RECORDS)

    assert len(got) == N_RECORDS
    received: dict[bytes, list[bytes]] = defaultdict(list)
    partitions_of: dict[bytes, set[int]] = defaultdict(set)
    for partition, key, value in got:
        received[key].append(value)
        partitions_of[key].add(partition)
    assert received == sent  # same contents, and per key the same order
    assert all(len(p) == 1 for p in partitions_of.values())  # a key stays on one partition
    assert len({p for ps in partitions_of.values() for p in ps}) > 1  # keys did spread out
