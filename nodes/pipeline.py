"""From raw Kafka records to what the store keeps: pure, no I/O, ``now`` passed in.

Two steps, so the costly one can run in threads or processes:

1. :func:`open_raw` - verify the signature, decrypt when addressed to this node, decode and
   validate the payload (``exchange.seal.open_record``), in two parts: :func:`check_raw`
   (the signature: libsodium, which releases the GIL, so a thread pool runs it) and
   :func:`open_checked` (the rest, Python-bound). :func:`ready` then reduces an opened record
   to an :class:`OpenedRecord`: the envelope's facts and the payload as a JSON-ready dict,
   all :func:`decide` and the store need. ``nodes.openpool`` runs both in worker processes
   and ships the result back as builtins (:func:`to_wire` / :func:`from_wire`).
2. :func:`decide` - replay check ((sender, message id) already stored, or seen earlier in
   this batch -> quarantine ``replayed``; wire v2: one id from two senders is two
   messages, so no member can squat another's id), then the topic's rule chain -> a
   :class:`StoredRecord` (plus a :class:`RetractionOrder` for a Retraction), a
   :class:`QuarantineEntry`, or a :class:`Skipped`.

Every :class:`ExchangeError` becomes a quarantine entry with its reason code; anything
unexpected (a bug) in one record becomes a quarantine entry with reason ``internal_error``
(logged at ERROR by the caller) - one record never stops the node.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableSet, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from exchange.codec import decode_signed
from exchange.envelope import WIRE_VERSION
from exchange.errors import ExchangeError, Reason, VerificationError, WireError
from exchange.ids import NodeId, Topic
from exchange.keys import EncryptionKey
from exchange.seal import (
    Opened,
    SignatureChecked,
    check_signature,
    open_verified,
    verify_checked,
)
from exchange.topics import MessageType
from exchange.trust import TrustList
from nodes.rules import Drop, Incoming, Rule, Skip, apply
from nodes.store.base import (
    AuditAction,
    AuditEvent,
    MessageKey,
    QuarantineEntry,
    RetractionOrder,
    StoredRecord,
    TopicPartition,
)

INTERNAL_ERROR = "internal_error"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Kafka's record timestamp type for the broker's clock (0 is CreateTime).
LOG_APPEND_TIME = 1


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
    return QuarantineEntry(
        topic=raw.topic,
        partition=raw.partition,
        offset=raw.offset,
        reason=reason,
        detail=detail,
        raw=raw.value or b"",
        received_at=now,
        message_id=message_id,
        sender=sender,
    )


Opening = Opened | QuarantineEntry | Skipped


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
    payload: dict[str, Any] | None


#: What :func:`decide` takes for one record.
Ready = OpenedRecord | QuarantineEntry | Skipped

OWN_MESSAGE = "own_message"


def _signed_by_own_key(value: bytes, ctx: PipelineContext) -> bool:
    """Whether the record names one of this node's own signing keys (not verified: a record
    that only claims it is skipped by this node and still refused by every other)."""
    try:
        return decode_signed(value)[2] in ctx.skip_key_ids
    except ExchangeError:
        return False  # open_record says why it is bad


def own_message(raw: RawRecord, ctx: PipelineContext) -> Skipped | None:
    """Skipped as ``own_message`` when ``ctx.skip_key_ids`` names the record's key (cheap:
    the SignedEnvelope's framing only, nothing verified or decoded), else None."""
    if ctx.skip_key_ids and raw.value is not None and _signed_by_own_key(raw.value, ctx):
        return Skipped(raw.topic, raw.partition, raw.offset, OWN_MESSAGE, None)
    return None


Checked = SignatureChecked | QuarantineEntry | Skipped


def check_raw(raw: RawRecord, ctx: PipelineContext, now: datetime) -> Checked:
    """Step 1a: the record's signature (``exchange.seal.check_signature``), or the quarantine
    entry saying why not. Never raises. Mostly libsodium time, which releases the GIL: the
    consumer runs this in a thread pool while the event loop's thread runs step 1b."""
    try:
        if raw.value is None:
            raise WireError(Reason.MALFORMED, "record has no value (tombstone)")
        own = own_message(raw, ctx)
        if own is not None:
            return own
        return check_signature(raw.value, ctx.trust)
    except ExchangeError as exc:
        return quarantine(raw, exc.reason.value, exc.detail, now)
    except Exception as exc:  # a bug must not stop the node: quarantine, the caller logs
        return quarantine(raw, INTERNAL_ERROR, f"{type(exc).__name__}: {exc}", now)


