"""UUIDv7 message ids (RFC 9562, section 5.7).

Byte layout (big-endian, 128 bits)::

    unix_ts_ms (48) | ver=0b0111 (4) | rand_a (12) | var=0b10 (2) | rand_b (62)

The 74 bits of rand_a + rand_b are random, except that ids made in this process
within the same millisecond count up from the previous one (RFC 9562, 6.2
method 2, "monotonic random"), so ids sort by creation even inside one
millisecond. Time is the caller's ``now``: the id says when the message was
created, and tests can pin it.
"""

from __future__ import annotations

import secrets
import threading
from datetime import datetime
from uuid import UUID

__all__ = ["uuid7", "uuid7_time_ms"]

_RAND_BITS = 74
_RAND_MASK = (1 << _RAND_BITS) - 1
_lock = threading.Lock()
_last_ms = -1
_last_rand = 0


def uuid7(now: datetime) -> UUID:
    """A new UUIDv7 carrying ``now`` (aware) to the millisecond."""
    global _last_ms, _last_rand
    if now.tzinfo is None:
        raise ValueError("uuid7 needs a timezone-aware datetime")
    ms = int(now.timestamp() * 1000)
    if not 0 <= ms < 1 << 48:
        raise ValueError(f"time {now.isoformat()} does not fit a UUIDv7")
    with _lock:
        if ms == _last_ms and _last_rand < _RAND_MASK:
            # Same millisecond: step up by a random amount, keeping the ids unguessable.
            rand = min(_last_rand + 1 + secrets.randbits(16), _RAND_MASK)
        else:
            # A fresh millisecond: start in the lower half so the counter has room to climb.
            rand = secrets.randbits(_RAND_BITS - 1)
        _last_ms, _last_rand = ms, rand
    rand_a = rand >> 62
    rand_b = rand & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return UUID(int=value)


def uuid7_time_ms(value: UUID) -> int | None:
    """The unix milliseconds inside a UUIDv7, or None when ``value`` is not a version-7 UUID."""
    if value.version != 7:
        return None
    return value.int >> 80
