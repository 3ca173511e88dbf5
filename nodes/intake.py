"""What a node refuses before decoding anything: unreadable batches and oversized records.

Both become quarantine entries by (topic, partition, offset) whose kept bytes are bounded
(the first :data:`KEEP_BYTES`), with the size and SHA-256 of the whole in the detail, so
a flood of large garbage costs the store little. Pure functions: the consumer calls them.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from exchange.errors import Reason
from exchange.fetchguard import KEEP_BYTES, UndecodableBatch
from nodes.pipeline import MAX_DETAIL, RawRecord
from nodes.store.base import QuarantineEntry


def refusal(raw: RawRecord, max_record_bytes: int, now: datetime) -> QuarantineEntry | None:
    """The quarantine entry for ``raw`` when it must not be decoded at all, else None."""
    value = raw.value
    if value is None:
        return None
    if type(value) is UndecodableBatch:
        detail = (
            f"offsets {value.first_offset}..{value.last_offset} cannot be read: {value.error}; "
            f"batch of {value.size} bytes, sha256 {value.sha256}"
        )
        sha = bytes.fromhex(value.sha256)
        return _entry(raw, Reason.UNDECODABLE_BATCH, detail, bytes(value), value.size, sha, now)
    if len(value) > max_record_bytes:
        digest = hashlib.sha256(value).digest()
        detail = (
            f"record of {len(value)} bytes, over max_record_bytes {max_record_bytes}; "
            f"sha256 {digest.hex()}"
        )
        kept = value[:KEEP_BYTES]
        return _entry(raw, Reason.TOO_LARGE, detail, kept, len(value), digest, now)
    return None


def _entry(
    raw: RawRecord,
    reason: Reason,
    detail: str,
    kept: bytes,
    size: int,
    sha256: bytes,
    now: datetime,
) -> QuarantineEntry:
    return QuarantineEntry(
        topic=raw.topic,
        partition=raw.partition,
        offset=raw.offset,
        reason=reason.value,
        detail=detail[:MAX_DETAIL],
        raw=kept[:KEEP_BYTES],
        received_at=now,
        size=size,
        sha256=sha256,
    )
