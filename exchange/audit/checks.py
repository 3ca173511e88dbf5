"""The auditor's checks over a stream of record summaries: pure, no I/O, no clock.

Each record read from the bus is first verified (signature against the trust list as
of the message's time, placement, handling; see :mod:`exchange.audit.verify_pool`) and
reduced to a :class:`RecordSummary` (or, from a worker, a :class:`Block` of many).
:class:`ChainChecker` then takes them in any order and finds:

- every record that failed verification, as a violation whose kind is the
  :class:`~exchange.errors.Reason` code (``bad_signature``, ``revoked_key``, ...);
- per (sender, topic), over all partitions, ordered by sequence number:
  ``sequence_gap`` (a deleted or suppressed message; the missing range is named),
  ``fork`` (two different envelopes with one sequence number) and ``chain_break``
  (``previous_hash`` is not the hash of the envelope with the sequence before);
- ``duplicate_message_id``: one sender's message id twice across the whole replay (a
  byte-identical re-send is reported too, noted "identical bytes", and is not a fork).
  A message is (sender, message id) since wire v2: another member reusing an id is not
  a duplicate of the genuine record (that member cannot make it look replayed).

Only verified records take part in the chain and message-id checks: what failed
verification cannot be attributed to its claimed sender. When the replay starts at
the beginning of the topics (``anchored=False``) every chain must start at sequence 1;
when it starts at a time (``anchored=True``), and on topics whose oldest records are
gone (retention; ``finish(anchored_topics=...)``), the first message seen anchors each
chain.

What is kept: per chain, columns (sequence, timestamp, partition, offset, previous
and own hash) and a reference to the message id, which a set holds once; about 200
bytes a verified record, no object per record. Detail (places, hashes in words) is
built at :meth:`ChainChecker.finish`, for the records in a violation only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from exchange.audit.chains import HASH, NO_HASH, Block, Columns, MessageId, mid_text

__all__ = ["HASH", "Block", "ChainChecker", "ChainKind", "RecordSummary", "Violation"]


class ChainKind(StrEnum):
    """Violation kinds found by the chain checks (verification failures use Reason codes)."""

    SEQUENCE_GAP = "sequence_gap"
    FORK = "fork"
    CHAIN_BREAK = "chain_break"
    DUPLICATE_MESSAGE_ID = "duplicate_message_id"


class RecordSummary(NamedTuple):
    """What the checks need of one record; a NamedTuple so batches pickle cheaply.

    ``timestamp`` is the Kafka record timestamp in milliseconds since the epoch (UTC).
    The envelope fields are None/empty when verification failed (``error_reason`` set),
    except ``sender``, ``message_id`` and ``message_type``, which may then hold what the
    record *claims* (read without trusting it) so that a report can name it.
    """

    topic: str
    partition: int
    offset: int
    timestamp: int
    sender: str | None = None
    message_type: str | None = None
    message_id: str | None = None
    sequence: int = 0
    previous_hash: bytes | None = None
    envelope_hash: bytes | None = None
    recipients: tuple[str, ...] = ()
    tlp: str | None = None
    key_id: str | None = None
    error_reason: str | None = None
    error_detail: str | None = None
    wire_version: int = 2  # the Envelope schema it was written with (1: read, reported)

    @property
    def verified(self) -> bool:
        """Whether the record passed verification."""
        return self.error_reason is None


@dataclass(frozen=True, slots=True)
class Violation:
    """One finding: where (topic, partition, offset), what (kind) and why (reason)."""

    topic: str
    partition: int
    offset: int
    kind: str
    reason: str
    sender: str | None = None
    message_id: str | None = None

    def sort_key(self) -> tuple[str, int, int, str, str]:
        """Reports list violations by place (topic, partition, offset), then kind and reason."""
        return (self.topic, self.partition, self.offset, self.kind, self.reason)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form, keys in a fixed order."""
        return {
            "kind": self.kind,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "sender": self.sender,
            "message_id": self.message_id,
            "reason": self.reason,
        }


def _where(topic: str, partition: int, offset: int) -> str:
    return f"{topic}[{partition}]@{offset}"


def _short(h: bytes | None) -> str:
    return "none" if h is None else h.hex()[:16]


#: How many record violations a replay lists in full; more are counted by kind.
MAX_LISTED = 100_000
#: The longest reason text a listed violation keeps.
MAX_DETAIL = 500


