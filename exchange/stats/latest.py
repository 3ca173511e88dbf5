"""Corrections: per member and period, the latest revision wins; what it replaced is kept.

The member is the envelope's sender (authenticated by its signature), never the payload's
``country``: a member can only publish, and so only correct, its own indicators (the record
key ``"<sender>:<period start>"`` is bound to the sender by the envelope check too). An
indicator whose ``country`` is not its sender is set aside as ``country_not_sender``
rather than charted under either name. The latest is the one latest in the sender's hash
chain on the topic (``sequence``, which only goes up and which the auditor checks for gaps
and forks); ``revision`` is the sender's own count of corrections, shown in the report. So
a record with an inflated revision (a thief holding the key, a faulty sender) does not
outrank the member's next genuine publication.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from uuid import UUID

from exchange.models import StatisticalIndicator


@dataclass(frozen=True, slots=True)
class Published:
    """One indicator as received: its sender, message id, chain position and payload."""

    sender: str
    message_id: UUID
    sequence: int
    created_at: datetime
    indicator: StatisticalIndicator


@dataclass(frozen=True, slots=True)
class Current:
    """The indicator in force for (sender, period), and those it replaced (oldest first)."""

    latest: Published
    replaced: tuple[Published, ...]

    @property
    def sender(self) -> str:
        return self.latest.sender

    @property
    def period_start(self) -> date:
        return self.latest.indicator.period_start


@dataclass(frozen=True, slots=True)
class SetAside:
    """An indicator not charted, and why (a stable reason code)."""

    published: Published
    reason: str


def _rank(p: Published) -> tuple[int, datetime, int]:
    return (p.sequence, p.created_at, p.indicator.revision)


def resolve(items: Iterable[Published]) -> tuple[list[Current], list[SetAside]]:
    """The indicator in force per (sender, period start), sorted by period then sender, and
    the indicators set aside."""
    groups: dict[tuple[str, date], list[Published]] = defaultdict(list)
    aside: list[SetAside] = []
    for p in items:
        if p.indicator.country != p.sender:
            aside.append(SetAside(p, "country_not_sender"))
            continue
        groups[(p.sender, p.indicator.period_start)].append(p)
    current = []
    for (_, _), group in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        ordered = sorted(group, key=_rank)
        current.append(Current(latest=ordered[-1], replaced=tuple(ordered[:-1])))
    return current, aside
