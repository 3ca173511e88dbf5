"""The auditor's checks over a stream of record summaries: pure, no I/O, no clock.

Each record read from the bus is first verified (signature against the trust list as
of the message's time, placement, handling; see :mod:`exchange.audit.verify_pool`) and
reduced to a :class:`RecordSummary`. :class:`ChainChecker` then takes the summaries in
any order and finds:

- every record that failed verification, as a violation whose kind is the
  :class:`~exchange.errors.Reason` code (``bad_signature``, ``revoked_key``, ...);
- per (sender, topic), over all partitions, ordered by sequence number:
  ``sequence_gap`` (a deleted or suppressed message; the missing range is named),
  ``fork`` (two different envelopes with one sequence number) and ``chain_break``
  (``previous_hash`` is not the hash of the envelope with the sequence before);
- ``duplicate_message_id`` across the whole replay (a byte-identical re-send is
  reported too, noted "identical bytes", and is not a fork).

Only verified records take part in the chain and message-id checks: what failed
verification cannot be attributed to its claimed sender. When the replay starts at
the beginning of the topics (``anchored=False``) every chain must start at sequence 1;
when it starts at a time (``anchored=True``), and on topics whose oldest records are
gone (retention; ``finish(anchored_topics=...)``), the first message seen anchors each
chain.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple


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


def _order(e: RecordSummary) -> tuple[int, str, int, int]:
    """Log order across partitions: record timestamp, then topic, partition, offset."""
    return (e.timestamp, e.topic, e.partition, e.offset)


def _short(h: bytes | None) -> str:
    return "none" if h is None else h.hex()[:16]


class ChainChecker:
    """Feed it summaries with :meth:`add`; :meth:`finish` returns the sorted violations."""

    def __init__(self, *, anchored: bool = False) -> None:
        self.anchored = anchored
        self._violations: list[Violation] = []
        # (sender, topic) -> sequence -> distinct envelopes seen with that sequence
        self._chains: dict[tuple[str, str], dict[int, list[RecordSummary]]] = {}
        self._ids: dict[str, RecordSummary] = {}
        self._dup_ids: dict[str, list[RecordSummary]] = {}  # message id -> every entry, when > 1

    def add(self, s: RecordSummary) -> None:
        """Take one summary into account."""
        if s.error_reason is not None:
            claimed = " (sender and message id as claimed, unverified)" if s.sender else ""
            self._violations.append(
                Violation(
                    s.topic,
                    s.partition,
                    s.offset,
                    s.error_reason,
                    (s.error_detail or s.error_reason) + claimed,
                    s.sender,
                    s.message_id,
                )
            )
            return
        sender = s.sender
        if sender is None or s.envelope_hash is None:
            raise ValueError(f"verified summary without sender or envelope hash: {s!r}")
        mid = s.message_id
        if mid is not None:
            first = self._ids.get(mid)
            if first is None:
                self._ids[mid] = s
            else:
                self._dup_ids.setdefault(mid, [first]).append(s)
        key = (sender, s.topic)
        chain = self._chains.get(key)
        if chain is None:
            chain = self._chains[key] = {}
        slot = chain.get(s.sequence)
        if slot is None:
            chain[s.sequence] = [s]
            return
        for i, e in enumerate(slot):
            if e.envelope_hash == s.envelope_hash:  # the same envelope again is not a fork
                if _order(s) < _order(e):  # keep the first in log order: deterministic
                    slot[i] = s
                return
        slot.append(s)

    def add_many(self, summaries: Iterable[RecordSummary]) -> None:
        """Take many summaries into account."""
        for s in summaries:
            self.add(s)

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
        for (sender, topic), by_seq in self._chains.items():
            anchored = self.anchored or topic in anchored_topics
            found.extend(self._check_chain(sender, topic, by_seq, anchored))
        for message_id, entries in self._dup_ids.items():
            found.extend(self._duplicates(message_id, entries))
        found.sort(key=Violation.sort_key)
        return found

    def _duplicates(self, message_id: str, entries: list[RecordSummary]) -> list[Violation]:
        entries = sorted(entries, key=_order)
        first = entries[0]
        out: list[Violation] = []
        for e in entries[1:]:
            same = e.envelope_hash == first.envelope_hash
            note = "identical bytes (a re-send)" if same else "different content"
            out.append(
                Violation(
                    e.topic,
                    e.partition,
                    e.offset,
                    ChainKind.DUPLICATE_MESSAGE_ID,
                    f"message id {message_id} first seen at "
                    f"{_where(first.topic, first.partition, first.offset)}: {note}",
                    e.sender,
                    message_id,
                )
            )
        return out

    def _check_chain(
        self, sender: str, topic: str, by_seq: dict[int, list[RecordSummary]], anchored: bool
    ) -> list[Violation]:
        out: list[Violation] = []
        chain = f"{sender} on {topic}"

        def at(e: RecordSummary, kind: str, reason: str) -> None:
            out.append(
                Violation(e.topic, e.partition, e.offset, kind, reason, sender, e.message_id)
            )

        sequences = sorted(by_seq)
        expected = sequences[0] if anchored else 1
        before: list[RecordSummary] | None = None  # the entries of sequence seq - 1, if seen
        for seq in sequences:
            entries = by_seq[seq]
            if len(entries) > 1:  # rare: sort for a deterministic "first"
                entries = sorted(entries, key=_order)
                first = entries[0]
                for e in entries[1:]:
                    at(
                        e,
                        ChainKind.FORK,
                        f"sequence {seq} of {chain} has {len(entries)} different envelopes; "
                        f"this one ({_short(e.envelope_hash)}) differs from "
                        f"{_where(first.topic, first.partition, first.offset)} "
                        f"({_short(first.envelope_hash)})",
                    )
            if seq > expected:
                missing = f"{expected}" if seq - 1 == expected else f"{expected}..{seq - 1}"
                at(
                    entries[0],
                    ChainKind.SEQUENCE_GAP,
                    f"sequence {missing} of {chain} missing before sequence {seq}",
                )
            if seq == 1:
                for e in entries:
                    if e.previous_hash is not None:
                        at(e, ChainKind.CHAIN_BREAK, f"sequence 1 of {chain} has a previous hash")
            elif before is not None and seq == expected:
                if len(before) == 1:
                    ok = before[0].envelope_hash
                    broken = [e for e in entries if e.previous_hash != ok]
                else:
                    hashes = {p.envelope_hash for p in before}
                    broken = [e for e in entries if e.previous_hash not in hashes]
                for e in broken:
                    p = min(before, key=_order)
                    at(
                        e,
                        ChainKind.CHAIN_BREAK,
                        f"previous hash {_short(e.previous_hash)} of sequence {seq} of {chain} "
                        f"is not the hash of sequence {seq - 1} "
                        f"({_short(p.envelope_hash)} at {_where(p.topic, p.partition, p.offset)})",
                    )
            before = entries
            expected = seq + 1
        return out
