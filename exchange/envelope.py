"""The Envelope: what a sender signs, and its encoding.

Byte layout (schemas/Envelope.avsc, Avro single-object encoding)::

    C3 01 | CRC-64-AVRO fingerprint of Envelope (8 bytes, little-endian) | Avro binary of:
    message_id fixed(16) | message_type enum | topic string | key string | sender string
    | created_at long (ms) | sequence long | previous_hash [null, fixed(32)]
    | recipients array<string> | handling Handling | body [PlainBody, EncryptedBody]

The record on the bus is a SignedEnvelope (``codec.encode_signed``) whose
``envelope`` field holds exactly these bytes; the signature covers them, so a
reader verifies before it decodes and never re-encodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import UUID

from pydantic import ValidationError

from exchange import codec
from exchange.crypto import EncryptedBody, WrappedKey
from exchange.errors import ExchangeError, Reason, VerificationError, WireError
from exchange.ids import KeyId, NodeId, Topic
from exchange.models import Handling
from exchange.topics import MessageType

__all__ = [
    "ENVELOPE",
    "EncryptedBody",
    "Envelope",
    "WrappedKey",
    "decode_envelope",
    "encode_envelope",
    "handling_from_avro",
]

ENVELOPE = "Envelope"
# fastavro's tuple notation names the union branch, sparing it a search.
_PLAIN = "eu.ncp.exchange.PlainBody"
_ENCRYPTED = "eu.ncp.exchange.EncryptedBody"


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded envelope. ``body`` is the payload's single-object bytes or an EncryptedBody."""

    message_id: UUID
    message_type: MessageType
    topic: Topic
    key: str
    sender: NodeId
    created_at: datetime
    sequence: int
    previous_hash: bytes | None
    recipients: tuple[NodeId, ...]
    handling: Handling
    body: bytes | EncryptedBody

    @property
    def encrypted(self) -> bool:
        """Whether the body is encrypted for named recipients."""
        return isinstance(self.body, EncryptedBody)

    def to_avro(self) -> dict[str, Any]:
        """The Envelope record as fastavro expects it."""
        body: tuple[str, dict[str, Any]]
        if isinstance(self.body, EncryptedBody):
            b = self.body
            body = (
                _ENCRYPTED,
                {
                    "ephemeral_public_key": b.ephemeral_public_key,
                    "nonce": b.nonce,
                    "ciphertext": b.ciphertext,
                    "wrapped_keys": [
                        {"recipient": w.recipient, "key_id": w.key_id, "wrapped_key": w.wrapped_key}
                        for w in b.wrapped_keys
                    ],
                },
            )
        else:
            body = _PLAIN, {"payload": self.body}
        h = self.handling
        return {
            "message_id": self.message_id.bytes,
            "message_type": self.message_type.value,
            "topic": self.topic,
            "key": self.key,
            "sender": self.sender,
            "created_at": self.created_at,
            "sequence": self.sequence,
            "previous_hash": self.previous_hash,
            "recipients": list(self.recipients),
            "handling": {
                "tlp": h.tlp.value,
                "code": h.code.value,
                "restriction": h.restriction,
                "source_reliability": h.source_reliability.value,
                "information_reliability": h.information_reliability.value,
            },
            "body": body,
        }


# Handling has few distinct values; decoding shares one validated instance per value.
_HANDLING_CACHE: dict[tuple[Any, ...], Handling] = {}
_HANDLING_CACHE_MAX = 4096


def handling_from_avro(h: dict[str, Any]) -> Handling:
    """A (shared, validated) Handling from its Avro record.

    Raises VerificationError(HANDLING_INCONSISTENT) when the values contradict each
    other (H3 without restriction, a restriction without H3).
    """
    k = (
        h["tlp"],
        h["code"],
        h["restriction"],
        h["source_reliability"],
        h["information_reliability"],
    )
    found = _HANDLING_CACHE.get(k)
    if found is None:
        try:
            found = Handling.model_validate(h)
        except ValidationError as exc:  # Avro checked the enums: left is H3 <-> restriction
            problems = "; ".join(e["msg"] for e in exc.errors(include_url=False))
            raise VerificationError(
                Reason.HANDLING_INCONSISTENT, problems, field="handling"
            ) from None
        if len(_HANDLING_CACHE) < _HANDLING_CACHE_MAX:
            _HANDLING_CACHE[k] = found
    return found


