"""Verified records reduced to what the replay keeps: a :data:`Digest` per batch or range.

A verification worker verifies raw records (:func:`check_many`: parsed and keyed one
by one, their signatures in one ZIP-215 batch check per :data:`CHUNK`) and, rather than one
summary per record, hands back a :data:`Digest`: the records that failed verification
as summary tuples (rare; each becomes a violation), the verified ones as one
:class:`~exchange.audit.checks.Block` per (sender, topic) (a few ``bytes`` columns:
sequence, time, place, message id, previous and own envelope hash) and the batch's
:class:`~exchange.audit.tally.Tally`. A block pickles and merges at a fraction of the
cost of a tuple per record, and the checker keeps its columns as they are.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from itertools import islice
from typing import Any

from exchange import zip215
from exchange.audit.checks import HASH, Block, RecordSummary
from exchange.audit.fastpath import SHAPES, Candidate, Shapes, split
from exchange.audit.reader import RawRecord
from exchange.audit.tally import Tally
from exchange.codec import decode_signed
from exchange.envelope import decode_envelope
from exchange.errors import ExchangeError, Reason
from exchange.fetchguard import UndecodableBatch
from exchange.seal import (
    SignatureChecked,
    Verified,
    check_signature,
    check_signatures,
    verify_checked,
)
from exchange.trust import TrustHistory, TrustList

#: What records are judged against: one list, or every list published (each record against
#: the list in force at its append time).
Judge = TrustList | TrustHistory

#: (failed records as summary tuples, verified records as blocks, counts)
Digest = tuple[list[tuple[Any, ...]], list[Block], Tally]

_NO_HASH = bytes(HASH)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _claimed(value: bytes) -> tuple[str | None, str | None, str | None, str | None]:
    """(sender, message type, message id, key id) as a refused record claims them, if legible."""
    try:
        envelope_bytes, _, key_id = decode_signed(value)
    except Exception:  # illegible: nothing is claimed
        return None, None, None, None
    try:
        env = decode_envelope(envelope_bytes)
    except Exception:  # illegible envelope: only the key id is claimed
        return None, None, None, key_id
    return env.sender, env.message_type.value, str(env.message_id), key_id


#: Records verified per batch check: ~5x single checks from 256 on (bench zip215).
CHUNK = 512


def _value(record: RawRecord) -> bytes | RecordSummary:
    """The value to verify, or the refusal of a record with none (unreadable, tombstone)."""
    topic, partition, offset, ts, _key, value = record
    if type(value) is UndecodableBatch:  # a batch the client could not read (fetchguard)
        return RecordSummary(
            topic,
            partition,
            offset,
            ts,
            error_reason=Reason.UNDECODABLE_BATCH.value,
            error_detail=(
                f"offsets {value.first_offset}..{value.last_offset} cannot be read: "
                f"{value.error}; batch of {value.size} bytes, sha256 {value.sha256}"
            ),
        )
    if value is None:
        return RecordSummary(
            topic,
            partition,
            offset,
            ts,
            error_reason=Reason.MALFORMED.value,
            error_detail="record has no value (a tombstone)",
        )
    return value


def _refused(record: RawRecord, exc: Exception) -> RecordSummary:
    """The summary of a record refused with ``exc``, with what it claims where legible."""
    if isinstance(exc, ExchangeError):
        reason = exc.reason.value
        detail = f"{exc.field}: {exc.detail}" if exc.field else exc.detail
    else:  # one odd record must not stop an audit: report it instead
        reason = Reason.MALFORMED.value
        detail = f"verification failed unexpectedly: {type(exc).__name__}: {exc}"
    topic, partition, offset, ts, _key, value = record
    sender, mtype, mid, key_id = _claimed(value or b"")
    return RecordSummary(
        topic,
        partition,
        offset,
        ts,
        sender=sender,
        message_type=mtype,
        message_id=mid,
        key_id=key_id,
        error_reason=reason,
        error_detail=detail,
    )


def _checked(
    record: RawRecord, checked: SignatureChecked, trust: TrustList, now: datetime
) -> Verified | RecordSummary:
    """Step 2 for a record whose signature held: keys and created_at are judged at the
    record's append time (the broker's clock)."""
    topic, _partition, _offset, ts, key, _value = record
    try:
        return verify_checked(
            checked,
            topic=topic,
            key=key,
            trust=trust,
            now=now,
            appended_at=_EPOCH + timedelta(0, 0, 0, ts),
        )
    except Exception as exc:
        return _refused(record, exc)


def check(record: RawRecord, judge: Judge, now: datetime) -> Verified | RecordSummary:
    """Verify one record (:func:`exchange.seal.verify_record`): Verified, or the refusal.

    With a :class:`TrustHistory`, against the list in force at the record's append time."""
    value = _value(record)
    if isinstance(value, RecordSummary):
        return value
    trust = judge.at(record[3]) if isinstance(judge, TrustHistory) else judge
    try:
        checked = check_signature(value, trust)
    except Exception as exc:
        return _refused(record, exc)
    return _checked(record, checked, trust, now)


