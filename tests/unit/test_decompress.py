"""A compressed batch may not inflate past its bound: a few KiB written to the bus can never
become gigabytes in a node's or an auditor's memory.

The batches are real (aiokafka's own builder, each codec Kafka has), read the way the
fetcher reads them once :func:`exchange.fetchguard.install` has run.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import cramjam
import pytest
from aiokafka import codec as kafka_codec

from exchange import decompress
from exchange.decompress import DecompressionBomb, limit_for
from exchange.fetchguard import UndecodableBatch
from tests.unit.test_fetchguard import batch, read, values

CODECS = ("gzip", "snappy", "lz4", "zstd")
ENCODERS = {
    "gzip": kafka_codec.gzip_encode,
    "snappy": kafka_codec.snappy_encode,
    "lz4": kafka_codec.lz4_encode,
    "zstd": kafka_codec.zstd_encode,
}
DECODERS = {
    "gzip": decompress.gzip_decode,
    "snappy": decompress.bounded_snappy(kafka_codec.snappy_decode),
    "lz4": decompress._into("lz4", cramjam.lz4),
    "zstd": decompress._into("zstd", cramjam.zstd),
}


def test_the_bound_is_200_times_the_compressed_size_between_1_and_64_mib() -> None:
    """A block may expand 200-fold, never below 1 MiB nor above 64 MiB."""
    assert limit_for(10) == 1 << 20
    assert limit_for(10_000) == 2_000_000
    assert limit_for(10 << 20) == 64 << 20


@pytest.mark.parametrize("codec", ["gzip", "lz4", "zstd"])  # snappy: at most ~21-fold
def test_a_batch_that_would_inflate_past_its_bound_is_one_marked_record(codec: str) -> None:
    """Four records of a million zero bytes compress to a few KiB: the batch is marked
    unreadable, whole (its CRC held, so its range is trusted), naming the bound, and the
    batch after it is read."""
    bomb = batch(0, [bytes(1_000_000)] * 4, codec)
    assert 200 * len(bomb) < 4_000_000  # it inflates more than 200-fold
    mark, *after = read(bomb + batch(4, values(2, "c"), codec))
    assert isinstance(mark.value, UndecodableBatch)
    assert (mark.value.first_offset, mark.value.last_offset) == (0, 3)
    assert "expands past" in mark.value.error
    assert [(r.offset, type(r.value)) for r in after] == [(4, bytes), (5, bytes)]


@pytest.mark.parametrize("codec", CODECS)
def test_each_decoder_takes_exactly_its_bound_and_refuses_one_byte_more(
    codec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the bound set to 4,096 bytes, 4,096 bytes decode and 4,097 are refused."""
    monkeypatch.setattr(decompress, "FLOOR", 4096)
    monkeypatch.setattr(decompress, "CEILING", 4096)
    fits = bytes(range(256)) * 16
    assert DECODERS[codec](ENCODERS[codec](fits)) == fits
    with pytest.raises(DecompressionBomb, match="expands past 4096 bytes"):
        DECODERS[codec](ENCODERS[codec](fits + b"!"))


def test_a_snappy_block_declaring_a_gigabyte_is_refused_before_it_is_inflated() -> None:
    """Snappy allocates the size a block's header declares: a header declaring 1 GiB over
    a few bytes is refused on the declaration, in raw and in xerial framing."""
    raw = bytes([0x80, 0x80, 0x80, 0x80, 0x04]) + b"\x0cabcd"  # varint 1 GiB, then a literal
    with pytest.raises(DecompressionBomb):
        DECODERS["snappy"](raw)
    header = b"\x82SNAPPY\x00" + (1).to_bytes(4, "big") + (1).to_bytes(4, "big")
    xerial = header + len(raw).to_bytes(4, "big") + raw
    with pytest.raises(DecompressionBomb):
        DECODERS["snappy"](xerial)


def test_concatenated_gzip_members_are_all_inflated() -> None:
    """A gzip block of several members (as some producers write) decodes to all of them."""
    assert decompress.gzip_decode(ENCODERS["gzip"](b"one ") + ENCODERS["gzip"](b"two")) == (
        b"one two"
    )


def test_a_truncated_gzip_block_is_an_error_not_a_short_read() -> None:
    """A gzip member cut short is refused, not returned as the bytes it held."""
    whole = ENCODERS["gzip"](bytes(range(256)) * 8)
    with pytest.raises(ValueError, match="truncated"):
        decompress.gzip_decode(whole[:-12])


def test_refusing_a_gigabyte_bomb_touches_no_more_than_the_bound() -> None:
    """A zstd block of 1 GiB of zeros (about 32 KiB) is refused by a process whose peak
    memory stays far below the gigabyte it would have taken."""
    script = textwrap.dedent(
        """
        import resource, cramjam
        from exchange import decompress
        c = cramjam.zstd.Compressor()
        for _ in range(1024):
            c.compress(bytes(1 << 20))
        bomb = bytes(c.finish())
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            decompress._into("zstd", cramjam.zstd)(bomb)
        except decompress.DecompressionBomb:
            print(len(bomb), before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    size, before_kib, after_kib = (int(x) for x in done.stdout.split())
    assert size < 1 << 20
    assert after_kib - before_kib < 100 * 1024  # the 64 MiB bound, not the 1 GiB
