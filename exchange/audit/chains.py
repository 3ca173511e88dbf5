"""The chain checks' memory: each (sender, topic) chain's verified records as columns.

What a verification worker sends (:class:`Block`: a few ``bytes`` per batch and
chain) and what :class:`~exchange.audit.checks.ChainChecker` keeps (:class:`Columns`:
``array`` and ``bytearray`` columns, about 100 bytes a record, and a reference to the
message id) are the same columns, so merging a block is a handful of copies. Pure,
no I/O.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from itertools import groupby
from typing import NamedTuple
from uuid import UUID


class Block(NamedTuple):
    """The verified records of one (sender, topic) chain from one batch, column by column.

    What a verification worker sends back instead of one summary per record: a few
    ``bytes`` per batch pickle and merge far more cheaply than a tuple per record.
    ``sequences``, ``timestamps``, ``partitions`` and ``offsets`` are ``array("q")``
    bytes; ``message_ids`` 16 bytes (the UUID) and ``previous_hashes`` /
    ``envelope_hashes`` 32 bytes a record; ``no_previous`` lists the records (by index)
    whose previous hash is null (zeros stand in its place).
    """

    sender: str
    topic: str
    sequences: bytes
    timestamps: bytes
    partitions: bytes
    offsets: bytes
    message_ids: bytes
    previous_hashes: bytes
    envelope_hashes: bytes
    no_previous: tuple[int, ...]


HASH = 32
NO_HASH = bytes(HASH)

#: A message id as kept: the UUID's 16 bytes (from blocks) or the text (from summaries).
MessageId = bytes | str


def mid_text(mid: MessageId | None) -> str | None:
    if isinstance(mid, bytes):
        return str(UUID(bytes=mid))
    return mid


class Columns:
    """One (sender, topic) chain's verified records, in arrival order, column by column.

    About 100 bytes a record in arrays plus a reference to the message id (shared with
    the checker's id set): no object per record.
    """

    __slots__ = (
        "hashes",
        "message_ids",
        "no_previous",
        "odd_hashes",
        "odd_previous",
        "offsets",
        "partitions",
        "previous",
        "sequences",
        "timestamps",
    )

    def __init__(self) -> None:
        self.sequences = array("q")
        self.timestamps = array("q")
        self.partitions = array("q")
        self.offsets = array("q")
        self.message_ids: list[MessageId | None] = []
        self.previous = bytearray()
        self.hashes = bytearray()
        self.no_previous: set[int] = set()
        self.odd_hashes: dict[int, bytes] = {}  # hashes not 32 bytes long, by index
        self.odd_previous: dict[int, bytes] = {}

    def order(self, i: int) -> tuple[int, int, int]:
        """Log order within the chain's topic: timestamp, partition, offset."""
        return (self.timestamps[i], self.partitions[i], self.offsets[i])

    def hash(self, i: int) -> bytes:
        if self.odd_hashes and i in self.odd_hashes:
            return self.odd_hashes[i]
        return bytes(self.hashes[HASH * i : HASH * i + HASH])

    def previous_hash(self, i: int) -> bytes | None:
        if i in self.no_previous:
            return None
        if self.odd_previous and i in self.odd_previous:
            return self.odd_previous[i]
        return bytes(self.previous[HASH * i : HASH * i + HASH])

    def groups(self) -> Iterator[tuple[int, list[int]]]:
        """(sequence, indices of the records with it), by ascending sequence."""
        seqs = self.sequences
        n = len(seqs)
        lo, hi = min(seqs), max(seqs)
        span = hi - lo + 1
        if span <= 2 * n + 1024:  # dense, as chains are: place by sequence, no sort
            first = array("q", [-1]) * span
            more: dict[int, list[int]] = {}
            for i, seq in enumerate(seqs):
                k = seq - lo
                j = first[k]
                if j < 0:
                    first[k] = i
                else:
                    more.setdefault(k, [j]).append(i)
            for k, j in enumerate(first):
                if j >= 0:
                    yield lo + k, more.get(k) or [j]
            return
        ordered = sorted(range(n), key=seqs.__getitem__)
        for seq, group in groupby(ordered, key=seqs.__getitem__):
            yield seq, list(group)

    def distinct(self, idx: list[int]) -> list[int]:
        """One record per distinct envelope (the first in log order), sorted by log order."""
        best: dict[bytes, int] = {}
        for i in idx:
            h = self.hash(i)
            j = best.get(h)
            if j is None or self.order(i) < self.order(j):
                best[h] = i
        return sorted(best.values(), key=self.order)
