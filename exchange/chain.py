"""Per-(sender, topic) hash chain: sequence numbers and previous-envelope hashes.

Each sender numbers its envelopes on a topic 1, 2, 3, ... and puts into each
the SHA-256 of its previous envelope's bytes on that topic (``None`` for
sequence 1). A replay of the topic then shows deletions (a gap), reorderings
and forks (a hash that does not match). :class:`ChainState` is the sender's
side; the publisher persists it (sequence and last hash per topic) so the
chain survives restarts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from exchange.ids import Topic

__all__ = ["ChainState", "Link", "envelope_hash"]

HASH_BYTES = 32


def envelope_hash(envelope_bytes: bytes) -> bytes:
    """SHA-256 of an envelope's exact bytes (its single-object encoding)."""
    return hashlib.sha256(envelope_bytes).digest()


@dataclass(frozen=True, slots=True)
class Link:
    """Where an envelope sits in its sender's chain on one topic."""

    sequence: int
    previous_hash: bytes | None

    def __post_init__(self) -> None:
        if self.sequence < 1:
            raise ValueError("sequence starts at 1")
        if (self.sequence == 1) != (self.previous_hash is None):
            raise ValueError("previous_hash is None exactly for sequence 1")
        if self.previous_hash is not None and len(self.previous_hash) != HASH_BYTES:
            raise ValueError("previous_hash is a 32-byte SHA-256")

    def follows(self, previous: Link, previous_envelope_hash: bytes) -> bool:
        """Whether this link directly follows ``previous``, whose envelope hashed as given."""
        return (
            self.sequence == previous.sequence + 1 and self.previous_hash == previous_envelope_hash
        )


FIRST = Link(1, None)


class ChainState:
    """One sender's next link per topic. Not thread-safe: one publisher owns it."""

    __slots__ = ("_last",)

    def __init__(self, last: Mapping[Topic, tuple[int, bytes]] | None = None) -> None:
        """``last`` maps each topic to (last sequence used, hash of that envelope)."""
        self._last: dict[Topic, tuple[int, bytes]] = dict(last or {})

    def next(self, topic: Topic) -> Link:
        """The link the next envelope on ``topic`` carries."""
        last = self._last.get(topic)
        if last is None:
            return FIRST
        return Link(last[0] + 1, last[1])

    def advance(self, topic: Topic, envelope_hash: bytes) -> Link:
        """Record that :meth:`next`'s link was used by an envelope hashing to ``envelope_hash``.

        Returns the link that was consumed.
        """
        if len(envelope_hash) != HASH_BYTES:
            raise ValueError("envelope_hash is a 32-byte SHA-256")
        link = self.next(topic)
        self._last[topic] = (link.sequence, envelope_hash)
        return link

    def snapshot(self) -> dict[Topic, tuple[int, bytes]]:
        """(last sequence, last hash) per topic, for persisting."""
        return dict(self._last)
