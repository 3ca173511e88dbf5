"""What the pipeline passes around: raw records, the context, openings and decisions.

Plain data and the one constructor of quarantine entries (:func:`quarantine`, which keeps
a bounded part of what it refuses); no logic that verifies or decides.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from exchange.fetchguard import KEEP_BYTES
from exchange.ids import NodeId
from exchange.keys import EncryptionKey
from exchange.quickinit import quick_init
from exchange.seal import (
    Opened,
)
from exchange.topics import MessageType
from exchange.trust import TrustList
from nodes.rules import Rule
from nodes.store.base import (
    AuditAction,
    AuditEvent,
    QuarantineEntry,
    RetractionOrder,
    StoredRecord,
    TopicPartition,
)

INTERNAL_ERROR = "internal_error"
#: What a quarantine entry keeps of its detail text (of the value: KEEP_BYTES, the first 4 KiB).
MAX_DETAIL = 1000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Kafka's record timestamp type for the broker's clock (0 is CreateTime).
LOG_APPEND_TIME = 1


@quick_init
@dataclass(frozen=True, slots=True)
class RawRecord:
    """A Kafka record as consumed.

    ``timestamp_ms``: the record's Kafka timestamp, the broker's append time on federation
    topics (LogAppendTime): keys are judged at it and ``created_at`` must lie within
    ``max_skew`` of it. None only for records not read from Kafka (tests): judged at
    ``created_at`` then. ``timestamp_type``: Kafka's, 1 for LogAppendTime; a record with
    0 (CreateTime: the producer chose the time) is refused as ``not_append_time``, since
    its time would be the sender's claim. None: unknown (records not read from Kafka).
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None
    timestamp_type: int | None = None


@quick_init
@dataclass(frozen=True, slots=True)
class Skipped:
    """Consumed, not for this node: neither stored nor quarantined."""

    topic: str
    partition: int
    offset: int
    reason: str
    message_id: UUID | None


@dataclass(frozen=True, slots=True)
class TopicPolicy:
    """What :func:`decide` needs to know about one topic."""

    chain: Sequence[Rule]
    purge_on_retraction: bool


@dataclass(frozen=True)
class PipelineContext:
    """Everything the pipeline needs, fixed for the life of a consumer."""

    node: NodeId
    trust: TrustList
    decryption_key: EncryptionKey | None
    policies: Mapping[str, TopicPolicy]  # by full topic name
    max_skew: timedelta = timedelta(minutes=5)
    #: Records signed with these key ids (this node's own) are skipped before verification.
    skip_key_ids: frozenset[str] = frozenset()


Outcome = StoredRecord | QuarantineEntry | Skipped


@dataclass
class Decision:
    """The fate of one record."""

    outcome: Outcome
    retraction: RetractionOrder | None = None
    internal_error: BaseException | None = None  # the caller logs it


@dataclass
class BatchOutcome:
    """A whole batch, ready for ``store.commit_batch``."""

    records: list[StoredRecord] = field(default_factory=list)
    quarantined: list[QuarantineEntry] = field(default_factory=list)
    retractions: list[RetractionOrder] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    internal_errors: list[tuple[RawRecord, BaseException]] = field(default_factory=list)

    def add(self, raw: RawRecord, decision: Decision) -> None:
        outcome = decision.outcome
        if isinstance(outcome, StoredRecord):
            self.records.append(outcome)
        elif isinstance(outcome, QuarantineEntry):
            self.quarantined.append(outcome)
        else:
            self.skipped.append(outcome)
        if decision.retraction is not None:
            self.retractions.append(decision.retraction)
        if decision.internal_error is not None:
            self.internal_errors.append((raw, decision.internal_error))
        tp = (raw.topic, raw.partition)
        if raw.offset + 1 > self.offsets.get(tp, -1):
            self.offsets[tp] = raw.offset + 1

    def collection_events(self, actor: str, at: datetime) -> list[AuditEvent]:
        """One COLLECTION audit event per (sender, topic) in this batch, naming the message ids."""
        groups: dict[tuple[str, str], list[str]] = {}
        for record in self.records:
            groups.setdefault((record.sender, record.topic), []).append(str(record.message_id))
        return [
            AuditEvent(
                at=at,
                action=AuditAction.COLLECTION,
                actor=actor,
                justification=f"received from member {sender} on {topic} under the node's rules",
                subject=None,
                details={"sender": sender, "topic": topic, "message_ids": ids},
            )
            for (sender, topic), ids in groups.items()
        ]


def quarantine(
    raw: RawRecord,
    reason: str,
    detail: str,
    now: datetime,
    message_id: UUID | None = None,
    sender: str | None = None,
) -> QuarantineEntry:
    """The entry for ``raw``: its first :data:`KEEP_BYTES` with the size and SHA-256 of the
    whole value, and ``detail`` cut at :data:`MAX_DETAIL` characters."""
    value = raw.value or b""
    return QuarantineEntry(
        topic=raw.topic,
        partition=raw.partition,
        offset=raw.offset,
        reason=reason,
        detail=detail[:MAX_DETAIL],
        raw=value[:KEEP_BYTES],
        received_at=now,
        message_id=message_id,
        sender=sender,
        size=len(value),
        sha256=hashlib.sha256(value).digest(),
    )


Opening = Opened | QuarantineEntry | Skipped


@quick_init
@dataclass(frozen=True, slots=True)
class OpenedRecord:
    """A verified, opened record as :func:`decide` and the store need it: the envelope's
    facts (the attributes ``nodes.rules.EnvelopeFacts`` names, and more) and the payload as
    a JSON-ready dict; None when addressed to other nodes only."""

    message_id: UUID
    message_type: MessageType
    key: str
    sender: NodeId
    created_at: datetime
    sequence: int
    recipients: tuple[NodeId, ...]
    tlp: str
    handling_code: str
    envelope_hash: bytes
    payload: Mapping[str, Any] | None


#: What :func:`decide` takes for one record.
Ready = OpenedRecord | QuarantineEntry | Skipped
