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

What is kept: per chain, columns (sequence, timestamp, partition, offset, message id,
previous and own hash: 112 bytes a verified record, no object per record) until
``run_records`` records are held; then every chain's columns go to a scratch file
(:mod:`exchange.audit.spill`), sorted by sequence, and memory starts again.
:meth:`ChainChecker.finish` reads each chain back in windows of ascending sequences
and walks them in order, carrying from one window to the next only the next sequence
expected and the last sequence's hashes. Message ids are checked for repeats per
sender through hashed bucket files, one bucket in memory at a time. So memory holds a
run of records, then a window, whatever the history's length or its longest chain.
Detail (places, hashes in words) is built at :meth:`ChainChecker.finish`, for
violations only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple

from exchange.audit.chains import HASH, NO_HASH, NO_MID, Block, Columns, MessageId, mid_text
from exchange.audit.listing import Listing
from exchange.audit.spill import IdBuckets, Spill

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


#: How many violations a replay lists in full; more are counted by kind (refused records
#: past it as they arrive, the rest at the end: :class:`~exchange.audit.listing.Listing`).
MAX_LISTED = 100_000
#: The longest reason text a listed violation keeps.
MAX_DETAIL = 500


#: Verified records held in memory (112 bytes each) before they go to scratch files.
RUN_RECORDS = 1_000_000


