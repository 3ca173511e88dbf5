"""The node's notion of "now": a :data:`Clock` is any callable returning an aware UTC time.

Everything that judges time (retention, sealing, the supervisor's "down for how long") takes
a clock, so tests can move time without sleeping.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The wall-clock time, in UTC."""
    return datetime.now(UTC)