def check_many(
    records: Sequence[RawRecord], judge: Judge, now: datetime
) -> list[Verified | RecordSummary]:
    """:func:`check` of each record, in order, the signatures in ONE batch check.

    ``exchange.seal.check_signatures``: under ZIP-215 each verdict is that of the record's
    own single check, so the refusals (reason, detail, place) are exactly :func:`check`'s.
    """
    out: list[Verified | RecordSummary | None] = [None] * len(records)
    todo: list[int] = []
    values: list[bytes] = []
    lists: list[TrustList] = []
    for i, record in enumerate(records):
        value = _value(record)
        if isinstance(value, RecordSummary):
            out[i] = value
            continue
        todo.append(i)
        values.append(value)
        lists.append(judge.at(record[3]) if isinstance(judge, TrustHistory) else judge)
    if todo:
        try:
            verdicts = check_signatures(values, lists)
        except Exception:  # a bug in the batch: each record on its own says which one
            for i in todo:
                out[i] = check(records[i], judge, now)
        else:
            for i, trust, verdict in zip(todo, lists, verdicts, strict=True):
                record = records[i]
                out[i] = (
                    _refused(record, verdict)
                    if isinstance(verdict, ExchangeError)
                    else _checked(record, verdict, trust, now)
                )
    return out  # type: ignore[return-value]  # every None was replaced above


class _Columns:
    """A :class:`Block` being built."""

    __slots__ = (
        "hashes",
        "mids",
        "no_previous",
        "offsets",
        "partitions",
        "previous",
        "seqs",
        "times",
    )

    def __init__(self) -> None:
        self.seqs = array("q")
        self.times = array("q")
        self.partitions = array("q")
        self.offsets = array("q")
        self.mids = bytearray()
        self.previous = bytearray()
        self.hashes = bytearray()
        self.no_previous: list[int] = []

    def block(self, sender: str, topic: str) -> Block:
        return Block(
            sender,
            topic,
            self.seqs.tobytes(),
            self.times.tobytes(),
            self.partitions.tobytes(),
            self.offsets.tobytes(),
            bytes(self.mids),
            bytes(self.previous),
            bytes(self.hashes),
            tuple(self.no_previous),
        )


