"""Building topic histories for the audit tests: a federation, signed records, raw produce.

Records are sealed with :func:`exchange.seal.seal` and written with raw aiokafka (so a
test can inject what no node would write: gaps, forks, forged signatures, moved
records, garbage bytes) into explicit partitions, and the offsets are kept so tests
can say exactly where each violation must be found.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaProducer

from exchange import codec
from exchange.bus import federation_topics
from exchange.chain import ChainState, Link
from exchange.envelope import encode_envelope
from exchange.ids import KeyId, NodeId, Topic
from exchange.keys import SigningKey
from exchange.seal import Sealed, seal
from exchange.trust import KeyEntry, TrustList
from tests.helpers import federation as helpers
from tests.helpers.broker import create_topics

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Node:
    """One member: its signing key(s) and its chain state."""

    node_id: NodeId
    key: SigningKey
    chain: ChainState = field(default_factory=ChainState)

    def seal(
        self,
        topic: Topic,
        now: datetime,
        *,
        link: Link | None = None,
        key: SigningKey | None = None,
        message_id: uuid.UUID | None = None,
        advance: bool = True,
    ) -> Sealed:
        """Seal a fresh alert on ``topic`` with the next link (or ``link``), then advance."""
        sealed = seal(
            helpers.make_alert(now),
            signer=key or self.key,
            sender=self.node_id,
            topic=topic,
            link=link or self.chain.next(topic),
            handling=helpers.handling(),
            now=now,
            message_id=message_id,
        )
        if advance:
            self.chain.advance(topic, sealed.envelope_hash)
        return sealed


@dataclass
class Federation:
    """A test federation (:func:`tests.helpers.federation.make_federation`) for the audit.

    Keys are valid from T0; ``now`` is the real time, since the replay judges records
    against the real clock. ``trust_file`` has ``root.pub`` beside it.
    """

    base: helpers.Federation
    nodes: dict[str, Node]

    @property
    def trust(self) -> TrustList:
        """The current trust list."""
        return self.base.trust

    @property
    def trust_file(self) -> Path:
        """The signed trust-list file."""
        return self.base.trust_path

    @classmethod
    def build(
        cls,
        folder: Path,
        members: Sequence[str] = ("FR", "DE"),
        *,
        extra_keys: dict[str, SigningKey] | None = None,
        revoked: dict[KeyId, datetime] | None = None,
        expired_keys: dict[str, SigningKey] | None = None,
    ) -> Federation:
        """``extra_keys``: a second signing key per member; ``revoked``: key id -> time;
        ``expired_keys``: a further key per member, valid for the first day from T0 only.
        """
        base = helpers.make_federation(
            folder, members, datetime.now(UTC), federation="eu-audit-test", valid_from=T0
        )
        trust = base.trust
        windows: list[tuple[str, SigningKey, datetime | None]]
        windows = [(m, k, None) for m, k in (extra_keys or {}).items()]
        windows += [(m, k, T0 + timedelta(days=1)) for m, k in (expired_keys or {}).items()]
        for m, key, until in windows:
            member = trust.member(NodeId(m))
            entry = KeyEntry.for_key(key.public_bytes, T0, until)
            trust = trust.with_member(
                dataclasses.replace(member, signing_keys=(*member.signing_keys, entry)),
                issued_at=T0,
            )
        for key_id, at in (revoked or {}).items():
            trust = trust.revoke(key_id, at, "key compromised", issued_at=at)
        if trust is not base.trust:
            base.publish_trust(trust)
        nodes = {m: Node(NodeId(m), base.nodes[NodeId(m)].signing) for m in members}
        return cls(base, nodes)


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
