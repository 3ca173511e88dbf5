"""Conversions between store rows and the dataclasses of :mod:`nodes.store.base`, shared by
the SQLite and PostgreSQL backends: JSON documents, UTC times, checks that name the field."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any, cast
from uuid import UUID

from nodes.store.base import (
    AuditAction,
    AuditEvent,
    ChainHead,
    MessageKey,
    OutboxItem,
    OutboxStatus,
    RetractionOrder,
    StoredRecord,
    StoreError,
)
from nodes.store.jsontext import JsonText

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICRO = timedelta(microseconds=1)


def _json_default(value: object) -> Any:
    """Values that are JSON-able in spirit: times as ISO 8601, ids and enums as strings."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


_ENCODER = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default
)


def dump_json(value: Mapping[str, Any] | Sequence[Any], field: str) -> str:
    """``value`` as compact JSON text; a StoreError naming ``field`` when it is not JSON-able.
    A :class:`JsonText` is its own text (it was written by a serializer already)."""
    if type(value) is JsonText:
        return value.text
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{field}: not JSON-serialisable ({exc})") from exc


def dump_names(values: Sequence[str], field: str) -> str:
    """A tuple of node ids (recipients) as a JSON array."""
    if not values:
        return "[]"
    for value in values:
        if not isinstance(value, str):
            raise StoreError(f"{field}: expected node ids as strings, got {value!r}")
    return _ENCODER.encode(list(values))


def load_json(text: str | bytes) -> Any:
    return json.loads(text)


def load_names(text: str | bytes) -> tuple[str, ...]:
    return tuple(json.loads(text))


def aware(value: datetime, field: str) -> datetime:
    """``value`` itself when timezone-aware, else a StoreError naming ``field``."""
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise StoreError(f"{field}: must be a timezone-aware datetime, got {value!r}")
    return value


def to_micros(value: datetime, field: str) -> int:
    """Microseconds since the Unix epoch (UTC) for a timezone-aware datetime."""
    try:
        return (value - EPOCH) // MICRO
    except TypeError:
        raise StoreError(f"{field}: must be a timezone-aware datetime, got {value!r}") from None


def opt_micros(value: datetime | None, field: str) -> int | None:
    return None if value is None else to_micros(value, field)


def from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def positive_limit(limit: int) -> int:
    if not isinstance(limit, int) or limit < 1:
        raise StoreError(f"limit: must be a positive integer, got {limit!r}")
    return limit


# --- columns, in the order both backends select them -------------------------------------
RECORD_COLUMNS = (
    "message_id, topic, kafka_partition, kafka_offset, sender, message_type, record_key,"
    " sequence, created_at, received_at, category, tlp, handling_code, recipients, payload,"
    " envelope_hash, expires_at, state"
)
QUARANTINE_COLUMNS = (
    "topic, kafka_partition, kafka_offset, reason, detail, raw, received_at, message_id, sender,"
    " raw_size, raw_sha256"
)
#: What ``retracted``/``purged`` retractions and expiry leave in ``tombstones.reason``.
TOMBSTONE_WITHDRAWN, TOMBSTONE_PURGED, TOMBSTONE_EXPIRED = "withdrawn", "purged", "expired"


def tombstone_reason(order: RetractionOrder) -> str:
    return TOMBSTONE_PURGED if order.purge else TOMBSTONE_WITHDRAWN


def quarantine_erasure(
    now: datetime, actor: str, before: datetime, by_reason: Mapping[str, int]
) -> AuditEvent:
    """The ERASURE entry :meth:`Store.purge_quarantine` logs for one pruning."""
    return AuditEvent(
        at=now,
        action=AuditAction.ERASURE,
        actor=actor,
        justification="quarantine retention period expired",
        subject=None,
        details={
            "quarantine_entries": sum(by_reason.values()),
            "received_before": before.astimezone(UTC).isoformat(),
            "by_reason": dict(sorted(by_reason.items())),
        },
    )


# The JSON payload is only read for items without their Avro bytes (enqueued before v3).
OUTBOX_COLUMNS = (
    "id, topic, record_key, message_type, CASE WHEN payload_avro IS NULL THEN payload END,"
    " handling, recipients, created_at, status, message_id, sequence, value, envelope_hash,"
    " attempts, last_error, payload_avro"
)
AUDIT_COLUMNS = (
    "seq, at, action, actor, justification, recipients, subject, details, previous_hash, hash"
)


def audit_action(value: str) -> AuditAction:
    """The stored action; an unknown value (an edited row) is kept as is so the hash differs."""
    try:
        return AuditAction(value)
    except ValueError:
        return cast(AuditAction, value)


