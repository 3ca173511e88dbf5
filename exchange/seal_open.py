"""Steps 2 and 3 of reading a record: check the decoded envelope, then open its body.

Reads the envelope bytes a :class:`~exchange.seal_check.SignatureChecked` vouches for
(Envelope single-object encoding, exchange.envelope; layout of the whole record value in
:mod:`exchange.seal_write`) and, once they check out, the body inside: plain payload
bytes, or an EncryptedBody decrypted for the reader (exchange.crypto); the payload is an
Avro single-object encoding of ``message_type`` (exchange.codec).

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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Self

from exchange import codec, crypto, models
from exchange.crypto import EncryptedBody
from exchange.envelope import Envelope, decode_envelope, header_digest
from exchange.errors import ConfidentialityError, Reason, WireError
from exchange.ids import KeyId, NodeId, Topic
from exchange.keys import EncryptionKey
from exchange.models import Payload
from exchange.quickinit import quick_init
from exchange.seal_check import SignatureChecked, check_signature
from exchange.seal_rules import (
    DEFAULT_MAX_SKEW,
    MAX_ID_AGE,
    _handling_problem,
    _refuse,
    _sealed_only,
    _sha256,
    _type_allowed,
)
from exchange.trust import TrustList

__all__ = [
    "Opened",
    "Verified",
    "open_record",
    "open_verified",
    "verify_checked",
    "verify_record",
]

_MAX_ID_AGE_MS = MAX_ID_AGE // timedelta(milliseconds=1)
# The only way to make a Verified (its constructor raises).
_new_verified = tuple.__new__


class _VerifiedFields(NamedTuple):
    envelope: Envelope
    envelope_bytes: bytes
    envelope_hash: bytes
    key_id: KeyId


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


@quick_init
@dataclass(frozen=True, slots=True)
class Opened:
    """A verified record and its payload; None when addressed to other nodes only."""

    verified: Verified
    payload: Payload | None


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