class DigestBuilder:
    """Verifies records and accumulates their :data:`Digest`."""

    def __init__(self, trust: Judge, now: datetime, shapes: Shapes | None = None) -> None:
        self.trust = trust
        self.now = now
        self.failed: list[tuple[Any, ...]] = []
        self.tally = Tally()
        self._columns: dict[tuple[str, str], _Columns] = {}
        # verified records counted by what the tally tells apart: one dict entry per
        # kind instead of a dozen counter updates per record
        self._kinds: dict[tuple[Any, ...], array[int]] = {}
        self._shapes = shapes if shapes is not None else SHAPES

    def add_many(self, records: Iterable[RawRecord]) -> None:
        """Verify and take in records, :data:`CHUNK` signatures a batch check.

        The common shape through :func:`~exchange.audit.fastpath.split` and one batch
        check, the rest (and whatever it is not sure of) through :func:`check_many`,
        whose acceptances teach the fast path their shape."""
        it = iter(records)
        while chunk := list(islice(it, CHUNK)):
            found, rest, shapes = split(chunk, self.trust, self._shapes)
            if found:
                verdicts = zip215.verify_batch([c.item for c in found])
                failed = self._add_candidates(found, verdicts)
                rest += failed
                shapes += [None] * len(failed)
            if rest:
                verdicts_ = check_many(rest, self.trust, self.now)
                self._add_checked(rest, verdicts_)
                learn = self._shapes.learn
                for record, v, shape in zip(rest, verdicts_, shapes, strict=True):
                    if shape is not None and type(v) is Verified:
                        learn(shape, v, record[0])

    def _add_candidates(
        self, found: Sequence[Candidate], verdicts: Sequence[bool]
    ) -> list[RawRecord]:
        """Take in the fast path's candidates whose signature held (what
        :meth:`_add_checked` keeps); the records of the others, for the full path."""
        columns, kinds = self._columns, self._kinds
        failed: list[RawRecord] = []
        for (record, (kind, chain), mid, sequence, previous, item), ok in zip(
            found, verdicts, strict=True
        ):
            if not ok:
                failed.append(record)
                continue
            ts = record[3]
            times = kinds.get(kind)
            if times is None:
                times = kinds[kind] = array("q")
            times.append(ts)
            c = columns.get(chain)
            if c is None:
                c = columns[chain] = _Columns()
            if previous is None:
                c.no_previous.append(len(c.seqs))
                previous = _NO_HASH
            c.previous += previous
            c.seqs.append(sequence)
            c.times.append(ts)
            c.partitions.append(record[1])
            c.offsets.append(record[2])
            c.mids += mid
            c.hashes += sha256(item[1]).digest()
        self._shapes.accepted += len(found) - len(failed)
        return failed

    def _add_checked(
        self, records: Sequence[RawRecord], verdicts: Sequence[Verified | RecordSummary]
    ) -> None:
        """Take in records with their verdicts.

        Per record only appends and look-ups: the kind is keyed by the enum members
        themselves (their ``.value`` is a descriptor call, taken once per kind in
        :meth:`digest`).
        """
        columns, kinds = self._columns, self._kinds
        for record, v in zip(records, verdicts, strict=True):
            if isinstance(v, RecordSummary):
                self.tally.add(v)
                self.failed.append(tuple(v))
                continue
            e = v.envelope
            topic, ts = record[0], record[3]
            kind = (topic, e.sender, e.message_type, e.handling.tlp, e.recipients, e.version)
            times = kinds.get(kind)
            if times is None:
                times = kinds[kind] = array("q")
            times.append(ts)
            c = columns.get((e.sender, topic))
            if c is None:
                c = columns[(e.sender, topic)] = _Columns()
            previous = e.previous_hash
            if previous is None:
                c.no_previous.append(len(c.seqs))
                previous = _NO_HASH
            c.previous += previous
            c.seqs.append(e.sequence)
            c.times.append(ts)
            c.partitions.append(record[1])
            c.offsets.append(record[2])
            c.mids += e.message_id.bytes
            c.hashes += v.envelope_hash

    def digest(self) -> Digest:
        """What was taken in since the last call."""
        blocks = [c.block(sender, topic) for (sender, topic), c in self._columns.items()]
        self._columns = {}
        for (topic, sender, mtype, tlp, recipients, version), times in self._kinds.items():
            self.tally.count_group(
                topic, sender, mtype.value, tlp.value, recipients, times, version
            )
        self._kinds = {}
        failed, tally = self.failed, self.tally
        self.failed, self.tally = [], Tally()
        return failed, blocks, tally


def digest_batch(batch: Iterable[RawRecord], trust: Judge, now: datetime) -> Digest:
    """Verify a batch into its :data:`Digest`."""
    builder = DigestBuilder(trust, now)
    builder.add_many(batch)
    return builder.digest()
