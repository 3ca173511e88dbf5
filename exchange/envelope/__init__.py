"""The Envelope: what a sender signs, and its encoding.

Byte layout (schemas/Envelope.avsc, Avro single-object encoding; field by field in
:mod:`exchange.envelope.binary`)::

    C3 01 | CRC-64-AVRO fingerprint of Envelope (8 bytes, little-endian) | Avro binary of:
    message_id fixed(16) | message_type enum | topic string | key string | sender string
    | created_at long (ms) | sequence long | previous_hash [null, fixed(32)]
    | recipients array<string> | handling Handling | body [PlainBody, EncryptedBody]

Wire v2 (the current schema) adds ``key_commitment bytes`` at the end of EncryptedBody;
wire v1 records (schemas/history/1) are still read, as ``Envelope.version == 1``.
The **header digest** (:func:`header_digest`) is SHA-256 of the envelope's bytes up to,
not including, the body union's branch index: ``C3 01 | fingerprint | message_id ..
handling``, in canonical Avro binary (shortest varints) as every Avro encoder writes
it. It is the associated data of the encrypted body (see :mod:`exchange.crypto`).

The record on the bus is a SignedEnvelope (``codec.encode_signed``) whose
``envelope`` field holds exactly these bytes; the signature covers them, so a
reader verifies before it decodes and never re-encodes.

The dataclass and its Avro record form are in :mod:`.model`; :mod:`.binary` encodes
and decodes the current schema by hand, fastavro the rest.
"""

from __future__ import annotations

import hashlib

from exchange import codec
from exchange.crypto import EncryptedBody, WrappedKey
from exchange.envelope import binary
from exchange.envelope.model import ENVELOPE, Envelope, envelope_from_avro, handling_from_avro
from exchange.errors import ExchangeError, Reason, WireError

__all__ = [
    "ENVELOPE",
    "WIRE_VERSION",
    "EncryptedBody",
    "Envelope",
    "WrappedKey",
    "decode_envelope",
    "encode_envelope",
    "handling_from_avro",
    "header_digest",
]

#: The wire version this code writes.
WIRE_VERSION = 2


def _generic_encode(envelope: Envelope) -> bytes:
    return codec.encode(ENVELOPE, envelope.to_avro())


def _generic_decode(data: bytes) -> Envelope:
    _, d = codec.decode(data, expected=ENVELOPE)
    release = codec.REGISTRY.by_fingerprint(data[2:10]).version
    version = WIRE_VERSION if release == "current" else int(release)
    try:
        return envelope_from_avro(d, version)
    except ExchangeError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(Reason.MALFORMED, f"envelope: {exc}") from None


def encode_envelope(envelope: Envelope) -> bytes:
    """The single-object encoding of ``envelope`` (WireError(INVALID_PAYLOAD) if it cannot be)."""
    header = binary.header()
    if header is None:
        return _generic_encode(envelope)
    try:
        return binary.encode(envelope, header)
    except (AttributeError, KeyError, TypeError, ValueError, OverflowError) as exc:
        raise WireError(
            Reason.INVALID_PAYLOAD, f"envelope does not fit the schema: {exc}"
        ) from None


def decode_envelope(data: bytes) -> Envelope:
    """Decode an Envelope's single-object bytes.

    Raises WireError(MALFORMED | UNKNOWN_SCHEMA), or VerificationError(HANDLING_INCONSISTENT).
    """
    header = binary.header()
    if header is None or (data[:10] != header and data[:10] != binary.HEADER_V1):
        return _generic_decode(data)
    try:
        return binary.decode(data)
    except (
        binary.MalformedError,
        IndexError,
        UnicodeDecodeError,
        OverflowError,
        ValueError,
    ) as exc:
        raise WireError(Reason.MALFORMED, f"bad Envelope bytes: {exc}") from None


def header_digest(envelope: Envelope) -> bytes:
    """SHA-256 of the (current-schema) encoding of ``envelope`` before its body.

    What the v2 encrypted body is bound to: message id, type, topic, key, sender,
    created_at, sequence, previous hash, recipients and handling, and the schema's
    fingerprint. Computed from the values (canonical encoding), so sender and receiver
    agree whatever bytes carried them.
    """
    header = binary.header()
    if header is not None:
        try:
            head = binary.encode_head(envelope, header)
        except (AttributeError, KeyError, TypeError, ValueError, OverflowError) as exc:
            raise WireError(
                Reason.INVALID_PAYLOAD, f"envelope does not fit the schema: {exc}"
            ) from None
    else:  # the generic encoder: an empty plain body is the two bytes 00 00 at the end
        head = _generic_encode(envelope._replace(body=b""))[:-2]
    return hashlib.sha256(head).digest()
