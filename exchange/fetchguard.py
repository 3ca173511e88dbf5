"""Fetched record batches that cannot be read become one marked record, never an error.

Layout of what a Kafka Fetch response carries per partition (the log's own bytes)::

    batch   := base_offset int64 | batch_length int32 | rest (batch_length bytes)
    rest    := leader_epoch int32 | magic int8 | crc uint32 | attributes int16
               | last_offset_delta int32 | ... | records (compressed per attributes)

The CRC covers everything from ``attributes`` on. aiokafka reads a partition's batches
lazily, and a batch that fails its CRC or does not decompress (disk corruption, a codec
the client lacks, a block that would inflate past its bound: exchange.decompress) raises
out of ``getmany`` *every time*, after silently moving the position past the good
records read before it in the same call: the consumer stalls on that partition for good,
and loses records. :func:`install` replaces aiokafka's reading
of fetched bytes with :class:`TolerantRecords`, which decodes each batch up front; a
batch that cannot be read turns into one record, at the batch's last offset, whose value
is an :class:`UndecodableBatch` (its size, SHA-256, first 4 KiB and the reason). The
node quarantines it by (topic, partition, offset) and its offset moves on past it; the
auditor reports it. Nothing else changes: good batches are handed on as aiokafka read
them, aborted transactions and control batches included.

The replacement is process-wide (aiokafka builds these objects from its module globals)
and checked against the aiokafka version it was written for: a release that changes the
fetcher's use of them fails :func:`install` loudly rather than misbehaving quietly.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from typing import Any

import aiokafka
from aiokafka.consumer import fetcher as _fetcher
from aiokafka.record import default_records as _py_records
from aiokafka.record.memory_records import MemoryRecords

from exchange import decompress

try:  # aiokafka's compiled batch reader, used unless AIOKAFKA_NO_EXTENSIONS is set
    from aiokafka.record._crecords import default_records as _c_records
except ImportError:  # pragma: no cover - a platform without the extension
    _c_records = None

#: How much of an unreadable batch is kept for the quarantine.
KEEP_BYTES = 4096
_LOG_OVERHEAD = 12  # base_offset int64 + batch_length int32
_HEAD = struct.Struct(">qi")
#: aiokafka minor versions whose fetcher this module was checked against.
_CHECKED = ("0.11", "0.12", "0.13", "0.14")


class UndecodableBatch(bytes):
    """The value standing for a batch that could not be read: its first 4 KiB.

    ``first_offset``..``last_offset`` are the offsets the batch covered (as its header
    says when that is consistent, else the one offset it was fetched at), ``size`` and
    ``sha256`` describe the whole batch, ``error`` says why it could not be read.
    """

    first_offset: int
    last_offset: int
    size: int
    sha256: str
    error: str

    @classmethod
    def of(cls, raw: bytes, first: int, last: int, error: str) -> UndecodableBatch:
        value = cls(raw[:KEEP_BYTES])
        value.first_offset, value.last_offset = first, last
        value.size, value.sha256 = len(raw), hashlib.sha256(raw).hexdigest()
        value.error = error
        return value


class _Unreadable:
    """A stand-in batch holding the one record that marks an unreadable batch."""

    producer_id = None
    is_control_batch = False
    is_transactional = False

    def __init__(self, value: UndecodableBatch, timestamp: int) -> None:
        self.base_offset = value.first_offset
        self.next_offset = value.last_offset + 1
        self._record = _MarkRecord(value.last_offset, timestamp, value)

    def validate_crc(self) -> bool:
        return True

    def __iter__(self) -> Iterator[_MarkRecord]:
        return iter((self._record,))


class _MarkRecord:
    __slots__ = ("offset", "timestamp", "value")
    timestamp_type = 0
    key = None
    checksum = None
    headers: tuple[tuple[str, bytes], ...] = ()

    def __init__(self, offset: int, timestamp: int, value: UndecodableBatch) -> None:
        self.offset, self.timestamp, self.value = offset, timestamp, value


class _Decoded:
    """A batch that was read in full: its records, replayable, and its header's facts."""

    def __init__(self, batch: Any, records: list[Any]) -> None:
        self._batch = batch
        self._records = records
        self.base_offset = batch.base_offset
        self.next_offset = batch.next_offset
        self.producer_id = batch.producer_id
        self.is_control_batch = batch.is_control_batch
        self.is_transactional = batch.is_transactional

    def validate_crc(self) -> bool:
        return True  # checked when it was read

    def __iter__(self) -> Iterator[Any]:
        return iter(self._records)


