"""The recipe: seal a payload into a Kafka record value, and verify / open one.

Record value = SignedEnvelope single-object encoding (see exchange.codec)::

    C3 01 | fp(SignedEnvelope) | len | envelope bytes | len | Ed25519 signature (64) | len | key_id

``envelope bytes`` = Envelope single-object encoding (see exchange.envelope); the
signature covers exactly those bytes; envelope_hash = SHA-256 of them. The Kafka
record key is the UTF-8 of ``Envelope.key``.

Verification order (the hot path; nothing is decoded before the signature holds):
parse SignedEnvelope -> look up key_id (UNKNOWN_KEY) -> Ed25519 verify
(BAD_SIGNATURE) -> decode Envelope -> sender owns the key (UNKNOWN_SENDER,
SENDER_KEY_MISMATCH) -> key valid at the record's append time (REVOKED_KEY,
KEY_NOT_VALID_AT_TIME) -> topic, record key, type on topic (WRONG_TOPIC, WRONG_KEY,
TYPE_NOT_ALLOWED) -> created_at within max_skew of the append time, both ways
(FROM_THE_FUTURE, BACKDATED) -> the UUIDv7 time of the message id agrees with
created_at (ID_TIME_MISMATCH) -> sequence 1 exactly when previous_hash is null
(MALFORMED) -> handling consistent (HANDLING_INCONSISTENT) -> the wrapped keys'
recipients equal ``recipients`` (WRAPPED_KEYS_MISMATCH).

Time: the append time is the Kafka record timestamp of a topic created with
``message.timestamp.type=LogAppendTime`` (exchange.bus.ensure_topics): the broker's
clock, which no sender can set. ``created_at`` is only the sender's claim; a key
revoked at T signs nothing appended after T, whatever ``created_at`` says. Without an
append time (a record not read from Kafka) keys are judged at ``created_at`` and
``created_at`` must not be after ``now + max_skew``.

Opening (wire v2): the body opens only under the digest of this envelope's header
(BODY_NOT_BOUND otherwise) and to the content key the envelope commits to
(KEY_COMMITMENT_MISMATCH); see exchange.crypto. Wire v1 records (``Envelope.version
== 1``) are verified alike and opened with the v1 recipe; whether to accept them is the
caller's policy (a node refuses them: OBSOLETE_WIRE_VERSION).

Signatures are checked under ZIP-215 (exchange.crypto, docs/signature-rule.md). Measured
(tests/bench/bench_wire.py, 2026-11-30, one loaded 2-core machine): verify_record runs at
about 1.07x the rate of the bare libsodium verify on a 1 KB alert; opening in batches of
256 (:func:`check_signatures`, then :func:`verify_checked` and :func:`open_verified` per
record) at about 1.0x bare libsodium verify + payload decode, against 0.70x for
:func:`open_record` one by one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Self
from uuid import UUID

from exchange import codec, crypto, models
from exchange.chain import Link
from exchange.crypto import EncryptedBody, Entropy, Recipient
from exchange.envelope import Envelope, decode_envelope, encode_envelope, header_digest
from exchange.errors import (
    ConfidentialityError,
    ExchangeError,
    InputError,
    Reason,
    VerificationError,
    WireError,
)
from exchange.ids import KeyId, NodeId, Topic
from exchange.keys import EncryptionKey, SigningKey
from exchange.models import Handling, HandlingCode, Payload, Tlp, encode_payload
from exchange.topics import ALLOWED_TYPES, TOPIC_VERSION, MessageType, TopicKind
from exchange.trust import KeyEntry, TrustList
from exchange.uuid7 import uuid7

__all__ = [
    "Opened",
    "Sealed",
    "SignatureChecked",
    "Verified",
    "check_signature",
    "check_signatures",
    "encode_payload",
    "open_record",
    "open_verified",
    "seal",
    "seal_encoded",
    "verify_checked",
    "verify_record",
]

DEFAULT_MAX_SKEW = timedelta(minutes=5)
#: How much earlier than ``created_at`` the time inside a message id may be: a node
#: assigns the id when it accepts a message and seals it when it publishes, which a bus
#: outage may delay. Never later than ``created_at + max_skew``.
MAX_ID_AGE = timedelta(days=7)
_MAX_ID_AGE_MS = MAX_ID_AGE // timedelta(milliseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_sha256 = hashlib.sha256
# The only way to make a SignatureChecked or a Verified (their constructors raise).
_new_checked = tuple.__new__
_new_verified = tuple.__new__


@dataclass(frozen=True, slots=True)
class Sealed:
    """A sealed record: Kafka value and key, the envelope, and its hash for the chain."""

    value: bytes
    key: bytes
    envelope: Envelope
    envelope_hash: bytes


class _VerifiedFields(NamedTuple):
    envelope: Envelope
    envelope_bytes: bytes
    envelope_hash: bytes
    key_id: KeyId


def _sealed_only(name: str) -> TypeError:
    return TypeError(
        f"a {name} is made by exchange.seal only, once the checks it stands for have passed"
    )


class Verified(_VerifiedFields):
    """A record whose signature, key, placement, time and handling checked out.

    Only this module makes one (with ``tuple.__new__``): calling ``Verified(...)``,
    ``_make`` or ``_replace`` raises TypeError, so no caller can skip the checks by
    building one. A tuple: one is made per record read, and a frozen dataclass's
    ``__init__`` costs three times as much.
    """

    __slots__ = ()

    def __new__(cls, *args: object, **kwargs: object) -> Self:
        raise _sealed_only("Verified")

    @classmethod
    def _make(cls, iterable: Iterable[Any]) -> Self:  # type: ignore[override]
        raise _sealed_only("Verified")

    def _replace(self, **kwargs: Any) -> Self:
        raise _sealed_only("Verified")

    def __reduce__(self) -> tuple[Any, ...]:
        raise _sealed_only("Verified")  # unpickling would build one anywhere


@dataclass(frozen=True, slots=True)
class Opened:
    """A verified record and its payload; None when addressed to other nodes only."""

    verified: Verified
    payload: Payload | None


_KINDS: dict[str, TopicKind | None] = {}


def _topic_kind(topic: str) -> TopicKind | None:
    """The kind of ``<prefix>.<kind>.v1``, whatever the prefix (memoised)."""
    try:
        return _KINDS[topic]
    except KeyError:
        pass
    head, _, version = topic.rpartition(".")
    kind: TopicKind | None = None
    if version == TOPIC_VERSION:
        try:
            kind = TopicKind(head.rpartition(".")[2])
        except ValueError:
            kind = None
    if len(_KINDS) < 10_000:
        _KINDS[topic] = kind
    return kind


_TYPES_ON: dict[str, frozenset[MessageType]] = {}


def _type_allowed(topic: str, message_type: MessageType) -> bool:
    allowed = _TYPES_ON.get(topic)
    if allowed is None:
        kind = _topic_kind(topic)
        allowed = frozenset() if kind is None else frozenset(ALLOWED_TYPES[kind])
        if len(_TYPES_ON) < 10_000:
            _TYPES_ON[topic] = allowed
    return message_type in allowed


def _handling_problem(handling: Handling, recipients: Sequence[str], encrypted: bool) -> str | None:
    if bool(recipients) != encrypted:
        return "the body is encrypted exactly when there are recipients"
    if handling.tlp is Tlp.RED and not recipients:
        return "TLP:RED needs named recipients"
    if handling.code is HandlingCode.H3:
        if not handling.restriction:
            return "handling code H3 needs a restriction text"
    elif handling.restriction is not None:
        return f"a restriction text is only for H3, not {handling.code.value}"
    return None


def _ms(t: datetime) -> datetime:
    """``t`` truncated to the millisecond, as it travels."""
    return t.replace(microsecond=t.microsecond - t.microsecond % 1000)


def seal(
    payload: Payload,
    *,
    signer: SigningKey,
    sender: NodeId,
    topic: Topic,
    link: Link,
    handling: Handling,
    recipients: Sequence[NodeId] = (),
    trust: TrustList | None = None,
    now: datetime,
    message_id: UUID | None = None,
    key: str | None = None,
    entropy: Entropy | None = None,
) -> Sealed:
    """Encode, (encrypt for ``recipients``,) sign: the record to publish on ``topic``.

    ``entropy``: the encryption's random values, for known-answer tests only.

    Raises InputError for a payload, topic or handling that must not be sent, and
    VerificationError when a recipient has no usable encryption key in ``trust``.
    """
    message_type = models.payload_type(payload)
    natural_key = models.record_key(payload, sender)
    if key is not None and natural_key is not None and key != natural_key:
        raise InputError(
            [("key", f"a {message_type.value} travels under its own key {natural_key!r}")],
            reason=Reason.WRONG_KEY,
        )
    record_key = key if key is not None else natural_key
    if record_key is None:
        raise InputError([("key", f"a {message_type.value} travels under the key it retracts")])
    return seal_encoded(
        encode_payload(payload),
        message_type,
        signer=signer,
        sender=sender,
        topic=topic,
        link=link,
        handling=handling,
        recipients=recipients,
        trust=trust,
        now=now,
        message_id=message_id,
        key=record_key,
        entropy=entropy,
    )


def seal_encoded(
    payload_bytes: bytes,
    message_type: MessageType,
    *,
    signer: SigningKey,
    sender: NodeId,
    topic: Topic,
    link: Link,
    handling: Handling,
    key: str,
    recipients: Sequence[NodeId] = (),
    trust: TrustList | None = None,
    now: datetime,
    message_id: UUID | None = None,
    entropy: Entropy | None = None,
) -> Sealed:
    """:func:`seal` for a payload already validated and encoded (:func:`encode_payload`).

    For the publisher, whose outbox keeps each payload's bytes from the moment it was
    accepted, so publishing re-validates nothing. The caller vouches that
    ``payload_bytes`` is a valid ``message_type`` payload whose own key is ``key``.
    """
    if now.tzinfo is None:
        raise InputError([("now", "must be timezone-aware")])
    if not _type_allowed(topic, message_type):
        raise InputError(
            [("topic", f"{message_type.value} may not travel on {topic}")],
            reason=Reason.TYPE_NOT_ALLOWED,
        )
    recips = tuple(dict.fromkeys(recipients))
    problem = _handling_problem(handling, recips, bool(recips))
    if problem is not None:
        raise InputError([("handling", problem)], reason=Reason.HANDLING_INCONSISTENT)
    created_at = _ms(now)
    mid = message_id or uuid7(created_at)
    envelope = Envelope(
        message_id=mid,
        message_type=message_type,
        topic=topic,
        key=key,
        sender=sender,
        created_at=created_at,
        sequence=link.sequence,
        previous_hash=link.previous_hash,
        recipients=recips,
        handling=handling,
        body=payload_bytes,
    )
    if recips:
        if trust is None:
            raise InputError([("trust", "needed to encrypt for recipients")])
        targets = []
        for r in recips:
            entry = trust.encryption_key(r, created_at)
            targets.append(Recipient(r, entry.key_id, entry.public_key))
        # wire v2: the body is bound to the digest of everything before it
        body = crypto.encrypt_body(payload_bytes, header_digest(envelope), targets, entropy=entropy)
        envelope = envelope._replace(body=body)
    envelope_bytes = encode_envelope(envelope)
    value = codec.encode_signed(envelope_bytes, signer.sign(envelope_bytes), signer.key_id)
    return Sealed(value, envelope.key.encode(), envelope, _sha256(envelope_bytes).digest())


def _refuse(reason: Reason, detail: str, field: str) -> VerificationError:
    return VerificationError(reason, detail, field=field)


class _CheckedFields(NamedTuple):
    envelope_bytes: bytes
    key_id: KeyId
    owner: NodeId
    entry: KeyEntry


class SignatureChecked(_CheckedFields):
    """A record value whose Ed25519 signature holds (step 1 of :func:`verify_record`).

    Made by :func:`check_signature`, :func:`check_signatures` and :func:`check_own` only
    (see :class:`Verified`): :func:`verify_checked` trusts that the signature was checked,
    so a hand-made one would skip it.
    """

    __slots__ = ()

    def __new__(cls, *args: object, **kwargs: object) -> Self:
        raise _sealed_only("SignatureChecked")

    @classmethod
    def _make(cls, iterable: Iterable[Any]) -> Self:  # type: ignore[override]
        raise _sealed_only("SignatureChecked")

    def _replace(self, **kwargs: Any) -> Self:
        raise _sealed_only("SignatureChecked")

    def __reduce__(self) -> tuple[Any, ...]:
        raise _sealed_only("SignatureChecked")


def check_signature(value: bytes, trust: TrustList) -> SignatureChecked:
    """Step 1 of :func:`verify_record`: parse the SignedEnvelope, find the key, verify.

    Nothing is decoded before this holds. For many records, :func:`check_signatures`
    verifies them in one batch check, several times faster.
    """
    envelope_bytes, signature, key_id = codec.decode_signed(value)
    owner, entry = trust.signing_entry(key_id)
    try:
        crypto.verify(entry.public_key, signature, envelope_bytes)
    except VerificationError:
        raise _bad_signature(key_id) from None
    return _new_checked(SignatureChecked, (envelope_bytes, entry.key_id, owner, entry))


def _bad_signature(key_id: str) -> VerificationError:
    return _refuse(
        Reason.BAD_SIGNATURE, f"signature does not verify with key {key_id}", "signature"
    )


def check_signatures(
    values: Sequence[bytes], trust: TrustList | Sequence[TrustList]
) -> list[SignatureChecked | ExchangeError]:
    """:func:`check_signature` of each value, in order, with ONE batch verification.

    Each value is parsed and its key looked up first (an error here is that value's
    verdict: MALFORMED, UNKNOWN_KEY ...); the signatures of the rest are verified together
    (``crypto.verify_many``). Under ZIP-215 each verdict is that of a single check, so
    exactly the bad signatures come back as BAD_SIGNATURE, whatever else shares the batch.
    ``trust``: one list for all, or one per value (an auditor judging each record by the
    list in force at its time). Never raises ExchangeError: it is returned in its place.
    The native batch check releases the GIL, so threads can run this side by side.
    """
    lists = [trust] * len(values) if isinstance(trust, TrustList) else trust
    out: list[SignatureChecked | ExchangeError | None] = []
    todo: list[int] = []
    items: list[tuple[bytes, bytes, bytes]] = []
    keyed: list[tuple[bytes, KeyId, NodeId, KeyEntry]] = []
    decode = codec.decode_signed
    for i, value in enumerate(values):
        try:
            envelope_bytes, signature, key_id = decode(value)
            owner, entry = lists[i].signing_entry(key_id)
        except ExchangeError as exc:
            out.append(exc)
            continue
        out.append(None)
        todo.append(i)
        items.append((entry.public_key, signature, envelope_bytes))
        keyed.append((envelope_bytes, entry.key_id, owner, entry))
    if items:
        for i, ok, fields in zip(todo, crypto.verify_many(items), keyed, strict=True):
            out[i] = _new_checked(SignatureChecked, fields) if ok else _bad_signature(fields[1])
    return out  # type: ignore[return-value]  # every None was replaced above


def check_own(value: bytes, trust: TrustList, known: Container[bytes]) -> SignatureChecked | None:
    """Step 1 for a record this node may have written itself, at the cost of one hash.

    ``known`` holds the envelope hashes of what this node signed (its outbox). When the
    record's envelope hashes to one of them, its bytes are exactly what this node signed,
    so the signature need not be checked again: the SignatureChecked is returned as
    :func:`check_signature` would. None when the hash is not known: then only
    :func:`check_signature` may decide (a record signed with this node's key that it never
    wrote means the key is in someone else's hands).
    """
    envelope_bytes, _signature, key_id = codec.decode_signed(value)
    if _sha256(envelope_bytes).digest() not in known:
        return None
    owner, entry = trust.signing_entry(key_id)
    return _new_checked(SignatureChecked, (envelope_bytes, entry.key_id, owner, entry))


def verify_record(
    value: bytes,
    *,
    topic: Topic | str,
    key: bytes | None,
    trust: TrustList,
    now: datetime,
    appended_at: datetime | None = None,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
) -> Verified:
    """Check a record value (see the module doc for the order); does not touch the body.

    ``key`` is the Kafka record key as received; None (no key) matches no envelope.
    ``appended_at``: the record's Kafka timestamp (LogAppendTime), the time keys are
    judged at. Raises WireError or VerificationError (both ExchangeError), nothing else.
    """
    return verify_checked(
        check_signature(value, trust),
        topic=topic,
        key=key,
        trust=trust,
        now=now,
        appended_at=appended_at,
        max_skew=max_skew,
    )


def verify_checked(
    checked: SignatureChecked,
    *,
    topic: Topic | str,
    key: bytes | None,
    trust: TrustList,
    now: datetime,
    appended_at: datetime | None = None,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
) -> Verified:
    """Step 2 of :func:`verify_record`: decode the Envelope and check everything else."""
    envelope_bytes, key_id, owner, entry = checked
    env = decode_envelope(envelope_bytes)
    if env.sender != owner:
        if env.sender not in trust.members:
            raise _refuse(Reason.UNKNOWN_SENDER, f"{env.sender!r} is not a member", "sender")
        raise _refuse(
            Reason.SENDER_KEY_MISMATCH,
            f"key {key_id} belongs to {owner}, not to the sender {env.sender}",
            "sender",
        )
    created_at = env.created_at
    trust.check_valid(entry, created_at if appended_at is None else appended_at)
    if env.topic != topic:
        raise _refuse(Reason.WRONG_TOPIC, f"written for {env.topic}, read on {topic}", "topic")
    if key is None or env.key.encode() != key:
        raise _refuse(Reason.WRONG_KEY, f"written for key {env.key!r}, read with {key!r}", "key")
    if not _type_allowed(topic, env.message_type):
        raise _refuse(
            Reason.TYPE_NOT_ALLOWED,
            f"{env.message_type.value} may not travel on {topic}",
            "message_type",
        )
    _check_time(env, created_at, now, appended_at, max_skew)
    sequence, previous_hash = env.sequence, env.previous_hash
    if (sequence == 1) != (previous_hash is None) or sequence < 1:
        raise WireError(
            Reason.MALFORMED,
            f"sequence {sequence} with previous_hash"
            f" {'absent' if previous_hash is None else 'present'}",
            field="sequence",
        )
    body = env.body
    encrypted = type(body) is EncryptedBody
    problem = _handling_problem(env.handling, env.recipients, encrypted)
    if problem is not None:
        raise _refuse(Reason.HANDLING_INCONSISTENT, problem, "handling")
    if encrypted:
        _check_wrapped_keys(env.recipients, body)  # type: ignore[arg-type]
    return _new_verified(Verified, (env, envelope_bytes, _sha256(envelope_bytes).digest(), key_id))


def _check_time(
    env: Envelope,
    created_at: datetime,
    now: datetime,
    appended_at: datetime | None,
    max_skew: timedelta,
) -> None:
    """created_at within ``max_skew`` of the append time (or not after ``now`` without one);
    the message id's UUIDv7 time not after created_at + max_skew nor MAX_ID_AGE before it.

    In float milliseconds (datetime arithmetic costs a microsecond a record here)."""
    skew_ms = _SKEW_MS.get(max_skew)
    if skew_ms is None:
        skew_ms = max_skew.total_seconds() * 1000
        if len(_SKEW_MS) < 64:
            _SKEW_MS[max_skew] = skew_ms
    created_ms = created_at.timestamp() * 1000
    if appended_at is None:
        if created_at > now + max_skew:
            raise _refuse(
                Reason.FROM_THE_FUTURE,
                f"created {created_at.isoformat()}, now {now.isoformat()}",
                "created_at",
            )
    else:
        appended_ms = appended_at.timestamp() * 1000
        if created_ms > appended_ms + skew_ms:
            raise _refuse(
                Reason.FROM_THE_FUTURE,
                f"created {created_at.isoformat()}, appended {appended_at.isoformat()}",
                "created_at",
            )
        if created_ms < appended_ms - skew_ms:
            raise _refuse(
                Reason.BACKDATED,
                f"created {created_at.isoformat()}, appended {appended_at.isoformat()}"
                f" (more than {skew_ms / 1000:g} s before)",
                "created_at",
            )
    value = env.message_id.int
    id_ms = value >> 80
    if (value >> 76) & 0xF != 7 or not (
        created_ms - _MAX_ID_AGE_MS <= id_ms <= created_ms + skew_ms
    ):
        raise _refuse(
            Reason.ID_TIME_MISMATCH,
            f"message id {env.message_id} is not a UUIDv7 whose time agrees with"
            f" created {created_at.isoformat()}",
            "message_id",
        )


_SKEW_MS: dict[timedelta, float] = {}


def _check_wrapped_keys(recipients: Sequence[str], body: EncryptedBody) -> None:
    """Exactly one wrapped key per listed recipient, and none for anyone else."""
    wrapped = [w.recipient for w in body.wrapped_keys]
    if len(wrapped) != len(recipients) or set(wrapped) != set(recipients):
        raise _refuse(
            Reason.WRAPPED_KEYS_MISMATCH,
            f"content key wrapped for {sorted(wrapped)}, recipients are {sorted(recipients)}",
            "body.wrapped_keys",
        )


def open_record(
    value: bytes,
    *,
    topic: Topic | str,
    key: bytes | None,
    trust: TrustList,
    now: datetime,
    reader: NodeId,
    decryption_key: EncryptionKey | None,
    appended_at: datetime | None = None,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
) -> Opened:
    """:func:`verify_record`, then decrypt (when addressed to ``reader``), decode and validate.

    Addressed to other nodes only: ``payload`` is None. Listed as a recipient but
    unable to decrypt: ConfidentialityError(DECRYPTION_FAILED). A payload that
    does not decode or validate: WireError.
    """
    verified = verify_record(
        value,
        topic=topic,
        key=key,
        trust=trust,
        now=now,
        appended_at=appended_at,
        max_skew=max_skew,
    )
    return open_verified(verified, now=now, reader=reader, decryption_key=decryption_key)


def open_verified(
    verified: Verified,
    *,
    now: datetime,
    reader: NodeId,
    decryption_key: EncryptionKey | None,
) -> Opened:
    """The rest of :func:`open_record` once the record is verified: decrypt, decode, validate."""
    env = verified.envelope
    body = env.body
    if isinstance(body, EncryptedBody):
        if reader not in env.recipients:
            return Opened(verified, None)
        if decryption_key is None:
            raise ConfidentialityError(
                Reason.DECRYPTION_FAILED, f"{reader} has no decryption key", field="body"
            )
        if env.version == 1:
            data = crypto.decrypt_body(
                body, env.message_id.bytes, reader, decryption_key, version=1
            )
        else:
            data = crypto.decrypt_body(body, header_digest(env), reader, decryption_key)
    else:
        data = body
    _, record = codec.decode(data, expected=env.message_type.value)
    payload = models.from_avro(env.message_type, record, now=now)
    natural_key = models.record_key(payload, env.sender)
    if natural_key is not None and natural_key != env.key:
        # Signed under one key but about another record (an alert keyed by a
        # different alert id): a record can be looked up, and retracted, by key.
        raise _refuse(
            Reason.WRONG_KEY, f"signed under key {env.key!r}, payload's key {natural_key!r}", "key"
        )
    return Opened(verified, payload)