def envelope_from_avro(d: dict[str, Any]) -> Envelope:
    """An Envelope from its decoded Avro record (raises WireError on impossible values)."""
    body = d["body"]
    if "payload" in body:
        parsed_body: bytes | EncryptedBody = body["payload"]
    else:
        parsed_body = EncryptedBody(
            body["ephemeral_public_key"],
            body["nonce"],
            body["ciphertext"],
            tuple(
                WrappedKey(NodeId(w["recipient"]), KeyId(w["key_id"]), w["wrapped_key"])
                for w in body["wrapped_keys"]
            ),
        )
    handling = handling_from_avro(d["handling"])
    return Envelope(
        UUID(bytes=d["message_id"]),
        MessageType(d["message_type"]),
        Topic(d["topic"]),
        d["key"],
        NodeId(d["sender"]),
        d["created_at"],
        d["sequence"],
        d["previous_hash"],
        tuple(d["recipients"]),
        handling,
        parsed_body,
    )


def _generic_encode(envelope: Envelope) -> bytes:
    return codec.encode(ENVELOPE, envelope.to_avro())


def _generic_decode(data: bytes) -> Envelope:
    _, d = codec.decode(data, expected=ENVELOPE)
    try:
        return envelope_from_avro(d)
    except ExchangeError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(Reason.MALFORMED, f"envelope: {exc}") from None


# --- hand-written Avro binary for the current Envelope schema --------------------------------
#
# Measured on our machine, fastavro takes about 9 us to decode an Envelope into a dict
# and 20 us to encode one (with strict checking); the code below does it in about a
# third of that, straight to and from the dataclass. It is used only while the current
# Envelope schema is the one it was written for (_FAST_FINGERPRINT); anything else
# (an older writer schema, a changed current schema) goes through fastavro.
# tests/exchange/test_envelope.py checks it byte for byte against fastavro.

_FAST_FINGERPRINT = bytes.fromhex("5ff15cb32fdd5bff")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_MESSAGE_TYPES = tuple(
    MessageType(v)
    for v in (
        "OffenceAlert",
        "BlacklistDelta",
        "PseudonymQuery",
        "PseudonymResponse",
        "StatisticalIndicator",
        "Retraction",
    )
)
_TLP = ("CLEAR", "GREEN", "AMBER", "AMBER_STRICT", "RED")
_CODE = ("H0", "H1", "H2", "H3")
_SOURCE = ("A", "B", "C", "X")
_INFO = ("ONE", "TWO", "THREE", "FOUR")
_MT_INDEX = {m: i for i, m in enumerate(_MESSAGE_TYPES)}
_TLP_INDEX = {v: i for i, v in enumerate(_TLP)}
_CODE_INDEX = {v: i for i, v in enumerate(_CODE)}
_SOURCE_INDEX = {v: i for i, v in enumerate(_SOURCE)}
_INFO_INDEX = {v: i for i, v in enumerate(_INFO)}
_HEADER: bytes | None = None
_fast: bool | None = None
# Handling by its Avro enum indexes and restriction: decoding skips the symbol look-ups.
_HANDLING_BY_INDEX: dict[tuple[int, int, str | None, int, int], Handling] = {}


def _fast_header() -> bytes | None:
    """The Envelope header when the hand-written codec applies, else None.

    The fingerprint covers the Parsing Canonical Form: field order, types and enum
    symbols, so an equal fingerprint means the layout below is exact.
    """
    global _HEADER, _fast
    if _fast is None:
        ps = codec.REGISTRY.current(ENVELOPE)
        _HEADER = ps.header
        _fast = ps.fingerprint == _FAST_FINGERPRINT
    return _HEADER if _fast else None


_SMALL = {n: bytes([(n << 1) ^ (n >> 63)]) for n in range(-64, 64)}


