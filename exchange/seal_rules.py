"""What sealing and checking both hold to: clock limits, topic placement, handling.

Writes and reads no bytes. :mod:`exchange.seal_write` refuses to seal, and
:mod:`exchange.seal_open` refuses to accept, a record that breaks these: a message type
on a topic not allowed to carry it (TYPE_NOT_ALLOWED) or handling that contradicts the
recipients and the body (HANDLING_INCONSISTENT). ``DEFAULT_MAX_SKEW`` and ``MAX_ID_AGE``
bound the sender's claimed times (see :mod:`exchange.seal_open`). Also the refusal and
the guard that keeps SignatureChecked and Verified from being built by hand.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import timedelta

from exchange.errors import Reason, VerificationError
from exchange.models import Handling, HandlingCode, Tlp
from exchange.topics import ALLOWED_TYPES, TOPIC_VERSION, MessageType, TopicKind

DEFAULT_MAX_SKEW = timedelta(minutes=5)
#: How much earlier than ``created_at`` the time inside a message id may be: a node
#: assigns the id when it accepts a message and seals it when it publishes, which a bus
#: outage may delay. Never later than ``created_at + max_skew``.
MAX_ID_AGE = timedelta(days=7)
_sha256 = hashlib.sha256


def _sealed_only(name: str) -> TypeError:
    return TypeError(
        f"a {name} is made by exchange.seal only, once the checks it stands for have passed"
    )


def _refuse(reason: Reason, detail: str, field: str) -> VerificationError:
    return VerificationError(reason, detail, field=field)


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
