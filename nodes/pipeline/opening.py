"""Step 1 of the pipeline: verify, decrypt, decode and validate one record (no I/O).

:func:`open_raw` is :func:`check_raw` (the signature: libsodium, which releases the GIL,
so a thread pool runs it) then :func:`open_checked` (the rest, Python-bound). A node's own
records read back from the bus are matched to its outbox instead (:func:`own_claim`,
:func:`open_own`, :func:`refuse_unsent`) or skipped (:func:`own_message`). :func:`ready`
reduces an opened record to the :class:`OpenedRecord` that step 2 needs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Container, Sequence
from datetime import datetime, timedelta
from enum import Enum

from exchange.codec import decode_signed, may_name_key
from exchange.envelope import WIRE_VERSION
from exchange.errors import ExchangeError, Reason, VerificationError, WireError
from exchange.ids import Topic
from exchange.models import Payload
from exchange.seal import (
    Opened,
    SignatureChecked,
    check_own,
    check_signature,
    check_signatures,
    open_verified,
    verify_checked,
)
from nodes.pipeline.records import (
    EPOCH,
    INTERNAL_ERROR,
    LOG_APPEND_TIME,
    OpenedRecord,
    Opening,
    PipelineContext,
    RawRecord,
    Ready,
    Skipped,
    quarantine,
)
from nodes.store.base import (
    QuarantineEntry,
)
from nodes.store.jsontext import JsonText

OWN_MESSAGE = "own_message"


def _signed_by_own_key(value: bytes, ctx: PipelineContext) -> bool:
    """Whether the record names one of this node's own signing keys (not verified: a record
    that only claims it is skipped by this node and still refused by every other)."""
    if not may_name_key(value, ctx.skip_key_ids):
        return False
    try:
        return decode_signed(value)[2] in ctx.skip_key_ids
    except ExchangeError:
        return False  # open_record says why it is bad


def own_key_ids(ctx: PipelineContext) -> frozenset[str]:
    """This node's signing key ids in the trust list in force (it may change live)."""
    if ctx.node not in ctx.trust.members:
        return frozenset()
    return frozenset(k.key_id for k in ctx.trust.member(ctx.node).signing_keys)


def own_claim(raw: RawRecord, key_ids: frozenset[str]) -> bytes | None:
    """The envelope hash of ``raw`` when it names one of ``key_ids`` (this node's own keys;
    the SignedEnvelope's framing only, nothing verified), else None."""
    if not key_ids or raw.value is None or not may_name_key(raw.value, key_ids):
        return None
    try:
        envelope_bytes, _, key_id = decode_signed(raw.value)
    except ExchangeError:
        return None  # open_record says why it is bad
    return hashlib.sha256(envelope_bytes).digest() if key_id in key_ids else None


def open_own(
    raw: RawRecord, ctx: PipelineContext, now: datetime, sent: Container[bytes]
) -> Opening | None:
    """Open a record whose envelope hash is in ``sent`` (this node's outbox) without checking
    its signature again (``exchange.seal.check_own``; everything else is checked as usual),
    or None when it is not one this node sent."""
    if raw.value is None:
        return None
    try:
        checked = check_own(raw.value, ctx.trust, sent)
    except ExchangeError as exc:
        return quarantine(raw, exc.reason.value, exc.detail, now)
    return None if checked is None else open_checked(raw, checked, ctx, now)


def refuse_unsent(raw: RawRecord, opening: Opening | OpenedRecord, now: datetime) -> Opening:
    """A record signed with this node's own key but not in its outbox: if it verified, the
    key signed something this node never sent (a stolen key): quarantined, never stored."""
    if isinstance(opening, Opened):
        envelope = opening.verified.envelope
        mid, sender = envelope.message_id, envelope.sender
    elif isinstance(opening, OpenedRecord):
        mid, sender = opening.message_id, opening.sender
    else:
        return opening
    detail = (
        f"message {mid} verifies under this node's own signing key but is not in its outbox:"
        " this node never sent it (is the key in someone else's hands?)"
    )
    return quarantine(raw, Reason.NOT_IN_OWN_OUTBOX.value, detail, now, mid, sender)


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


def check_raws(raws: Sequence[RawRecord], ctx: PipelineContext, now: datetime) -> list[Checked]:
    """:func:`check_raw` of each record, in order, with one batch signature check for all.

    Tombstones and own records (``ctx.skip_key_ids``) are set apart first, as
    :func:`check_raw` does; the rest are parsed, keyed and verified together. A bad
    record's verdict is that of its own single check (ZIP-215), so exactly the bad ones
    are quarantined, with the reasons :func:`check_raw` gives. Never raises.
    """
    out: list[Checked | None] = [None] * len(raws)
    todo: list[int] = []
    values: list[bytes] = []
    for i, raw in enumerate(raws):
        if raw.value is None:
            out[i] = quarantine(raw, Reason.MALFORMED.value, "record has no value (tombstone)", now)
            continue
        own = own_message(raw, ctx)
        if own is not None:
            out[i] = own
            continue
        todo.append(i)
        values.append(raw.value)
    if todo:
        try:
            verdicts = check_signatures(values, ctx.trust)
        except Exception:  # a bug in the batch: each record on its own says which one
            for i in todo:
                out[i] = check_raw(raws[i], ctx, now)
        else:
            for i, verdict in zip(todo, verdicts, strict=True):
                out[i] = (
                    quarantine(raws[i], verdict.reason.value, verdict.detail, now)
                    if isinstance(verdict, ExchangeError)
                    else verdict
                )
    return out  # type: ignore[return-value]  # every None was replaced above


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
            appended_at=None if ts is None else EPOCH + timedelta(milliseconds=ts),
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


def open_raws(raws: Sequence[RawRecord], ctx: PipelineContext, now: datetime) -> list[Opening]:
    """:func:`open_raw` of each record, the signatures in one batch (:func:`check_raws`)."""
    checked = check_raws(raws, ctx, now)
    return [open_checked(r, c, ctx, now) for r, c in zip(raws, checked, strict=True)]


def payload_text(payload: Payload) -> JsonText:
    """``payload`` as JSON text, its offence category read ahead: the rules and the store's
    ``category`` column read it without parsing the text."""
    category = getattr(payload, "category", None)
    if isinstance(category, Enum):
        category = category.value
    known = None if category is None else {"category": category}
    return JsonText(payload.model_dump_json(), known)


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
        payload=None if payload is None else payload_text(payload),
    )


def open_ready(raw: RawRecord, ctx: PipelineContext, now: datetime) -> Ready:
    """:func:`open_raw` then :func:`ready`. Never raises."""
    opening = open_raw(raw, ctx, now)
    try:
        return ready(opening)
    except Exception as exc:  # a bug must not stop the node: quarantine, the caller logs
        return quarantine(raw, INTERNAL_ERROR, f"{type(exc).__name__}: {exc}", now)


def open_ready_many(raws: Sequence[RawRecord], ctx: PipelineContext, now: datetime) -> list[Ready]:
    """:func:`open_ready` of each record, the signatures in one batch. Never raises."""
    out: list[Ready] = []
    for raw, opening in zip(raws, open_raws(raws, ctx, now), strict=True):
        try:
            out.append(ready(opening))
        except Exception as exc:  # a bug must not stop the node: quarantine, the caller logs
            out.append(quarantine(raw, INTERNAL_ERROR, f"{type(exc).__name__}: {exc}", now))
    return out


# --- the wire form between processes: builtins only, cheap to pickle -----------------------

#: One record into a worker: (topic, partition, offset, key, value, timestamp ms).
