"""Step 2 of the pipeline: the replay check and the topic's rules decide each record.

:func:`decide` quarantines a (sender, message id) already stored or met earlier in the
batch as ``replayed`` (wire v2: one id from two senders is two messages, so no member can
squat another's id), then runs the topic's rule chain: a :class:`StoredRecord` (plus a
:class:`RetractionOrder` for a Retraction), a :class:`QuarantineEntry`, or a
:class:`Skipped`. :func:`process` opens and decides a whole batch.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableSet, Sequence
from datetime import datetime
from uuid import UUID

from exchange.errors import ExchangeError, Reason
from exchange.seal import (
    Opened,
)
from exchange.topics import MessageType
from nodes.pipeline.opening import open_raw, ready
from nodes.pipeline.records import (
    INTERNAL_ERROR,
    BatchOutcome,
    Decision,
    OpenedRecord,
    Opening,
    PipelineContext,
    RawRecord,
    Ready,
    Skipped,
    quarantine,
)
from nodes.rules import Drop, Incoming, Skip, apply
from nodes.store.base import (
    MessageKey,
    QuarantineEntry,
    RetractionOrder,
    StoredRecord,
)


def decide(
    raw: RawRecord,
    opened: Ready,
    ctx: PipelineContext,
    now: datetime,
    seen: MutableSet[MessageKey],
) -> Decision:
    """Replay check and rules for one opened record. ``seen`` holds the (sender, message id)
    already stored or met earlier in this batch; those kept or skipped here are added to it."""
    if isinstance(opened, QuarantineEntry | Skipped):
        return Decision(opened)
    envelope = opened
    identity = (envelope.sender, envelope.message_id)
    try:
        if identity in seen:
            return Decision(
                quarantine(
                    raw,
                    Reason.REPLAYED.value,
                    f"message {envelope.message_id} of {envelope.sender} already received",
                    now,
                    envelope.message_id,
                    envelope.sender,
                )
            )
        policy = ctx.policies.get(raw.topic)
        if policy is None:
            raise ExchangeError(Reason.WRONG_TOPIC, f"{raw.topic} is not a topic this node reads")
        item = Incoming(
            envelope=envelope,
            payload=opened.payload,
            topic=raw.topic,
            partition=raw.partition,
            offset=raw.offset,
            received_at=now,
        )
        try:
            item = apply(policy.chain, item)
        except Skip as skip:
            seen.add(identity)
            return Decision(
                Skipped(raw.topic, raw.partition, raw.offset, skip.code, envelope.message_id)
            )
        except Drop as drop:
            return Decision(
                quarantine(
                    raw,
                    Reason.RULE_REJECTED.value,
                    f"{drop.code}: {drop.detail}",
                    now,
                    envelope.message_id,
                    envelope.sender,
                )
            )
        seen.add(identity)
        record = _stored(item, opened, raw)
        retraction = None
        if envelope.message_type == MessageType.RETRACTION and item.payload is not None:
            retraction = RetractionOrder(
                retracted_message_id=UUID(str(item.payload["retracted_message_id"])),
                by_sender=envelope.sender,
                purge=policy.purge_on_retraction,
                retraction_message_id=envelope.message_id,
                at=now,
            )
        return Decision(record, retraction)
    except ExchangeError as exc:
        return Decision(
            quarantine(raw, exc.reason.value, exc.detail, now, envelope.message_id, envelope.sender)
        )
    except Exception as exc:  # a bug must not stop the node
        entry = quarantine(
            raw,
            INTERNAL_ERROR,
            f"{type(exc).__name__}: {exc}",
            now,
            envelope.message_id,
            envelope.sender,
        )
        return Decision(entry, internal_error=exc)


def _stored(item: Incoming, opened: OpenedRecord, raw: RawRecord) -> StoredRecord:
    # positional, in StoredRecord's field order: the consumer's hot path
    return StoredRecord(
        opened.message_id,
        raw.topic,
        raw.partition,
        raw.offset,
        opened.sender,
        opened.message_type.value,
        opened.key,
        opened.sequence,
        opened.created_at,
        item.received_at,
        item.category,
        opened.tlp,
        opened.handling_code,
        opened.recipients,
        {} if item.payload is None else item.payload,
        opened.envelope_hash,
        item.expires_at,
    )


def process(
    raws: Iterable[RawRecord],
    ctx: PipelineContext,
    now: datetime,
    already_stored: Iterable[MessageKey] = (),
    opened: Sequence[Opening | OpenedRecord] | None = None,
) -> BatchOutcome:
    """Open (unless ``opened`` is given, in the same order) and decide a whole batch."""
    raws = list(raws)
    if opened is None:
        opened = [open_raw(raw, ctx, now) for raw in raws]
    seen: set[MessageKey] = set(already_stored)
    out = BatchOutcome()
    for raw, item in zip(raws, opened, strict=True):
        out.add(raw, decide(raw, ready(item), ctx, now, seen))
    return out


def message_ids(opened: Iterable[Opening | OpenedRecord]) -> list[MessageKey]:
    """The (sender, message id) of the records that opened (for the store's replay check)."""
    ids: list[MessageKey] = []
    for o in opened:
        if isinstance(o, OpenedRecord):
            ids.append((o.sender, o.message_id))
        elif isinstance(o, Opened):
            env = o.verified.envelope
            ids.append((env.sender, env.message_id))
    return ids
