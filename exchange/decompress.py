"""Bounded decompression of fetched record batches: a small write cannot become gigabytes.

A v2 batch compresses its records section as one block, the codec in the low three bits
of its ``attributes``::

    0 none | 1 gzip (RFC 1952 members) | 2 snappy (raw, or xerial's blocks:
    16-byte header, then int32 length + raw block, repeated) | 3 lz4 (frame) | 4 zstd (frame)

The broker bounds a batch's *compressed* size (``max.message.bytes``) and streams it when it
validates, but aiokafka inflates the whole block in memory: 2 GiB of zeros is 64 KiB of
zstd. :func:`install` puts decoders into aiokafka's batch reader that stop once the output
passes :func:`limit_for` the input - at most :data:`RATIO` times the compressed size (never
below :data:`FLOOR`) and never above :data:`CEILING` - and raise :class:`DecompressionBomb`.
The memory they touch is bounded by that limit. fetchguard turns the error into an
``undecodable_batch`` marker, as for any batch that cannot be read.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

import cramjam
from aiokafka.codec import _detect_xerial_stream

#: How many times its compressed size a batch may expand to, at least FLOOR, at most CEILING.
RATIO = 200
FLOOR = 1 << 20
CEILING = 64 << 20

_XERIAL_HEAD_BYTES = 16
_FULL = "failed to write whole buffer"  # cramjam's error when the output buffer is full


class DecompressionBomb(ValueError):  # noqa: N818 - the name says what it is
    """A batch that would expand past its limit; never decompressed further."""

    def __init__(self, codec: str, compressed: int, limit: int) -> None:
        super().__init__(
            f"{codec} batch of {compressed} bytes expands past {limit} bytes "
            f"(the limit is {RATIO}x its size, at most {CEILING} bytes)"
        )


def limit_for(compressed: int) -> int:
    """The most a block of ``compressed`` bytes may decompress to."""
    return min(CEILING, max(FLOOR, RATIO * compressed))


def _into(codec: str, module: Any) -> Callable[[Any], bytes]:
    """A decoder through cramjam's ``decompress_into`` a buffer of exactly the limit: the
    buffer is allocated lazily by the OS, so only what is written costs memory."""

    def decode(payload: Any) -> bytes:
        size = memoryview(payload).nbytes
        limit = limit_for(size)
        out = bytearray(limit)
        try:
            n = module.decompress_into(bytes(payload), out)
        except Exception as exc:
            if _FULL in str(exc):
                raise DecompressionBomb(codec, size, limit) from None
            raise
        return bytes(memoryview(out)[:n])

    return decode


def gzip_decode(payload: Any) -> bytes:
    """Every gzip member of ``payload``, inflated with zlib's output bound."""
    data = bytes(payload)
    size, limit = len(data), limit_for(len(data))
    out = bytearray()
    while data:
        inflater = zlib.decompressobj(wbits=31)
        out += inflater.decompress(data, limit + 1 - len(out))
        if len(out) > limit:
            raise DecompressionBomb("gzip", size, limit)
        if not inflater.eof:
            raise ValueError("gzip: truncated member")
        data = inflater.unused_data
    return bytes(out)


def _snappy_size(payload: bytes) -> int:
    """The decompressed size snappy's headers declare (each raw block starts with it);
    the decoder checks each block's output against it."""
    if not _detect_xerial_stream(payload):  # as aiokafka's snappy_decode decides
        return int(cramjam.snappy.decompress_raw_len(payload))
    total, at = 0, _XERIAL_HEAD_BYTES
    while at < len(payload):
        (length,) = struct.unpack_from(">i", payload, at)
        if length < 0:
            raise ValueError(f"snappy: negative block length at byte {at}")
        at += 4
        total += int(cramjam.snappy.decompress_raw_len(payload[at : at + length]))
        at += length
    return total


def bounded_snappy(original: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    """aiokafka's snappy decoder, called only once the declared sizes fit the limit."""

    def decode(payload: Any) -> bytes:
        data = bytes(payload)
        limit = limit_for(len(data))
        if _snappy_size(data) > limit:
            raise DecompressionBomb("snappy", len(data), limit)
        return original(data)

    return decode


def install(module: ModuleType) -> None:
    """Replace the decoders aiokafka's batch reader ``module`` looks up by name."""
    names = ("gzip_decode", "snappy_decode", "lz4_decode", "zstd_decode")
    missing = [name for name in names if not hasattr(module, name)]
    if missing:
        raise RuntimeError(f"{module.__name__} no longer has {missing}: check exchange.decompress")
    if getattr(module, "_exchange_bounded", False):
        return
    setattr(module, "gzip_decode", gzip_decode)  # noqa: B010 - a module's global, by name
    setattr(module, "snappy_decode", bounded_snappy(module.snappy_decode))  # noqa: B010
    setattr(module, "lz4_decode", _into("lz4", cramjam.lz4))  # noqa: B010
    setattr(module, "zstd_decode", _into("zstd", cramjam.zstd))  # noqa: B010
    setattr(module, "_exchange_bounded", True)  # noqa: B010