def open_checked(raw: RawRecord, checked: Checked, ctx: PipelineContext, now: datetime) -> Opening:
    """Step 1b: the rest of the verification, then decrypt, decode and validate. Never raises."""
    if isinstance(checked, QuarantineEntry | Skipped):
        return checked
    try:
        ts = raw.timestamp_ms
        if raw.timestamp_type is not None and raw.timestamp_type != LOG_APPEND_TIME:
            raise VerificationError(
                Reason.NOT_APPEND_TIME,
                f"{raw.topic} stamps records with the producer's time, not the broker's: set"
                " message.timestamp.type=LogAppendTime on the topic",
                field="timestamp",
            )
        verified = verify_checked(
            checked,
            topic=Topic(raw.topic),
            key=raw.key,
            trust=ctx.trust,
            now=now,
            appended_at=None if ts is None else _EPOCH + timedelta(milliseconds=ts),
            max_skew=ctx.max_skew,
        )
        if verified.envelope.version != WIRE_VERSION:
            # v1 bodies are not bound to their envelope (issue 9): read, never accepted
            raise VerificationError(
                Reason.OBSOLETE_WIRE_VERSION,
                f"wire v{verified.envelope.version} record; this node accepts v{WIRE_VERSION}",
                field="envelope",
            )
        return open_verified(verified, now=now, reader=ctx.node, decryption_key=ctx.decryption_key)
    except ExchangeError as exc:
        return quarantine(raw, exc.reason.value, exc.detail, now)
    except Exception as exc:  # a bug must not stop the node: quarantine, the caller logs
        return quarantine(raw, INTERNAL_ERROR, f"{type(exc).__name__}: {exc}", now)


def open_raw(raw: RawRecord, ctx: PipelineContext, now: datetime) -> Opening:
    """Verify and open one record (steps 1a and 1b), or the quarantine entry saying why not."""
    return open_checked(raw, check_raw(raw, ctx, now), ctx, now)


def ready(opening: Opening | OpenedRecord) -> Ready:
    """An opened record reduced to its :class:`OpenedRecord` (others pass unchanged)."""
    if not isinstance(opening, Opened):
        return opening
    verified = opening.verified
    env = verified.envelope
    payload = opening.payload
    handling = env.handling
    return OpenedRecord(
        message_id=env.message_id,
        message_type=env.message_type,
        key=env.key,
        sender=env.sender,
        created_at=env.created_at,
        sequence=env.sequence,
        recipients=env.recipients,
        tlp=str(handling.tlp.value),
        handling_code=str(handling.code.value),
        envelope_hash=verified.envelope_hash,
        payload=None if payload is None else payload.model_dump(mode="json"),
    )


def open_ready(raw: RawRecord, ctx: PipelineContext, now: datetime) -> Ready:
    """:func:`open_raw` then :func:`ready`. Never raises."""
    opening = open_raw(raw, ctx, now)
    try:
        return ready(opening)
    except Exception as exc:  # a bug must not stop the node: quarantine, the caller logs
        return quarantine(raw, INTERNAL_ERROR, f"{type(exc).__name__}: {exc}", now)


# --- the wire form between processes: builtins only, cheap to pickle -----------------------

#: One record into a worker: (topic, partition, offset, key, value, timestamp ms, its type).
RawWire = tuple[str, int, int, bytes | None, bytes | None, int | None, int | None]
#: One record back: ("q", reason, detail) | ("s", reason) | ("o", facts...).
ReadyWire = tuple[Any, ...]

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
        item.payload,
    )


def from_wire(raw: RawRecord, wire: ReadyWire, now: datetime) -> Ready:
    """The :class:`Ready` that :func:`to_wire` turned into ``wire``, for ``raw``."""
    tag = wire[0]
    if tag == _QUARANTINED:
        return quarantine(raw, wire[1], wire[2], now)
    if tag == _SKIPPED:
        return Skipped(raw.topic, raw.partition, raw.offset, wire[1], None)
    _, mid, mtype, key, sender, created, seq, recips, tlp, code, ehash, payload = wire
    return OpenedRecord(
        UUID(bytes=mid),
        MessageType(mtype),
        key,
        sender,
        created,
        seq,
        recips,
        tlp,
        code,
        ehash,
        payload,
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
    return StoredRecord(
        message_id=opened.message_id,
        topic=raw.topic,
        partition=raw.partition,
        offset=raw.offset,
        sender=opened.sender,
        message_type=opened.message_type.value,
        key=opened.key,
        sequence=opened.sequence,
        created_at=opened.created_at,
        received_at=item.received_at,
        category=item.category,
        tlp=opened.tlp,
        handling_code=opened.handling_code,
        recipients=opened.recipients,
        payload=item.payload or {},
        envelope_hash=opened.envelope_hash,
        expires_at=item.expires_at,
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
