"""Counts over record summaries for the audit reports: pure, no I/O.

:class:`Tally` counts records by topic (verified / rejected), verified messages by
sender, by message type and by TLP level, who shared with whom (restricted messages
per sender and recipient; ``*`` = every member), the time range (Kafka record
timestamps) and, for the volume chart, each sender's record timestamps.
"""

from __future__ import annotations

from array import array
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from exchange.audit.checks import RecordSummary

#: The member name under which records that failed verification are charted.
UNVERIFIED = "(unverified)"
#: The recipient name for messages shared with every member.
EVERY_MEMBER = "*"


def iso_ms(ms: int) -> str:
    """A Kafka timestamp (ms since the epoch) as ISO 8601 UTC with milliseconds."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


class Tally:
    """Running counts; feed it with :meth:`add`, read them with :meth:`as_dict`."""

    def __init__(self) -> None:
        self.records = 0
        self.verified = 0
        self.by_topic: dict[str, Counter[str]] = defaultdict(Counter)
        self.by_sender: Counter[str] = Counter()
        self.by_type: Counter[str] = Counter()
        self.by_tlp: Counter[str] = Counter()
        self.by_wire_version: Counter[str] = Counter()  # "v1", "v2": verified records
        self.shared: dict[str, Counter[str]] = defaultdict(Counter)
        self.first_ms: int | None = None
        self.last_ms: int | None = None
        self.times: dict[str, array[int]] = {}

    def add(self, s: RecordSummary) -> None:
        """Count one record."""
        if s.error_reason is not None or s.sender is None:
            self.count(s.topic, s.timestamp)
        else:
            self.count(
                s.topic, s.timestamp, s.sender, s.message_type, s.tlp, s.recipients, s.wire_version
            )

    def count(
        self,
        topic: str,
        ts: int,
        sender: str | None = None,
        message_type: str | None = None,
        tlp: str | None = None,
        recipients: Sequence[str] = (),
        wire_version: int = 2,
    ) -> None:
        """Count one record by its fields: verified when ``sender`` is given, else rejected."""
        self.records += 1
        if self.first_ms is None or ts < self.first_ms:
            self.first_ms = ts
        if self.last_ms is None or ts > self.last_ms:
            self.last_ms = ts
        counts = self.by_topic[topic]
        counts["records"] += 1
        if sender is None:
            counts["rejected"] += 1
            self._times(UNVERIFIED).append(ts)
            return
        self.verified += 1
        counts["verified"] += 1
        self.by_sender[sender] += 1
        self.by_type[message_type or "?"] += 1
        self.by_tlp[tlp or "?"] += 1
        self.by_wire_version[f"v{wire_version}"] += 1
        if recipients:
            shared = self.shared[sender]
            for r in recipients:
                shared[r] += 1
        else:
            self.shared[sender][EVERY_MEMBER] += 1
        self._times(sender).append(ts)

    def count_group(
        self,
        topic: str,
        sender: str,
        message_type: str,
        tlp: str,
        recipients: Sequence[str],
        times: array[int],
        wire_version: int = 2,
    ) -> None:
        """Count verified records alike but for their ``times``: :meth:`count` in bulk."""
        n = len(times)
        if not n:
            return
        self.records += n
        self.verified += n
        counts = self.by_topic[topic]
        counts["records"] += n
        counts["verified"] += n
        self.by_sender[sender] += n
        self.by_type[message_type] += n
        self.by_tlp[tlp] += n
        self.by_wire_version[f"v{wire_version}"] += n
        shared = self.shared[sender]
        for r in recipients or (EVERY_MEMBER,):
            shared[r] += n
        self._times(sender).extend(times)
        first, last = min(times), max(times)
        if self.first_ms is None or first < self.first_ms:
            self.first_ms = first
        if self.last_ms is None or last > self.last_ms:
            self.last_ms = last

    def _times(self, member: str) -> array[int]:
        found = self.times.get(member)
        if found is None:
            found = self.times[member] = array("q")
        return found

    def merge(self, other: Tally) -> None:
        """Add ``other``'s counts to these (tallies made by workers, batch by batch)."""
        self.records += other.records
        self.verified += other.verified
        first = other.first_ms
        if first is not None and (self.first_ms is None or first < self.first_ms):
            self.first_ms = first
        if other.last_ms is not None and (self.last_ms is None or other.last_ms > self.last_ms):
            self.last_ms = other.last_ms
        for name, counter in other.by_topic.items():
            self.by_topic[name].update(counter)
        self.by_sender.update(other.by_sender)
        self.by_type.update(other.by_type)
        self.by_tlp.update(other.by_tlp)
        self.by_wire_version.update(other.by_wire_version)
        for sender, counter in other.shared.items():
            self.shared[sender].update(counter)
        for member, times in other.times.items():
            self._times(member).extend(times)

    def add_many(self, summaries: Iterable[RecordSummary]) -> None:
        """Count many records."""
        for s in summaries:
            self.add(s)

    @property
    def rejected(self) -> int:
        """Records that failed verification."""
        return self.records - self.verified

    def time_range(self) -> dict[str, str | None]:
        """First and last record timestamp, ISO 8601 UTC (None when nothing was read)."""
        return {
            "first": None if self.first_ms is None else iso_ms(self.first_ms),
            "last": None if self.last_ms is None else iso_ms(self.last_ms),
        }

    def as_dict(self) -> dict[str, Any]:
        """The counts as plain, sorted mappings for the JSON report."""
        return {
            "records": self.records,
            "verified": self.verified,
            "rejected": self.rejected,
            "by_topic": {
                t: {k: c[k] for k in ("records", "verified", "rejected")}
                for t, c in sorted(self.by_topic.items())
            },
            "by_sender": dict(sorted(self.by_sender.items())),
            "by_message_type": dict(sorted(self.by_type.items())),
            "by_tlp": dict(sorted(self.by_tlp.items())),
            "by_wire_version": dict(sorted(self.by_wire_version.items())),
            "shared_with": {s: dict(sorted(c.items())) for s, c in sorted(self.shared.items())},
        }