def _long(n: int) -> bytes:
    small = _SMALL.get(n)
    if small is not None:
        return small
    if not -(1 << 63) <= n < 1 << 63:
        raise ValueError(f"{n} does not fit an Avro long")
    z = ((n << 1) ^ (n >> 63)) & 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _fast_encode(env: Envelope, header: bytes) -> bytes:
    h = env.handling
    parts = [header, env.message_id.bytes, _long(_MT_INDEX[env.message_type])]
    for text in (env.topic, env.key, env.sender):
        raw = text.encode()
        parts += (_long(len(raw)), raw)
    if env.created_at.tzinfo is None:
        raise ValueError("created_at must be timezone-aware")
    parts += (_long((env.created_at - _EPOCH) // _MS), _long(env.sequence))
    if env.previous_hash is None:
        parts.append(b"\x00")
    elif len(env.previous_hash) == 32:
        parts += (b"\x02", bytes(env.previous_hash))
    else:
        raise ValueError("previous_hash must be 32 bytes")
    if env.recipients:
        parts.append(_long(len(env.recipients)))
        for r in env.recipients:
            raw = r.encode()
            parts += (_long(len(raw)), raw)
    parts += (
        b"\x00",
        _long(_TLP_INDEX[h.tlp.value]),
        _long(_CODE_INDEX[h.code.value]),
    )
    if h.restriction is None:
        parts.append(b"\x00")
    else:
        raw = h.restriction.encode()
        parts += (b"\x02", _long(len(raw)), raw)
    parts += (
        _long(_SOURCE_INDEX[h.source_reliability.value]),
        _long(_INFO_INDEX[h.information_reliability.value]),
    )
    body = env.body
    if isinstance(body, EncryptedBody):
        parts.append(b"\x02")
        for field in (body.ephemeral_public_key, body.nonce, body.ciphertext):
            parts += (_long(len(field)), bytes(field))
        if body.wrapped_keys:
            parts.append(_long(len(body.wrapped_keys)))
            for w in body.wrapped_keys:
                for raw in (w.recipient.encode(), w.key_id.encode(), bytes(w.wrapped_key)):
                    parts += (_long(len(raw)), raw)
        parts.append(b"\x00")
    else:
        parts += (b"\x00", _long(len(body)), bytes(body))
    return b"".join(parts)


class _MalformedError(Exception):
    pass


def _read_long(data: bytes, pos: int) -> tuple[int, int]:
    b = data[pos]
    pos += 1
    if b < 0x80:  # one byte: most values in an envelope
        return (b >> 1) ^ -(b & 1), pos
    n = b & 0x7F
    shift = 7
    while b & 0x80:
        if shift > 63:
            raise _MalformedError("varint longer than 10 bytes")
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
    n &= 0xFFFFFFFFFFFFFFFF
    return (n >> 1) ^ -(n & 1), pos


def _read_bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    size, pos = _read_long(data, pos)
    end = pos + size
    if size < 0 or end > len(data):
        raise _MalformedError(f"length {size} at offset {pos} exceeds the data")
    return data[pos:end], end


def _negative_block(n: int) -> int:
    """The item count of an array block written with its byte size (a negative count)."""
    if n == -(1 << 63):  # no positive counterpart (fastavro's C long wraps to an empty block)
        raise _MalformedError("array block count out of range")
    return -n


def _read_strings(data: bytes, pos: int) -> tuple[list[str], int]:
    out: list[str] = []
    while True:
        n, pos = _read_long(data, pos)
        if n == 0:
            return out, pos
        if n < 0:  # a block with its byte size
            n = _negative_block(n)
            _, pos = _read_long(data, pos)
        for _ in range(n):
            raw, pos = _read_bytes(data, pos)
            out.append(raw.decode())


def _enum(symbols: tuple[Any, ...], index: int, field: str) -> Any:
    if not 0 <= index < len(symbols):
        raise _MalformedError(f"{field}: enum index {index} out of range")
    return symbols[index]


def _fixed(data: bytes, pos: int, size: int) -> tuple[bytes, int]:
    end = pos + size
    if end > len(data):
        raise _MalformedError("truncated fixed")
    return data[pos:end], end


def _fast_decode(data: bytes) -> Envelope:
    mid, pos = _fixed(data, 10, 16)
    i, pos = _read_long(data, pos)
    message_type = _enum(_MESSAGE_TYPES, i, "message_type")
    raw, pos = _read_bytes(data, pos)
    topic = raw.decode()
    raw, pos = _read_bytes(data, pos)
    key = raw.decode()
    raw, pos = _read_bytes(data, pos)
    sender = raw.decode()
    ms, pos = _read_long(data, pos)
    created_at = _EPOCH + timedelta(milliseconds=ms)
    sequence, pos = _read_long(data, pos)
    branch, pos = _read_long(data, pos)
    previous_hash: bytes | None = None
    if branch == 1:
        previous_hash, pos = _fixed(data, pos, 32)
    elif branch != 0:
        raise _MalformedError(f"previous_hash: union index {branch}")
    recipients, pos = _read_strings(data, pos)
    tlp, pos = _read_long(data, pos)
    code, pos = _read_long(data, pos)
    branch, pos = _read_long(data, pos)
    restriction: str | None = None
    if branch == 1:
        raw, pos = _read_bytes(data, pos)
        restriction = raw.decode()
    elif branch != 0:
        raise _MalformedError(f"handling.restriction: union index {branch}")
    source, pos = _read_long(data, pos)
    info, pos = _read_long(data, pos)
    handling_key = (tlp, code, restriction, source, info)
    handling = _HANDLING_BY_INDEX.get(handling_key)
    if handling is None:
        handling = handling_from_avro(
            {
                "tlp": _enum(_TLP, tlp, "handling.tlp"),
                "code": _enum(_CODE, code, "handling.code"),
                "restriction": restriction,
                "source_reliability": _enum(_SOURCE, source, "handling.source_reliability"),
                "information_reliability": _enum(_INFO, info, "handling.information_reliability"),
            }
        )
        if len(_HANDLING_BY_INDEX) < _HANDLING_CACHE_MAX:
            _HANDLING_BY_INDEX[handling_key] = handling
    branch, pos = _read_long(data, pos)
    body: bytes | EncryptedBody
    if branch == 0:
        body, pos = _read_bytes(data, pos)
    elif branch == 1:
        eph, pos = _read_bytes(data, pos)
        nonce, pos = _read_bytes(data, pos)
        ciphertext, pos = _read_bytes(data, pos)
        wrapped: list[WrappedKey] = []
        while True:
            n, pos = _read_long(data, pos)
            if n == 0:
                break
            if n < 0:
                n = _negative_block(n)
                _, pos = _read_long(data, pos)
            for _ in range(n):
                recipient, pos = _read_bytes(data, pos)
                key_id, pos = _read_bytes(data, pos)
                wrapped_key, pos = _read_bytes(data, pos)
                wrapped.append(
                    WrappedKey(NodeId(recipient.decode()), KeyId(key_id.decode()), wrapped_key)
                )
        body = EncryptedBody(eph, nonce, ciphertext, tuple(wrapped))
    else:
        raise _MalformedError(f"body: union index {branch}")
    if pos != len(data):
        raise _MalformedError(f"{len(data) - pos} trailing bytes")
    return Envelope(
        UUID(bytes=mid),
        message_type,
        Topic(topic),
        key,
        NodeId(sender),
        created_at,
        sequence,
        previous_hash,
        cast("tuple[NodeId, ...]", tuple(recipients)),
        handling,
        body,
    )


def encode_envelope(envelope: Envelope) -> bytes:
    """The single-object encoding of ``envelope`` (WireError(INVALID_PAYLOAD) if it cannot be)."""
    header = _fast_header()
    if header is None:
        return _generic_encode(envelope)
    try:
        return _fast_encode(envelope, header)
    except (AttributeError, KeyError, TypeError, ValueError, OverflowError) as exc:
        raise WireError(
            Reason.INVALID_PAYLOAD, f"envelope does not fit the schema: {exc}"
        ) from None


def decode_envelope(data: bytes) -> Envelope:
    """Decode an Envelope's single-object bytes.

    Raises WireError(MALFORMED | UNKNOWN_SCHEMA), or VerificationError(HANDLING_INCONSISTENT).
    """
    header = _fast_header()
    if header is None or data[:10] != header:
        return _generic_decode(data)
    try:
        return _fast_decode(data)
    except (_MalformedError, IndexError, UnicodeDecodeError, OverflowError, ValueError) as exc:
        raise WireError(Reason.MALFORMED, f"bad Envelope bytes: {exc}") from None