class TolerantRecords:
    """aiokafka's ``MemoryRecords`` interface over one partition's fetched bytes, where a
    batch that fails its CRC or its decoding is an :class:`_Unreadable`, not an error."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0
        #: The position: the offset the fetch asked for (set by the fetcher's
        #: PartitionRecords), then the next offset after each batch handed on.
        self.fetch_offset = 0

    def size_in_bytes(self) -> int:
        return len(self._data)

    def _frame(self) -> tuple[int, int] | None:
        """(base_offset, end) of the next complete batch, or None (a truncated tail)."""
        remaining = len(self._data) - self._pos
        if remaining < _LOG_OVERHEAD:
            return None
        base, length = _HEAD.unpack_from(self._data, self._pos)
        end = self._pos + _LOG_OVERHEAD + length
        if length < 0 or end > len(self._data):
            return None
        return base, end

    def has_next(self) -> bool:
        return self._frame() is not None

    def next_batch(self) -> _Decoded | _Unreadable | None:
        frame = self._frame()
        if frame is None:
            return None
        base, end = frame
        raw = self._data[self._pos : end]
        self._pos = end
        crc_ok = False
        try:
            batch = MemoryRecords(raw).next_batch()
            if batch is None:
                raise ValueError("no batch in its own frame")
            if not batch.validate_crc():
                raise ValueError("CRC mismatch")
            crc_ok = True
            decoded = _Decoded(batch, list(batch))
        except Exception as exc:  # any reason at all: the batch is unreadable, not fatal
            return self._unreadable(raw, base, f"{type(exc).__name__}: {exc}", crc_ok)
        self.fetch_offset = max(self.fetch_offset, decoded.next_offset)
        return decoded

    def _unreadable(self, raw: bytes, base: int, error: str, crc_ok: bool) -> _Unreadable:
        """The stand-in for ``raw``: from the current position up to where the next batch in
        this fetch begins, or, when it is the last one fetched, the current position only
        (its own header, failed, cannot say where it ends). It never skips a readable
        record, and each stand-in moves the position forward: the next fetch, from the
        offset after it, brings the following batch to bound the rest. A batch whose CRC
        held (its records would not decompress: a bomb, a codec the client lacks) says
        where it ends in checked bytes, so it is marked whole at once."""
        position = self.fetch_offset
        following = self._frame()
        try:
            declared: int | None = MemoryRecords(raw).next_batch().next_offset
        except Exception:
            declared = None
        last = position
        if crc_ok and declared is not None and base <= position < declared:
            last = declared - 1
        elif following is not None and following[0] > position:
            # The next batch's base offset is framing, outside any CRC; the failed batch's
            # own claim (inside its CRC) is used only where it agrees.
            agrees = declared is not None and base <= position < declared == following[0]
            last = declared - 1 if agrees and declared is not None else following[0] - 1
        self.fetch_offset = last + 1
        return _Unreadable(UndecodableBatch.of(raw, position, last, error), -1)


class _GuardedPartitionRecords(_fetcher.PartitionRecords):  # type: ignore[misc]
    """aiokafka's PartitionRecords, telling :class:`TolerantRecords` its fetch offset."""

    def __init__(self, tp: Any, records: Any, aborted: Any, fetch_offset: int, *rest: Any) -> None:
        if isinstance(records, TolerantRecords):
            records.fetch_offset = fetch_offset
        super().__init__(tp, records, aborted, fetch_offset, *rest)


def install() -> None:
    """Make every aiokafka consumer in this process read fetched bytes tolerantly."""
    if _fetcher.MemoryRecords is TolerantRecords:
        return
    version = aiokafka.__version__
    if not version.startswith(_CHECKED):
        raise RuntimeError(
            f"exchange.fetchguard was checked against aiokafka {', '.join(_CHECKED)}, "
            f"not {version}: check aiokafka.consumer.fetcher before widening it"
        )
    for reader in (_py_records, _c_records):
        if reader is not None:
            decompress.install(reader)  # a batch that would inflate past its bound is unreadable
    _fetcher.MemoryRecords = TolerantRecords
    _fetcher.PartitionRecords = _GuardedPartitionRecords