class ChainChecker:
    """Feed it summaries with :meth:`add` (or blocks with :meth:`add_block`);
    :meth:`finish` returns the sorted violations.

    It keeps per (sender, topic) only what the chain checks need, in columns
    (:class:`Columns`, about 100 bytes a record) and every message id once (a set);
    detail is built only for records that end up in a violation.
    """

    def __init__(self, *, anchored: bool = False, max_listed: int = MAX_LISTED) -> None:
        self.anchored = anchored
        self.max_listed = max_listed
        #: Record violations past ``max_listed``, counted by kind but not kept: a flood of
        #: garbage on the bus must not grow the auditor's memory without bound.
        self.unlisted: Counter[str] = Counter()
        self._violations: list[Violation] = []
        self._chains: dict[tuple[str, str], Columns] = {}
        self._ids: dict[str, set[MessageId]] = {}  # per sender: the message ids seen
        self._dup_ids: set[tuple[str, MessageId]] = set()  # (sender, id) seen more than once

    def _ids_of(self, sender: str) -> set[MessageId]:
        ids = self._ids.get(sender)
        if ids is None:
            ids = self._ids[sender] = set()
        return ids

    def _chain(self, sender: str, topic: str) -> Columns:
        key = (sender, topic)
        chain = self._chains.get(key)
        if chain is None:
            chain = self._chains[key] = Columns()
        return chain

    def add(self, s: RecordSummary) -> None:
        """Take one summary into account."""
        if s.error_reason is not None:
            if len(self._violations) >= self.max_listed:
                self.unlisted[s.error_reason] += 1
                return
            claimed = " (sender and message id as claimed, unverified)" if s.sender else ""
            detail = (s.error_detail or s.error_reason)[:MAX_DETAIL]
            self._violations.append(
                Violation(
                    s.topic,
                    s.partition,
                    s.offset,
                    s.error_reason,
                    detail + claimed,
                    s.sender,
                    s.message_id,
                )
            )
            return
        sender, h, prev = s.sender, s.envelope_hash, s.previous_hash
        if sender is None or h is None:
            raise ValueError(f"verified summary without sender or envelope hash: {s!r}")
        mid = s.message_id
        if mid is not None:
            ids = self._ids_of(sender)
            if mid in ids:
                self._dup_ids.add((sender, mid))
            else:
                ids.add(mid)
        c = self._chain(sender, s.topic)
        i = len(c.sequences)
        if prev is None:
            c.no_previous.add(i)
        elif len(prev) != HASH:  # not a SHA-256 (hand-made summaries): kept aside
            c.odd_previous[i], prev = prev, None
        if len(h) != HASH:
            c.odd_hashes[i], h = h, NO_HASH
        c.sequences.append(s.sequence)
        c.timestamps.append(s.timestamp)
        c.partitions.append(s.partition)
        c.offsets.append(s.offset)
        c.message_ids.append(mid)
        c.previous += NO_HASH if prev is None else prev
        c.hashes += h

    def add_many(self, summaries: Iterable[RecordSummary]) -> None:
        """Take many summaries into account."""
        for s in summaries:
            self.add(s)

    def add_block(self, b: Block) -> None:
        """Take a worker's :class:`Block` of verified records into account."""
        raw = b.message_ids
        mids = [raw[i : i + 16] for i in range(0, len(raw), 16)]
        fresh = set(mids)
        sender = b.sender
        ids = self._ids_of(sender)
        if len(fresh) != len(mids):  # an id twice in this very block
            self._dup_ids.update((sender, m) for m, k in Counter(mids).items() if k > 1)
        if not ids.isdisjoint(fresh):
            self._dup_ids.update((sender, m) for m in ids.intersection(fresh))
        ids |= fresh
        c = self._chain(b.sender, b.topic)
        base = len(c.sequences)
        c.sequences.frombytes(b.sequences)
        c.timestamps.frombytes(b.timestamps)
        c.partitions.frombytes(b.partitions)
        c.offsets.frombytes(b.offsets)
        c.message_ids.extend(mids)
        c.previous += b.previous_hashes
        c.hashes += b.envelope_hashes
        c.no_previous.update(base + i for i in b.no_previous)
        if not (len(c.sequences) == len(c.timestamps) == len(c.partitions) == len(c.offsets)):
            raise ValueError(f"block of {b.sender} on {b.topic} has columns of unequal length")
        if len(c.hashes) != HASH * len(c.sequences) or len(c.previous) != len(c.hashes):
            raise ValueError(f"block of {b.sender} on {b.topic} has hashes of the wrong size")

    @property
    def chains(self) -> int:
        """How many (sender, topic) chains were seen."""
        return len(self._chains)

    def finish(self, anchored_topics: Collection[str] = ()) -> list[Violation]:
        """Run the per-chain checks and return every violation, sorted by place and kind.

        ``anchored_topics``: topics read from a point after their true beginning (old
        records deleted by retention), where chains need not start at sequence 1.
        """
        found = list(self._violations)
        for (sender, topic), chain in self._chains.items():
            anchored = self.anchored or topic in anchored_topics
            found.extend(_check_chain(sender, topic, chain, anchored))
        if self._dup_ids:
            found.extend(self._duplicates())
        found.sort(key=Violation.sort_key)
        return found

    def _duplicates(self) -> list[Violation]:
        dups = self._dup_ids
        entries: dict[
            tuple[str, MessageId], list[tuple[tuple[int, str, int, int], bytes, str]]
        ] = {}
        for (sender, topic), c in self._chains.items():
            for i, mid in enumerate(c.message_ids):
                if mid is not None and (sender, mid) in dups:
                    place = (c.timestamps[i], topic, c.partitions[i], c.offsets[i])
                    entries.setdefault((sender, mid), []).append((place, c.hash(i), sender))
        out: list[Violation] = []
        for (_, mid), found in entries.items():
            found.sort(key=lambda e: e[0])
            (_, topic, partition, offset), first_hash, _ = found[0]
            text = mid_text(mid)
            for (_, t, p, o), h, sender in found[1:]:
                note = "identical bytes (a re-send)" if h == first_hash else "different content"
                out.append(
                    Violation(
                        t,
                        p,
                        o,
                        ChainKind.DUPLICATE_MESSAGE_ID,
                        f"message id {text} first seen at {_where(topic, partition, offset)}: "
                        f"{note}",
                        sender,
                        text,
                    )
                )
        return out


