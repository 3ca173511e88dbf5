"""The publisher against the real broker: items keeping their payload's Avro bytes publish
exactly what sealing the validated payload would, and items from before the outbox kept
those bytes (schema version < 3) still publish."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from exchange.bus import KafkaSettings
from exchange.chain import Link
from exchange.ids import NodeId
from exchange.models import Handling, parse_payload
from exchange.seal import open_record, seal
from exchange.topics import MessageType
from nodes.config import PublisherConfig
from nodes.inbound import build_item
from nodes.publisher import Publisher
from nodes.store.base import OutboxItem
from nodes.store.sqlite import SqliteStore
from tests.helpers.broker import create_topics
from tests.helpers.federation import Federation, alert_data

pytestmark = pytest.mark.integration


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """FR's store, a real SQLite file."""
    store = SqliteStore(f"sqlite:///{tmp_path / 'fr.db'}")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def _item(fed: Federation, title: str, now: datetime) -> OutboxItem:
    return build_item(
        MessageType.OFFENCE_ALERT.value,
        alert_data(title, observed_at=now),
        handling={"tlp": "GREEN", "code": "H0"},
        node=NodeId("FR"),
        prefix=fed.prefix,
        trust=fed.trust,
        now=now,
    )


async def _publish(
    fed: Federation,
    store: SqliteStore,
    bootstrap: str,
    now: datetime,
    count: int,
    batch_size: int = 1000,
) -> list[tuple[bytes | None, bytes]]:
    """Drain FR's outbox with a running publisher whose clock says ``now``; the (key, value)
    of the records on the alerts topic, in offset order."""
    topic = fed.topic()
    await create_topics(bootstrap, [topic], partitions=1)
    publisher = Publisher(
        node=NodeId("FR"),
        store=store,
        kafka=KafkaSettings(bootstrap_servers=bootstrap),
        signer=fed.signer("FR"),
        trust=fed.trust,
        config=PublisherConfig(batch_size=batch_size),
        clock=lambda: now,
    )
    running = asyncio.create_task(publisher.run())
    try:
        for _ in range(600):  # up to 30 s
            if await store.outbox_depth() == 0:
                break
            await asyncio.sleep(0.05)
    finally:
        publisher.stop()
        await running
    assert await store.outbox_depth() == 0
    assert publisher.metrics.published.value() == count
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        got: list[tuple[bytes | None, bytes]] = []
        while len(got) < count:
            batches = await consumer.getmany(timeout_ms=10_000)
            assert batches, "no record arrived within 10 s"
            got.extend((r.key, r.value) for rs in batches.values() for r in rs if r.value)
    finally:
        await consumer.stop()
    return got


def _expected(
    fed: Federation, items: Sequence[OutboxItem], now: datetime
) -> list[tuple[bytes, bytes]]:
    """What seal() makes of each item's JSON payload, validated again, chained in order."""
    out: list[tuple[bytes, bytes]] = []
    link = Link(1, None)
    for item in items:
        sealed = seal(
            parse_payload(MessageType(item.message_type), item.payload, now=now),
            signer=fed.signer("FR"),
            sender=NodeId("FR"),
            topic=fed.topic(),
            link=link,
            handling=Handling.model_validate(dict(item.handling)),
            now=now,
            message_id=item.message_id,
            key=item.key,
        )
        out.append((sealed.key, sealed.value))
        link = Link(link.sequence + 1, sealed.envelope_hash)
    return out


async def test_items_with_avro_bytes_publish_what_seal_makes(
    live_federation: Federation, outbox: SqliteStore, kafka_bootstrap: str
) -> None:
    """An item keeping its payload's Avro bytes goes out byte for byte as seal() of its
    validated payload would send it (same clock, chain link and message id), and opens."""
    fed, now = live_federation, datetime.now(UTC)
    items = [_item(fed, f"shop {n}", now) for n in range(3)]
    assert all(i.payload_avro for i in items)
    await outbox.enqueue(items)
    assert all(p.payload == {} and p.payload_avro for p in await outbox.pending(10))

    records = await _publish(fed, outbox, kafka_bootstrap, now, len(items))

    assert records == _expected(fed, items, now)
    for (key, value), item in zip(records, items, strict=True):
        opened = open_record(
            value,
            topic=fed.topic(),
            key=key,
            trust=fed.trust,
            now=now,
            reader=NodeId("DE"),
            decryption_key=None,
        )
        assert opened.verified.envelope.message_id == item.message_id
        assert opened.payload == parse_payload(MessageType.OFFENCE_ALERT, item.payload, now=now)


async def test_items_from_before_the_avro_column_still_publish(
    live_federation: Federation, outbox: SqliteStore, kafka_bootstrap: str
) -> None:
    """Items enqueued without Avro bytes (older rows) are sealed from their JSON payload,
    published in outbox order after the new ones' chain, and marked SENT."""
    fed, now = live_federation, datetime.now(UTC)
    old = [replace(_item(fed, f"old shop {n}", now), payload_avro=None) for n in range(2)]
    new = _item(fed, "new shop", now)
    ids = await outbox.enqueue([*old, new])
    pending = await outbox.pending(10)
    assert [(p.id, p.payload_avro is None) for p in pending] == [
        (ids[0], True),
        (ids[1], True),
        (ids[2], False),
    ]
    assert pending[0].payload == old[0].payload

    records = await _publish(fed, outbox, kafka_bootstrap, now, 3)

    assert records == _expected(fed, [*old, new], now)
    assert await outbox.pending(10) == []


async def test_batches_sealed_ahead_continue_one_chain(
    live_federation: Federation, outbox: SqliteStore, kafka_bootstrap: str
) -> None:
    """Many small batches (each sealed while the one before is stored and sent) go out as
    one unbroken chain: sequences 1..n, each linking the hash of the envelope before."""
    fed, now = live_federation, datetime.now(UTC)
    items = [_item(fed, f"shop {n}", now) for n in range(11)]
    await outbox.enqueue(items)

    records = await _publish(fed, outbox, kafka_bootstrap, now, len(items), batch_size=2)

    assert records == _expected(fed, items, now)
    head = await outbox.chain_head(fed.topic())
    assert head is not None
    assert head.sequence == len(items)
