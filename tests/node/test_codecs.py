"""Whatever codec another member's producer compresses with, and whatever a broker's disk
does to a batch, a node keeps storing and an audit keeps reading.

Members run other clients (Java producers commonly compress with lz4 or zstd). A batch
that cannot be read at all (a corrupt segment on a broker's disk: the broker serves log
bytes as they are) is quarantined by (topic, partition, offset) with a reason of its own,
and everything after it is stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from exchange.bus import ensure_topics
from exchange.cli import main
from exchange.topics import TopicKind
from nodes.daemon import Node
from nodes.store.base import OutboxItem
from tests.helpers.broker import LocalBroker
from tests.helpers.federation import Federation
from tests.node.helpers import (
    fr_and_de,
    quarantine_of,
    signed_items,
    stored_ids,
)

pytestmark = pytest.mark.integration

CODECS = ("gzip", "snappy", "lz4", "zstd")


async def _produce(bootstrap: str, items: list[OutboxItem], codec: str | None) -> None:
    """Write ``items`` (FR's signed records) with a plain producer compressing with
    ``codec``, as another member's client would; one batch per call."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, compression_type=codec, enable_idempotence=True
    )
    await producer.start()
    try:
        for item in items:
            assert item.value is not None
            await producer.send(item.topic, item.value, key=item.key.encode(), partition=0)
        await producer.flush()
    finally:
        await producer.stop()


async def _store_all(fed: Federation, expected: int) -> Node:
    """Run DE until it has consumed everything on its topics; returns the stopped node."""
    de = Node(fed.config("DE"))
    await de.start()
    try:
        await de.wait_until(lambda: de.metrics.consumed.value() >= expected, within_s=60)
        await de.wait_caught_up()
    finally:
        await de.stop()
    return de


def _audit(fed: Federation, bootstrap: str, report: Path) -> int:
    return main(
        [
            "audit",
            "replay",
            "--bootstrap",
            bootstrap,
            "--prefix",
            fed.prefix,
            "--trust",
            str(fed.trust_path),
            "--report",
            str(report),
            "--workers",
            "0",
        ]
    )


async def test_records_compressed_with_every_codec_are_stored_and_audited(
    tmp_path: Path, kafka_bootstrap: str, topic_prefix: str
) -> None:
    """FR's alerts written by producers compressing with gzip, snappy, lz4 and zstd are all
    stored by DE, nothing is quarantined, and the auditor's replay finds nothing wrong."""
    fed = fr_and_de(tmp_path, kafka_bootstrap, topic_prefix, tuned=True)
    await ensure_topics(fed.config("DE").kafka.settings(), topic_prefix)
    per_codec = 5
    items = await signed_items(fed, "FR", per_codec * len(CODECS))
    for i, codec in enumerate(CODECS):
        await _produce(kafka_bootstrap, items[i * per_codec : (i + 1) * per_codec], codec)
    de = await _store_all(fed, len(items))
    assert await quarantine_of(fed, "DE") == []
    stored = await stored_ids(fed, "DE", fed.topic(TopicKind.ALERTS))
    assert sorted(stored) == sorted(i.message_id for i in items)
    assert de.metrics.stored.value() == len(items)
    report = tmp_path / "audit.json"
    assert await asyncio.to_thread(_audit, fed, kafka_bootstrap, report) == 0
    assert json.loads(report.read_text())["violations"] == []


