"""Hostile records produced straight onto the topics are quarantined, never stored, never fatal.

The test plays a hostile or broken member with raw aiokafka; DE runs in this test's event
loop against the real broker and its real SQLite store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from exchange import codec
from exchange.bus import ensure_topics
from exchange.chain import Link
from exchange.ids import NodeId
from exchange.models import Handling, OffenceAlert, parse_payload
from exchange.seal import Sealed, seal
from exchange.topics import MessageType, TopicKind
from nodes.daemon import Node
from tests.helpers.federation import Federation, make_federation
from tests.node.helpers import (
    alert_payload,
    quarantine_of,
    wait_for,
)

pytestmark = pytest.mark.integration

HANDLING = Handling.model_validate(
    {"tlp": "GREEN", "code": "H0", "source_reliability": "B", "information_reliability": "TWO"}
)


@dataclass(frozen=True)
class Produced:
    """Where a record landed, and what DE must make of it (None: store it)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    reason: str | None


def _alert(index: int, now: datetime) -> OffenceAlert:
    alert = parse_payload(
        MessageType.OFFENCE_ALERT, alert_payload(index, node="FR", now=now, size=300), now=now
    )
    assert isinstance(alert, OffenceAlert)
    return alert


def _sealed(fed: Federation, index: int, *, signer: str = "FR", previous: Sealed | None) -> Sealed:
    """An alert from FR on the alerts topic, signed with ``signer``'s key, after ``previous``."""
    now = datetime.now(UTC)
    link = (
        Link(1, None)
        if previous is None
        else Link(previous.envelope.sequence + 1, previous.envelope_hash)
    )
    return seal(
        _alert(index, now),
        signer=fed.signer(signer),
        sender=NodeId("FR"),
        topic=fed.topic(TopicKind.ALERTS),
        link=link,
        handling=HANDLING,
        now=now,
    )


def _resigned(value: bytes, signature: bytes | None = None, key_id: str | None = None) -> bytes:
    """``value`` with its signature and/or key id replaced, the envelope bytes untouched."""
    envelope, old_signature, old_key_id = codec.decode_signed(value)
    return codec.encode_signed(envelope, signature or old_signature, key_id or old_key_id)


async def test_hostile_records_are_quarantined_with_reason_and_place(
    tmp_path: Path, kafka_bootstrap: str, topic_prefix: str
) -> None:
    """Each hostile record lands in quarantine with its reason code and topic/partition/offset,
    while the valid records interleaved with them are stored."""
    fed = make_federation(
        tmp_path / "fed",
        now=datetime.now(UTC),
        bootstrap=kafka_bootstrap,
        prefix=topic_prefix,
        tuned=True,
    )
    alerts, indicators = fed.topic(TopicKind.ALERTS), fed.topic(TopicKind.INDICATORS)
    config = fed.config("DE")
    await ensure_topics(config.kafka.settings(), fed.prefix)

    valid1 = _sealed(fed, 1, previous=None)
    by_nl = _sealed(fed, 2, signer="NL", previous=valid1)  # claims FR, signed with NL's key
    valid2 = _sealed(fed, 3, previous=valid1)
    forged = _sealed(fed, 4, signer="NL", previous=valid2)
    tampered = _sealed(fed, 5, previous=valid2)
    valid3 = _sealed(fed, 6, previous=valid2)
    _, signature, _ = codec.decode_signed(tampered.value)
    flipped = bytes([signature[0] ^ 0x01]) + signature[1:]
    fr_key_id = fed.signer("FR").key_id
    plan: list[tuple[str, bytes | None, bytes, str | None]] = [
        (alerts, valid1.value, valid1.key, None),
        (alerts, b"\x00\x01 not a signed envelope", b"junk", "malformed"),
        (alerts, None, b"tombstone", "malformed"),
        (alerts, by_nl.value, by_nl.key, "sender_key_mismatch"),
        (alerts, _resigned(forged.value, key_id=fr_key_id), forged.key, "bad_signature"),
        (alerts, valid2.value, valid2.key, None),
        (alerts, _resigned(tampered.value, signature=flipped), tampered.key, "bad_signature"),
        (alerts, valid1.value, valid1.key, "replayed"),  # the exact bytes, produced again
        (indicators, valid2.value, valid2.key, "wrong_topic"),
        (alerts, valid2.value, b"another-key", "wrong_key"),
        (alerts, valid3.value, valid3.key, None),
    ]

    de = Node(config)
    await de.start()
    try:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            produced = []
            for topic, value, key, reason in plan:
                meta = await producer.send_and_wait(topic, value, key=key)
                produced.append(Produced(meta.topic, meta.partition, meta.offset, value, reason))
        finally:
            await producer.stop()
        hostile = [p for p in produced if p.reason is not None]
        await wait_for(
            lambda: (
                de.metrics.stored.value() >= 3 and de.metrics.quarantined.value() >= len(hostile)
            ),
            within_s=30,
            what="DE storing 3 records and quarantining the rest",
        )
        assert de.consumer is not None
        assert de.consumer.alive
        records = await de.store.list_records(topic=alerts, limit=100)
    finally:
        await de.stop()

    assert {r.message_id for r in records} == {
        s.envelope.message_id for s in (valid1, valid2, valid3)
    }
    assert {(r.topic, r.partition, r.offset) for r in records} == {
        (p.topic, p.partition, p.offset) for p in produced if p.reason is None
    }
    quarantined = await quarantine_of(fed, "DE")
    got = sorted((q.topic, q.partition, q.offset, q.reason, q.raw) for q in quarantined)
    want = sorted((p.topic, p.partition, p.offset, p.reason, p.value or b"") for p in hostile)
    assert got == want
    replayed = [q for q in quarantined if q.reason == "replayed"]
    assert [q.message_id for q in replayed] == [valid1.envelope.message_id]
