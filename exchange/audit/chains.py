"""The chain checks' memory: each (sender, topic) chain's verified records as columns.

What a verification worker sends (:class:`Block`: a few ``bytes`` per batch and
chain) and what :class:`~exchange.audit.checks.ChainChecker` keeps (:class:`Columns`:
``array`` and ``bytearray`` columns, 112 bytes a record, message id included) are the
same columns, so merging a block is a handful of copies, and so is moving a chain to
the checks' scratch file and back (:meth:`Columns.dump`, :meth:`Columns.load`, given
a file by :mod:`exchange.audit.spill`).
"""

from __future__ import annotations

import pickle
from array import array
from collections.abc import Iterator
from itertools import groupby
from typing import BinaryIO, NamedTuple, TypeVar
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


_V = TypeVar("_V")
HASH = 32
NO_HASH = bytes(HASH)
MID = 16
NO_MID = bytes(MID)

#: A message id as kept: the UUID's 16 bytes (from blocks) or the text (from summaries).
MessageId = bytes | str


#: Columns as plain values: the four ``array("q")`` columns' bytes, ids, previous and own
#: hashes, the indices without a previous hash, and the odd hashes, previous hashes and ids.
Parts = tuple[
    bytes,
    bytes,
    bytes,
    bytes,
    bytes,
    bytes,
    bytes,
    list[int],
    dict[int, bytes],
    dict[int, bytes],
    dict[int, "str | None"],
]


def _shifted(odd: dict[int, _V], start: int, stop: int) -> dict[int, _V]:
    return {i - start: v for i, v in odd.items() if start <= i < stop} if odd else {}


def mid_text(mid: MessageId | None) -> str | None:
    if isinstance(mid, bytes):
        return str(UUID(bytes=mid))
    return mid


class Columns:
    """One (sender, topic) chain's verified records, in arrival order, column by column.

    112 bytes a record, all in arrays (the message id's 16 bytes too): no object per
    record. A message id that is not 16 bytes (text or none, from hand-made summaries)
    is kept aside in ``odd_mids``, zeros in its place. :meth:`dump` and :meth:`load`
    move the columns to and from a file as they are, for the checks' spill.
    """

    __slots__ = (
        "hashes",
        "message_ids",
        "no_previous",
        "odd_hashes",
        "odd_mids",
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
        self.message_ids = bytearray()
        self.previous = bytearray()
        self.hashes = bytearray()
        self.no_previous: set[int] = set()
        self.odd_hashes: dict[int, bytes] = {}  # hashes not 32 bytes long, by index
        self.odd_previous: dict[int, bytes] = {}
        self.odd_mids: dict[int, str | None] = {}  # ids not 16 bytes long, by index

    def __len__(self) -> int:
        return len(self.sequences)

    def mid(self, i: int) -> MessageId | None:
        """The message id of record ``i``."""
        if self.odd_mids and i in self.odd_mids:
            return self.odd_mids[i]
        return bytes(self.message_ids[MID * i : MID * i + MID])

    def extend(self, b: Block) -> None:
        """Append a worker's block (checked for columns of equal length)."""
        base = len(self.sequences)
        self.sequences.frombytes(b.sequences)
        self.timestamps.frombytes(b.timestamps)
        self.partitions.frombytes(b.partitions)
        self.offsets.frombytes(b.offsets)
        self.message_ids += b.message_ids
        self.previous += b.previous_hashes
        self.hashes += b.envelope_hashes
        self.no_previous.update(base + i for i in b.no_previous)
        n = len(self.sequences)
        if not (n == len(self.timestamps) == len(self.partitions) == len(self.offsets)):
            raise ValueError(f"block of {b.sender} on {b.topic} has columns of unequal length")
        if len(self.hashes) != HASH * n or len(self.previous) != len(self.hashes):
            raise ValueError(f"block of {b.sender} on {b.topic} has hashes of the wrong size")
        if len(self.message_ids) != MID * n:
            raise ValueError(f"block of {b.sender} on {b.topic} has ids of the wrong size")

    def parts(self) -> Parts:
        """The columns as plain values (what :meth:`dump` writes)."""
        return (
            self.sequences.tobytes(),
            self.timestamps.tobytes(),
            self.partitions.tobytes(),
            self.offsets.tobytes(),
            bytes(self.message_ids),
            bytes(self.previous),
            bytes(self.hashes),
            sorted(self.no_previous),
            self.odd_hashes,
            self.odd_previous,
            self.odd_mids,
        )

    def append_parts(self, parts: Parts) -> None:
        """Append columns given as :meth:`parts` returns them."""
        seqs, times, parts_, offs, mids, prev, hashes, no_prev, odd_h, odd_p, odd_m = parts
        base = len(self.sequences)
        self.sequences.frombytes(seqs)
        self.timestamps.frombytes(times)
        self.partitions.frombytes(parts_)
        self.offsets.frombytes(offs)
        self.message_ids += mids
        self.previous += prev
        self.hashes += hashes
        self.no_previous.update(base + i for i in no_prev)
        self.odd_hashes.update((base + i, v) for i, v in odd_h.items())
        self.odd_previous.update((base + i, v) for i, v in odd_p.items())
        self.odd_mids.update((base + i, v) for i, v in odd_m.items())

    def append_columns(self, other: Columns) -> None:
        """Append ``other``'s records."""
        self.append_parts(other.parts())

    def piece(self, start: int, stop: int) -> Columns:
        """Records ``start`` to ``stop`` (not included), as columns of their own."""
        out = Columns()
        out.sequences = self.sequences[start:stop]
        out.timestamps = self.timestamps[start:stop]
        out.partitions = self.partitions[start:stop]
        out.offsets = self.offsets[start:stop]
        out.message_ids = self.message_ids[MID * start : MID * stop]
        out.previous = self.previous[HASH * start : HASH * stop]
        out.hashes = self.hashes[HASH * start : HASH * stop]
        out.no_previous = {i - start for i in self.no_previous if start <= i < stop}
        out.odd_hashes = _shifted(self.odd_hashes, start, stop)
        out.odd_previous = _shifted(self.odd_previous, start, stop)
        out.odd_mids = _shifted(self.odd_mids, start, stop)
        return out

    def cut(self, k: int) -> Columns:
        """Remove the first ``k`` records and return them, as columns of their own."""
        head, rest = self.piece(0, k), self.piece(k, len(self))
        for name in self.__slots__:
            setattr(self, name, getattr(rest, name))
        return head

    def dump(self, f: BinaryIO) -> None:
        """Write the columns to ``f`` (a private scratch file: pickle, written and read
        by this process only)."""
        pickle.dump(self.parts(), f, protocol=pickle.HIGHEST_PROTOCOL)

    def load(self, f: BinaryIO) -> None:
        """Append the columns :meth:`dump` wrote (one dump) from ``f``."""
        self.append_parts(pickle.load(f))  # noqa: S301  (this process's own scratch file)

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
