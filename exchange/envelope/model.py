"""The Envelope as Python sees it: the dataclass, and its Avro record form (fastavro's dicts).

Byte layouts are in :mod:`exchange.envelope` (the package) and :mod:`.binary`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from pydantic import ValidationError

from exchange.crypto import EncryptedBody, WrappedKey
from exchange.errors import Reason, VerificationError
from exchange.ids import KeyId, NodeId, Topic
from exchange.models import Handling
from exchange.topics import MessageType

ENVELOPE = "Envelope"
# fastavro's tuple notation names the union branch, sparing it a search.
_PLAIN = "eu.ncp.exchange.PlainBody"
_ENCRYPTED = "eu.ncp.exchange.EncryptedBody"


class Envelope(NamedTuple):
    """A decoded envelope. ``body`` is the payload's single-object bytes or an EncryptedBody.

    A NamedTuple (immutable, like the frozen dataclass it was): every record read from
    the bus makes one, and a frozen dataclass's ``__init__`` cost a microsecond of the
    auditor's 15 us per record above the signature check; a tuple costs a fifth of that.
    ``_replace`` makes a changed copy.
    """

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
    #: The wire version it was written with: 2 (current), or 1 (read from older records).
    version: int = 2

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
                    "key_commitment": b.key_commitment,
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


def envelope_from_avro(d: dict[str, Any], version: int = 2) -> Envelope:
    """An Envelope from its decoded Avro record (raises WireError on impossible values).

    ``version``: the wire version of the writer schema (1 reads as the current schema,
    with an empty key commitment)."""
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
            body.get("key_commitment", b""),
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
        version,
    )