class ChainChecker:
    """Feed it summaries with :meth:`add` (or blocks with :meth:`add_block`);
    :meth:`finish` returns the sorted violations.

    It keeps per (sender, topic) only what the chain checks need, in columns
    (:class:`Columns`, 112 bytes a record), moved to scratch files under ``spill_dir``
    (the system's temporary directory by default) each time ``run_records`` (default
    :data:`RUN_RECORDS`, read when the checker is made) are held;
    detail is built only for records that end up in a violation.
    """

    def __init__(
        self,
        *,
        anchored: bool = False,
        max_listed: int = MAX_LISTED,
        run_records: int | None = None,
        spill_dir: str | Path | None = None,
    ) -> None:
        self.anchored = anchored
        self.max_listed = max_listed
        self.run_records = RUN_RECORDS if run_records is None else run_records
        #: Record violations past ``max_listed``, counted by kind but not kept: a flood of
        #: garbage on the bus must not grow the auditor's memory without bound.
        self.unlisted: Counter[str] = Counter()
        self._violations: list[Violation] = []
        self._numbers: dict[tuple[str, str], int] = {}  # every chain seen, numbered
        self._senders: dict[str, int] = {}
        self._chains: dict[tuple[str, str], Columns] = {}  # the chains' records in memory
        self._held = 0
        self._spill = Spill(spill_dir)
        self._ids = IdBuckets(spill_dir)
        # ids that are not 16 bytes (text, from hand-made summaries): per sender, in memory
        self._text_ids: dict[str, set[str]] = {}
        self._dup_text: set[tuple[str, str]] = set()
        self._finished = False

    def _chain(self, sender: str, topic: str) -> Columns:
        key = (sender, topic)
        chain = self._chains.get(key)
        if chain is None:
            chain = self._chains[key] = Columns()
            if key not in self._numbers:
                self._numbers[key] = len(self._numbers)
                if sender not in self._senders:
                    self._senders[sender] = len(self._senders)
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
        c = self._chain(sender, s.topic)
        i = len(c.sequences)
        c.message_ids += NO_MID  # a summary's id is text: kept aside, checked in memory
        c.odd_mids[i] = mid
        if mid is not None:
            ids = self._text_ids.setdefault(sender, set())
            if mid in ids:
                self._dup_text.add((sender, mid))
            else:
                ids.add(mid)
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
        c.previous += NO_HASH if prev is None else prev
        c.hashes += h
        self._held += 1
        if self._held >= self.run_records:
            self._spill_all()

    def add_many(self, summaries: Iterable[RecordSummary]) -> None:
        """Take many summaries into account."""
        for s in summaries:
            self.add(s)

    def add_block(self, b: Block) -> None:
        """Take a worker's :class:`Block` of verified records into account."""
        c = self._chain(b.sender, b.topic)
        before = len(c)
        c.extend(b)
        self._held += len(c) - before
        if self._held >= self.run_records:
            self._spill_all()

    def _spill_all(self) -> None:
        """Move every chain's columns to the scratch files, and their ids to the buckets."""
        for key, c in self._chains.items():
            self._file_ids(key[0], c)
            self._spill.dump(self._numbers[key], c)
        self._chains = {}
        self._held = 0

    def _file_ids(self, sender: str, c: Columns) -> None:
        self._ids.add(self._senders[sender], c.message_ids, c.odd_mids)

    @property
    def chains(self) -> int:
        """How many (sender, topic) chains were seen."""
        return len(self._numbers)

    @property
    def spilled(self) -> int:
        """How many verified records went to the scratch files so far."""
        return self._spill.records

    @property
    def held(self) -> int:
        """How many verified records are held in memory."""
        return self._held

    def finish(self, anchored_topics: Collection[str] = ()) -> list[Violation]:
        """Run the per-chain checks and return every violation, sorted by place and kind.

        ``anchored_topics``: topics read from a point after their true beginning (old
        records deleted by retention), where chains need not start at sequence 1. Runs
        once (the ids are filed for the duplicate check as it goes): RuntimeError after.
        """
        if self._finished:
            raise RuntimeError("ChainChecker.finish() runs once")
        self._finished = True
        found = Listing(self.max_listed, self.unlisted)
        found.extend(self._violations)
        if self._spill.chains:
            self._spill_all()  # then every chain is read back from its file, in windows
        else:
            for (sender, _), c in self._chains.items():
                self._file_ids(sender, c)
        dups, left_out = self._ids.repeats(self.max_listed)
        if left_out:
            self.unlisted[ChainKind.DUPLICATE_MESSAGE_ID] += left_out
        entries: dict[tuple[str, MessageId], list[tuple[tuple[int, str, int, int], bytes]]] = {}
        for key, number in self._numbers.items():
            sender, topic = key
            in_memory = self._chains.get(key)
            windows = self._spill.windows(number) if in_memory is None else [in_memory]
            walk = _ChainWalk(sender, topic, self.anchored or topic in anchored_topics, found)
            for c in windows:
                walk.walk(c)
                if dups or self._dup_text:
                    self._collect_duplicates(sender, topic, c, dups, entries)
        if entries:
            found.extend(_duplicates(entries))
        return found.listed()

    def close(self) -> None:
        """Remove the scratch files now (they are removed when the checker is collected too)."""
        self._spill.close()
        self._ids.close()

    def _collect_duplicates(
        self,
        sender: str,
        topic: str,
        c: Columns,
        dups: set[bytes],
        entries: dict[tuple[str, MessageId], list[tuple[tuple[int, str, int, int], bytes]]],
    ) -> None:
        """The places of ``c``'s records whose id is one of ``dups`` (or a repeated text id)."""
        sid = self._senders[sender]
        key = IdBuckets.key
        for i in range(len(c)):
            mid = c.mid(i)
            if mid is None:
                continue
            if isinstance(mid, bytes):
                if key(sid, mid) not in dups:
                    continue
            elif (sender, mid) not in self._dup_text:
                continue
            place = (c.timestamps[i], topic, c.partitions[i], c.offsets[i])
            found = entries.setdefault((sender, mid), [])
            found.append((place, c.hash(i)))
            if len(found) > 2 * self.max_listed + 2:
                self._trim_places(found)

    def _trim_places(self, found: list[tuple[tuple[int, str, int, int], bytes]]) -> None:
        """One id re-sent without end: keep its first place (the one the others are
        duplicates of) and the ``max_listed`` others a listing could show (the first by
        topic, partition and offset); count the rest."""
        first = min(found, key=lambda e: e[0])
        found.remove(first)
        found.sort(key=lambda e: e[0][1:])
        self.unlisted[ChainKind.DUPLICATE_MESSAGE_ID] += len(found) - self.max_listed
        found[self.max_listed :] = []
        found.insert(0, first)


