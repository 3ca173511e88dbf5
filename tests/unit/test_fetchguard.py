"""Fetched batches that cannot be read become one marked record; readable ones pass as they are.

These feed real Kafka record batches (built with aiokafka's own batch builder, compressed
with each codec Kafka has) through aiokafka's own ``PartitionRecords``, as its fetcher
does once :func:`exchange.fetchguard.install` has run; only the bytes are made here.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import pytest
from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from aiokafka.structs import TopicPartition

from exchange import fetchguard
from exchange.fetchguard import KEEP_BYTES, TolerantRecords, UndecodableBatch

TP = TopicPartition("ncp.alerts.v1", 0)
CODECS = {
    "none": DefaultRecordBatch.CODEC_NONE,
    "gzip": DefaultRecordBatch.CODEC_GZIP,
    "snappy": DefaultRecordBatch.CODEC_SNAPPY,
    "lz4": DefaultRecordBatch.CODEC_LZ4,
    "zstd": DefaultRecordBatch.CODEC_ZSTD,
}
#: Byte positions in a v2 batch (see the layout in exchange/fetchguard.py).
LAST_OFFSET_DELTA_AT = 23
RECORDS_AT = 61


def batch(base: int, values: list[bytes], codec: str = "none") -> bytearray:
    """A v2 record batch holding ``values`` at offsets ``base``, ``base + 1``, ..."""
    builder = DefaultRecordBatchBuilder(2, CODECS[codec], 0, -1, -1, -1, 1 << 22)
    for i, value in enumerate(values):
        builder.append(i, timestamp=1_700_000_000_000 + i, key=b"k", value=value, headers=[])
    data = bytearray(builder.build())
    struct.pack_into(">q", data, 0, base)  # the base offset is outside the CRC
    return data


def values(n: int, tag: str) -> list[bytes]:
    return [f"{tag}-{i}-".encode() * 40 for i in range(n)]


def read(data: bytes, fetch_offset: int = 0) -> list[Any]:
    """The ConsumerRecords aiokafka's fetcher would return for ``data`` fetched at
    ``fetch_offset``, through its PartitionRecords over a TolerantRecords."""
    fetchguard.install()
    records = fetchguard._fetcher.MemoryRecords(bytes(data))
    parts = fetchguard._fetcher.PartitionRecords(
        TP, records, None, fetch_offset, None, None, True, 1
    )
    return list(parts)


def test_install_puts_the_tolerant_reader_in_aiokafkas_fetcher_once() -> None:
    """After install(), aiokafka's fetcher builds TolerantRecords; a second call is a no-op."""
    fetchguard.install()
    fetchguard.install()
    assert fetchguard._fetcher.MemoryRecords is TolerantRecords


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_readable_batches_of_every_codec_pass_unchanged(codec: str) -> None:
    """Batches compressed with each codec Kafka has come out as their records, in order."""
    first, second = values(5, "a"), values(3, "b")
    got = read(batch(0, first, codec) + batch(5, second, codec))
    assert [(r.offset, r.value) for r in got] == list(enumerate(first + second))
    assert all(type(r.value) is bytes for r in got)
    assert got[0].key == b"k"
    assert got[0].timestamp == 1_700_000_000_000


@pytest.mark.parametrize("codec", ["none", "gzip", "zstd"])
def test_a_corrupt_batch_becomes_one_marked_record_and_the_next_batch_is_read(codec: str) -> None:
    """A byte flipped inside a batch's records fails its CRC: that batch is one record at its
    last offset, marked with its range, size, hash, first bytes and reason; the batches
    around it are read in full."""
    good, bad, after = batch(0, values(4, "a"), codec), batch(4, values(6, "b"), codec), None
    after = batch(10, values(2, "c"), codec)
    bad[RECORDS_AT + 10] ^= 0xFF
    got = read(good + bad + after)
    assert [r.offset for r in got] == [0, 1, 2, 3, 9, 10, 11]
    mark = got[4].value
    assert isinstance(mark, UndecodableBatch)
    assert (mark.first_offset, mark.last_offset) == (4, 9)
    assert mark.size == len(bad)
    assert mark.sha256 == hashlib.sha256(bytes(bad)).hexdigest()
    assert bytes(mark) == bytes(bad[:KEEP_BYTES])
    assert "CRC" in mark.error


def test_an_unreadable_batch_fetched_from_its_middle_is_marked_from_the_position() -> None:
    """Fetched at an offset inside the bad batch (a restart mid-batch), the mark covers only
    the offsets from the position on, and the position moves past the batch."""
    bad = batch(100, values(10, "b"))
    bad[RECORDS_AT + 3] ^= 0x01
    mark, after = read(bad + batch(110, values(1, "c")), fetch_offset=104)
    assert mark.offset == 109
    assert (mark.value.first_offset, mark.value.last_offset) == (104, 109)
    assert after.offset == 110


def test_a_lying_offset_range_never_skips_a_readable_record() -> None:
    """A corrupt last-offset field (inside the CRC) is not trusted: the mark ends where the
    next batch begins, and that batch is read."""
    bad, after = batch(0, values(3, "b")), batch(3, values(2, "c"))
    struct.pack_into(">i", bad, LAST_OFFSET_DELTA_AT, 1000)
    got = read(bad + after)
    assert [r.offset for r in got] == [2, 3, 4]
    assert (got[0].value.first_offset, got[0].value.last_offset) == (0, 2)


def test_a_lying_last_batch_is_marked_one_offset_at_a_time() -> None:
    """With no next batch to bound it, a batch whose range cannot be trusted is marked at the
    position only: each fetch moves one offset on, and nothing readable is skipped."""
    bad = batch(7, values(3, "b"))
    struct.pack_into(">i", bad, LAST_OFFSET_DELTA_AT, 1000)
    (mark,) = read(bad, fetch_offset=7)
    assert mark.offset == 7
    (mark,) = read(bad, fetch_offset=8)
    assert mark.offset == 8


def test_an_unknown_codec_is_an_unreadable_batch_not_an_error() -> None:
    """A batch naming a codec that does not exist (attribute bits 5..7) is marked unreadable."""
    bad = batch(0, values(2, "x"), "gzip")
    attributes_at = 21
    bad[attributes_at + 1] = (bad[attributes_at + 1] & ~0x07) | 0x07
    # Recompute the CRC so that only the codec is wrong.
    crc = fetchguard_crc(bytes(bad[attributes_at:]))
    struct.pack_into(">I", bad, 17, crc)
    mark, after = read(bad + batch(2, values(1, "c"), "gzip"))
    assert isinstance(mark.value, UndecodableBatch)
    assert (mark.value.first_offset, mark.value.last_offset) == (0, 1)
    assert "codec" in mark.value.error.lower() or "compression" in mark.value.error.lower()
    assert after.offset == 2


def fetchguard_crc(data: bytes) -> int:
    from aiokafka.record.util import calc_crc32c

    return int(calc_crc32c(data))


def test_a_truncated_tail_is_left_for_the_next_fetch() -> None:
    """A partial batch at the end of a fetch (the broker's size limit) is not read or marked."""
    whole, partial = batch(0, values(2, "a")), batch(2, values(2, "b"))
    got = read(whole + partial[: len(partial) // 2])
    assert [r.offset for r in got] == [0, 1]