def _corrupt_middle_batch(broker: LocalBroker, topic: str, marker: bytes) -> None:
    """Flip a byte of the one batch on disk that holds ``marker`` (inside its CRC)."""
    segment = broker.data_dir() / f"{topic}-0" / "00000000000000000000.log"
    data = bytearray(segment.read_bytes())
    at = data.find(marker)
    assert at > 0, "the batch to corrupt is not on disk"
    assert data.find(marker, at + 1) == -1
    data[at + len(marker) // 2] ^= 0xFF
    segment.write_bytes(bytes(data))


async def test_a_corrupt_batch_on_the_broker_is_quarantined_and_the_node_reads_past_it(
    tmp_path: Path, private_broker: LocalBroker, topic_prefix: str
) -> None:
    """A batch corrupted on the broker's disk becomes one undecodable_batch quarantine entry
    at its offsets; DE stores the batches around it and what comes later, and the auditor
    reports it with its place instead of stopping."""
    bootstrap = private_broker.bootstrap
    fed = fr_and_de(tmp_path, bootstrap, topic_prefix, tuned=True)
    await ensure_topics(fed.config("DE").kafka.settings(), topic_prefix, partitions=1)
    items = await signed_items(fed, "FR", 9)
    for chunk in (items[0:3], items[3:6], items[6:9]):  # three batches, uncompressed
        await _produce(bootstrap, chunk, None)
    topic = fed.topic(TopicKind.ALERTS)
    await asyncio.to_thread(private_broker.stop)
    assert items[4].message_id is not None
    _corrupt_middle_batch(private_broker, topic, items[4].message_id.bytes)
    await asyncio.to_thread(private_broker.start)

    later = await signed_items(fed, "FR", 2)
    await _produce(bootstrap, later, "lz4")
    await _store_all(fed, 3 + 1 + 3 + 2)  # the bad batch is one record

    stored = set(await stored_ids(fed, "DE", topic))
    assert stored == {i.message_id for i in items[:3] + items[6:] + later}
    (entry,) = await quarantine_of(fed, "DE")
    assert (entry.topic, entry.partition, entry.offset) == (topic, 0, 5)
    assert entry.reason == "undecodable_batch"
    assert "offsets 3..5" in entry.detail
    assert "sha256" in entry.detail

    report = tmp_path / "audit.json"
    assert await asyncio.to_thread(_audit, fed, bootstrap, report) == 1
    violations = json.loads(report.read_text())["violations"]
    undecodable = [v for v in violations if v["kind"] == "undecodable_batch"]
    assert [(v["topic"], v["partition"], v["offset"]) for v in undecodable] == [(topic, 0, 5)]


async def test_a_record_over_the_size_cap_is_quarantined_before_decoding(
    tmp_path: Path, kafka_bootstrap: str, topic_prefix: str
) -> None:
    """A value longer than max_record_bytes is refused as too_large without being decoded:
    the quarantine keeps its first 4 KiB, names its size and SHA-256, and the alert after
    it is stored."""
    fed = fr_and_de(
        tmp_path,
        kafka_bootstrap,
        topic_prefix,
        per_node={"DE": {"consumer": {"max_record_bytes": 8192}}},
    )
    await ensure_topics(fed.config("DE").kafka.settings(), topic_prefix, partitions=1)
    topic = fed.topic(TopicKind.ALERTS)
    flood = bytes(range(256)) * 80  # 20,480 bytes of garbage
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(topic, flood, key=b"x", partition=0)
    finally:
        await producer.stop()
    (alert,) = await signed_items(fed, "FR", 1)
    await _produce(kafka_bootstrap, [alert], "zstd")
    await _store_all(fed, 2)
    assert await stored_ids(fed, "DE", topic) == [alert.message_id]
    (entry,) = await quarantine_of(fed, "DE")
    assert (entry.offset, entry.reason) == (0, "too_large")
    assert entry.raw == flood[:4096]
    assert f"record of {len(flood)} bytes" in entry.detail
    assert hashlib.sha256(flood).hexdigest() in entry.detail


async def _produce_bomb(bootstrap: str, topic: str, records: int) -> None:
    """One zstd batch of ``records`` values of a million zero bytes each: a few KiB on the
    bus (the broker validates it streaming and takes it), ``records`` MB once inflated."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, compression_type="zstd", max_batch_size=records << 20
    )
    await producer.start()
    try:
        bomb = producer.create_batch()
        for _ in range(records):
            assert bomb.append(key=b"x", value=bytes(1_000_000), timestamp=None) is not None
        bomb.close()
        await (await producer.send_batch(bomb, topic, partition=0))
    finally:
        await producer.stop()


async def test_a_batch_that_would_inflate_to_gigabytes_is_quarantined_whole_unread(
    tmp_path: Path, kafka_bootstrap: str, topic_prefix: str
) -> None:
    """A non-member's zstd batch that would inflate 80 MB (past the 64 MiB bound) is one
    undecodable_batch entry covering all its offsets, naming the bound; DE never inflates
    it, and stores the alerts before and after it."""
    fed = fr_and_de(tmp_path, kafka_bootstrap, topic_prefix, tuned=True)
    await ensure_topics(fed.config("DE").kafka.settings(), topic_prefix, partitions=1)
    topic = fed.topic(TopicKind.ALERTS)
    before, after = await signed_items(fed, "FR", 2)
    await _produce(kafka_bootstrap, [before], "zstd")
    await _produce_bomb(kafka_bootstrap, topic, 80)
    await _produce(kafka_bootstrap, [after], "zstd")
    await _store_all(fed, 3)  # the bomb is one record
    assert sorted(await stored_ids(fed, "DE", topic)) == sorted(
        [before.message_id, after.message_id]
    )
    (entry,) = await quarantine_of(fed, "DE")
    assert (entry.offset, entry.reason) == (80, "undecodable_batch")
    assert "offsets 1..80" in entry.detail
    assert "expands past" in entry.detail