def audit_details(text: str) -> Mapping[str, Any]:
    """The stored details; text that no longer parses (an edited row) is kept so the hash
    differs."""
    try:
        value = json.loads(text)
    except ValueError:
        return {"<unparseable>": text}
    return value if isinstance(value, dict) else {"<not an object>": value}


def erasure_for(order: RetractionOrder) -> AuditEvent:
    return AuditEvent(
        at=order.at,
        action=AuditAction.ERASURE,
        actor=order.actor or f"sender:{order.by_sender}",
        justification=(
            f"purged on retraction {order.retraction_message_id} by its sender {order.by_sender}"
        ),
        subject=str(order.retracted_message_id),
        details={"retraction_message_id": str(order.retraction_message_id)},
    )


def expiry_erasure(
    now: datetime, actor: str, message_id: UUID, topic: str, expires_at: datetime
) -> AuditEvent:
    """The ERASURE entry :meth:`Store.purge_expired` logs for one expired record."""
    return AuditEvent(
        at=now,
        action=AuditAction.ERASURE,
        actor=actor,
        justification="retention period expired",
        subject=str(message_id),
        details={"topic": topic, "expires_at": expires_at.astimezone(UTC).isoformat()},
    )


# --- commit_batch: the records of a batch, once each -------------------------------------
def first_occurrences(records: Sequence[StoredRecord]) -> list[StoredRecord]:
    """``records`` in batch order without the repeats of a (sender, message id) met earlier."""
    seen: set[MessageKey] = set()
    out: list[StoredRecord] = []
    for record in records:
        k = (record.sender, record.message_id)
        if k not in seen:
            seen.add(k)
            out.append(record)
    return out


def batch_duplicates(
    records: Sequence[StoredRecord], stored: int, stored_before: Callable[[MessageKey], bool]
) -> tuple[UUID, ...]:
    """The ``duplicates`` of a :class:`BatchResult`, in batch order: the message id of every
    repeat of a (sender, message id) within the batch, and of each one ``stored_before`` the
    batch. ``stored``: records inserted (all of them: no duplicates, nothing to look at)."""
    if stored == len(records):
        return ()
    out: list[UUID] = []
    first: set[MessageKey] = set()
    for record in records:
        k = (record.sender, record.message_id)
        if k in first or stored_before(k):
            out.append(record.message_id)
        first.add(k)
    return tuple(out)


# --- checks both backends make, with the same messages -----------------------------------
def signed_fields(item: OutboxItem) -> tuple[UUID, int, bytes, bytes]:
    """The fields a SIGNED outbox item must carry, or a StoreError naming the missing one."""
    if item.message_id is None:
        raise StoreError(f"outbox[{item.id}].message_id: required to mark an item signed")
    if item.sequence is None:
        raise StoreError(f"outbox[{item.id}].sequence: required to mark an item signed")
    if item.value is None:
        raise StoreError(f"outbox[{item.id}].value: required to mark an item signed")
    if item.envelope_hash is None:
        raise StoreError(f"outbox[{item.id}].envelope_hash: required to mark an item signed")
    return item.message_id, item.sequence, item.value, item.envelope_hash


def check_enqueued_id(item: OutboxItem, enqueued: UUID | None) -> None:
    """A StoreError when ``item`` is signed under another message id than it was enqueued with
    (the id printed at enqueue time is the one that must travel)."""
    if enqueued is not None and item.message_id != enqueued:
        raise StoreError(
            f"outbox[{item.id}].message_id: {item.message_id} differs from {enqueued},"
            " the id it was enqueued with"
        )


def check_head_advances(head: ChainHead, current: int | None) -> None:
    """A StoreError when ``head`` does not advance past the stored sequence ``current``."""
    if current is not None and head.sequence <= current:
        raise StoreError(
            f"chain_heads[{head.topic}].sequence: {head.sequence} does not advance past {current}"
        )


def check_unsendable(ids: Sequence[int], states: Mapping[int, str]) -> None:
    """A StoreError naming the first of ``ids`` that is not SENT in ``states`` (id -> status
    after a mark_sent that did not change every id)."""
    for item_id in ids:
        state = states.get(item_id, "unknown")
        if state != OutboxStatus.SENT.value:
            raise StoreError(f"outbox[{item_id}]: cannot mark {state} item sent")


def check_cursor_move(connector: str, current: int | None, last_seq: int) -> None:
    """A StoreError for a connector without a cursor (``current`` None) or a cursor that
    would move back from ``current`` to ``last_seq``."""
    if current is None:
        raise StoreError(f"connector_cursors[{connector}]: no cursor (open_cursor first)")
    if last_seq < current:
        raise StoreError(
            f"connector_cursors[{connector}].last_seq: {last_seq} would move back from {current}"
        )