def _duplicates(
    entries: dict[tuple[str, MessageId], list[tuple[tuple[int, str, int, int], bytes]]],
) -> Iterator[Violation]:
    for (sender, mid), found in entries.items():
        found.sort(key=lambda e: e[0])
        (_, topic, partition, offset), first_hash = found[0]
        text = mid_text(mid)
        for (_, t, p, o), h in found[1:]:
            note = "identical bytes (a re-send)" if h == first_hash else "different content"
            yield Violation(
                t,
                p,
                o,
                ChainKind.DUPLICATE_MESSAGE_ID,
                f"message id {text} first seen at {_where(topic, partition, offset)}: {note}",
                sender,
                text,
            )


class _ChainWalk:
    """Forks, gaps and breaks of one chain, walking its sequences in order, a window of
    sequences at a time (:meth:`walk`, each window's above the last one's).

    Between windows it keeps the next sequence expected and the distinct records of the
    last sequence seen: their hashes, and the first one's hash and place (for a break's
    reason), so that a gap, a fork or a break across two windows reads as in one.
    """

    def __init__(self, sender: str, topic: str, anchored: bool, out: Listing) -> None:
        self.sender, self.topic, self.anchored = sender, topic, anchored
        self.chain = f"{sender} on {topic}"
        self.out = out
        self.expected: int | None = None
        self.linked: set[bytes] = set()  # hashes of the last sequence's distinct records
        self.first: tuple[bytes, str] = (NO_HASH, "")  # its first record: hash, place

    def walk(self, c: Columns) -> None:
        """The checks over window ``c`` (every record of each sequence it has)."""
        sender, topic, chain = self.sender, self.topic, self.chain
        out = self.out

        def at(i: int, kind: str, reason: str) -> None:
            out.append(
                Violation(
                    topic,
                    c.partitions[i],
                    c.offsets[i],
                    kind,
                    reason,
                    sender,
                    mid_text(c.mid(i)),
                )
            )

        def where(i: int) -> str:
            return _where(topic, c.partitions[i], c.offsets[i])

        expected = self.expected
        carried = expected is not None  # the sequence before is in an earlier window
        before: list[int] = []  # the distinct records of sequence seq - 1 in c, if seen
        hashes, previous, no_previous = c.hashes, c.previous, c.no_previous
        columns_only = not (c.odd_hashes or c.odd_previous)
        for seq, idx in c.groups():
            if expected is None:
                expected = seq if self.anchored else 1
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
            elif (before or carried) and seq == expected:
                if columns_only and len(before) == 1 and len(idx) == 1:  # the common case
                    i, j = idx[0], before[0]
                    if i not in no_previous and (
                        previous[HASH * i : HASH * i + HASH] == hashes[HASH * j : HASH * j + HASH]
                    ):
                        before, expected = idx, seq + 1
                        continue
                if before:
                    linked = {c.hash(j) for j in before}
                    p = min(before, key=c.order)
                    first = (c.hash(p), where(p))
                else:
                    linked, first = self.linked, self.first
                for i in idx:
                    if c.previous_hash(i) not in linked:
                        at(
                            i,
                            ChainKind.CHAIN_BREAK,
                            f"previous hash {_short(c.previous_hash(i))} of sequence {seq} of "
                            f"{chain} is not the hash of sequence {seq - 1} "
                            f"({_short(first[0])} at {first[1]})",
                        )
            before, expected, carried = idx, seq + 1, False
        self.expected = expected
        if before:
            p = min(before, key=c.order)
            self.linked = {c.hash(j) for j in before}
            self.first = (c.hash(p), where(p))