def _check_chain(sender: str, topic: str, c: Columns, anchored: bool) -> list[Violation]:
    """Forks, gaps and breaks of one chain, walking its sequences in order."""
    out: list[Violation] = []
    chain = f"{sender} on {topic}"

    def at(i: int, kind: str, reason: str) -> None:
        out.append(
            Violation(
                topic,
                c.partitions[i],
                c.offsets[i],
                kind,
                reason,
                sender,
                mid_text(c.message_ids[i]),
            )
        )

    def where(i: int) -> str:
        return _where(topic, c.partitions[i], c.offsets[i])

    expected: int | None = None
    before: list[int] = []  # the distinct records of sequence seq - 1, if seen
    hashes, previous, no_previous = c.hashes, c.previous, c.no_previous
    columns_only = not (c.odd_hashes or c.odd_previous)
    for seq, idx in c.groups():
        if expected is None:
            expected = seq if anchored else 1
        if len(idx) > 1:  # rare: a fork or a re-send
            idx = c.distinct(idx)
            for i in idx[1:]:
                at(
                    i,
                    ChainKind.FORK,
                    f"sequence {seq} of {chain} has {len(idx)} different envelopes; "
                    f"this one ({_short(c.hash(i))}) differs from {where(idx[0])} "
                    f"({_short(c.hash(idx[0]))})",
                )
        if seq > expected:
            missing = f"{expected}" if seq - 1 == expected else f"{expected}..{seq - 1}"
            at(
                idx[0],
                ChainKind.SEQUENCE_GAP,
                f"sequence {missing} of {chain} missing before sequence {seq}",
            )
        if seq == 1:
            for i in idx:
                if i not in no_previous:
                    at(i, ChainKind.CHAIN_BREAK, f"sequence 1 of {chain} has a previous hash")
        elif before and seq == expected:
            if columns_only and len(before) == 1 and len(idx) == 1:  # the common case
                i, j = idx[0], before[0]
                if i not in no_previous and (
                    previous[HASH * i : HASH * i + HASH] == hashes[HASH * j : HASH * j + HASH]
                ):
                    before, expected = idx, seq + 1
                    continue
            linked = {c.hash(j) for j in before}
            for i in idx:
                if c.previous_hash(i) not in linked:
                    p = min(before, key=c.order)
                    at(
                        i,
                        ChainKind.CHAIN_BREAK,
                        f"previous hash {_short(c.previous_hash(i))} of sequence {seq} of "
                        f"{chain} is not the hash of sequence {seq - 1} "
                        f"({_short(c.hash(p))} at {where(p)})",
                    )
        before, expected = idx, seq + 1
    return out
