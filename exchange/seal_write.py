"""Sealing: encode, (encrypt,) sign a payload into a Kafka record value.

Record value = SignedEnvelope single-object encoding (see exchange.codec)::

    C3 01 | fp(SignedEnvelope) | len | envelope bytes | len | Ed25519 signature (64) | len | key_id

``envelope bytes`` = Envelope single-object encoding (see exchange.envelope); the
signature covers exactly those bytes; envelope_hash = SHA-256 of them. The Kafka
record key is the UTF-8 of ``Envelope.key``. ``created_at`` travels truncated to the
millisecond; the message id is a UUIDv7 of that time unless the caller assigned one.
With recipients the body is encrypted (wire v2: bound to the digest of the envelope's
header, see exchange.crypto). What a reader checks is in :mod:`exchange.seal_check` and
:mod:`exchange.seal_open`; the placement and handling rules both sides apply in
:mod:`exchange.seal_rules`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from exchange import codec, crypto, models
from exchange.chain import Link
from exchange.crypto import Entropy, Recipient
from exchange.envelope import Envelope, encode_envelope, header_digest
from exchange.errors import InputError, Reason
from exchange.ids import NodeId, Topic
from exchange.keys import SigningKey
from exchange.models import Handling, Payload, encode_payload
from exchange.seal_rules import _handling_problem, _sha256, _type_allowed
from exchange.topics import MessageType
from exchange.trust import TrustList
from exchange.uuid7 import uuid7

__all__ = ["Sealed", "encode_payload", "seal", "seal_encoded"]


@dataclass(frozen=True, slots=True)
class Sealed:
    """A sealed record: Kafka value and key, the envelope, and its hash for the chain."""

    value: bytes
    key: bytes
    envelope: Envelope
    envelope_hash: bytes


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
