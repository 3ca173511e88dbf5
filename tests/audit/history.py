"""Building topic histories for the audit tests: a federation, signed records, raw produce.

Records are sealed by the federation's members (:class:`tests.helpers.federation.Member`)
and written with raw aiokafka (so a test can inject what no node would write: gaps, forks,
forged signatures, moved records, garbage bytes) into explicit partitions, and the offsets
are kept so tests can say exactly where each violation must be found.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from exchange import codec
from exchange.bus import federation_topics
from exchange.envelope import encode_envelope
from exchange.keys import SigningKey
from exchange.seal import Sealed
from tests.helpers.broker import create_topics
from tests.helpers.federation import Federation, make_federation

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def audit_federation(
    folder: Path, members: Sequence[str] = ("FR", "DE"), **keys: Any
) -> Federation:
    """A federation whose keys are valid from T0, ``now`` the real time (the replay judges
    records against the real clock); ``keys``: ``extra_keys``, ``revoked``, ``expired_keys``
    as for :func:`tests.helpers.federation.make_federation`."""
    return make_federation(
        folder, members, datetime.now(UTC), federation="eu-audit-test", valid_from=T0, **keys
    )


def forge(value: bytes) -> bytes:
    """The same record with one signature byte flipped."""
    envelope, signature, key_id = codec.decode_signed(value)
    flipped = bytes([signature[0] ^ 0x01]) + signature[1:]
    return codec.encode_signed(envelope, flipped, key_id)


def resign(sealed: Sealed, signer: SigningKey, **changes: object) -> bytes:
    """The record's envelope with ``changes`` applied, validly signed by ``signer``."""
    envelope = sealed.envelope._replace(**changes)  # type: ignore[arg-type]
    data = encode_envelope(envelope)
    return codec.encode_signed(data, signer.sign(data), signer.key_id)


@dataclass(frozen=True)
class Placed:
    """Where a produced record landed."""

    topic: str
    partition: int
    offset: int


async def create_federation_topics(bootstrap: str, prefix: str) -> None:
    """The four federation topics of ``prefix`` (blacklist: 1 partition, others 3)."""
    for name, partitions in federation_topics(prefix).items():
        await create_topics(bootstrap, [name], partitions)


async def produce(
    bootstrap: str,
    records: Sequence[tuple[str, bytes | None, bytes, int | None]],
    *,
    timestamps_ms: Sequence[int | None] | None = None,
) -> list[Placed]:
    """Write ``(topic, key, value, partition)`` records in order; where each landed."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    placed = []
    try:
        for i, (topic, key, value, partition) in enumerate(records):
            ts = timestamps_ms[i] if timestamps_ms else None
            meta = await producer.send_and_wait(
                topic, value, key=key, partition=partition, timestamp_ms=ts
            )
            placed.append(Placed(meta.topic, meta.partition, meta.offset))
    finally:
        await producer.stop()
    return placed
