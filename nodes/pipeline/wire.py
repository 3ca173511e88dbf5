"""The process pool's wire format: records to and from builtins (``nodes.openpool``).

A :class:`RawRecord` travels as a tuple of its fields; what comes back (:data:`ReadyWire`)
is ``("q", reason, detail)`` for a quarantine entry (the caller still has the raw bytes),
``("s", reason)`` for a skip, or ``("o", facts...)`` for an opened record, its payload as
JSON text and the top-level values read ahead with it, its offence category
(:class:`~nodes.store.jsontext.JsonText` on both sides: never parsed on the way).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from exchange.envelope.binary import uuid_from_bytes
from exchange.topics import MessageType
from nodes.pipeline.records import OpenedRecord, RawRecord, Ready, Skipped, quarantine
from nodes.store.base import QuarantineEntry
from nodes.store.codecs import dump_json
from nodes.store.jsontext import JsonText

#: One record into a worker: (topic, partition, offset, key, value, timestamp ms, its type).
RawWire = tuple[str, int, int, bytes | None, bytes | None, int | None, int | None]
#: One record back: ("q", reason, detail) | ("s", reason) | ("o", facts...).
ReadyWire = tuple[Any, ...]

_MESSAGE_TYPES = {t.value: t for t in MessageType}
_QUARANTINED = "q"
_SKIPPED = "s"
_OPENED = "o"


def raw_to_wire(raw: RawRecord) -> RawWire:
    return (
        raw.topic,
        raw.partition,
        raw.offset,
        raw.key,
        raw.value,
        raw.timestamp_ms,
        raw.timestamp_type,
    )


def raw_from_wire(wire: RawWire) -> RawRecord:
    return RawRecord(*wire)


def to_wire(item: Ready) -> ReadyWire:
    """``item`` as builtins: the quarantine reason and detail (the caller still has the raw
    bytes), the skip reason, or the opened record's facts."""
    if isinstance(item, QuarantineEntry):
        return (_QUARANTINED, item.reason, item.detail)
    if isinstance(item, Skipped):
        return (_SKIPPED, item.reason)
    return (
        _OPENED,
        item.message_id.bytes,
        item.message_type.value,
        item.key,
        item.sender,
        item.created_at,
        item.sequence,
        item.recipients,
        item.tlp,
        item.handling_code,
        item.envelope_hash,
        None if item.payload is None else _text(item.payload),
        None if item.payload is None else _known(item.payload),
    )


def _known(payload: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return payload.known if type(payload) is JsonText else None


def _text(payload: Mapping[str, Any]) -> str:
    """The payload's JSON text: what ``ready`` made (or the encoding of another mapping)."""
    if type(payload) is JsonText:
        return payload.text
    return dump_json(payload, "payload")


def from_wire(raw: RawRecord, wire: ReadyWire, now: datetime) -> Ready:
    """The :class:`Ready` that :func:`to_wire` turned into ``wire``, for ``raw``."""
    tag = wire[0]
    if tag == _QUARANTINED:
        return quarantine(raw, wire[1], wire[2], now)
    if tag == _SKIPPED:
        return Skipped(raw.topic, raw.partition, raw.offset, wire[1], None)
    _, mid, mtype, key, sender, created, seq, recips, tlp, code, ehash, payload, known = wire
    return OpenedRecord(
        uuid_from_bytes(mid),
        _MESSAGE_TYPES[mtype],
        key,
        sender,
        created,
        seq,
        recips,
        tlp,
        code,
        ehash,
        None if payload is None else JsonText(payload, known),
    )
