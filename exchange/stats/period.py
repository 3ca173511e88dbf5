"""Reporting periods: a calendar month (the default), an ISO week or a day, in UTC.

A period is inclusive of both its first and last day (as ``period_start`` / ``period_end``
travel on the wire); :meth:`Period.bounds` gives the half-open UTC instants
``[start 00:00, day after end 00:00)`` the node counts events in. Labels: ``2026-11``,
``2026-W48``, ``2026-11-30``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

from exchange.errors import InputError


class PeriodKind(StrEnum):
    """How long one indicator's period is."""

    MONTH = "month"
    WEEK = "week"
    DAY = "day"


@dataclass(frozen=True, slots=True, order=True)
class Period:
    """One reporting period: ``start`` .. ``end``, both inclusive."""

    start: date
    end: date
    kind: PeriodKind

    @property
    def label(self) -> str:
        if self.kind is PeriodKind.MONTH:
            return f"{self.start:%Y-%m}"
        if self.kind is PeriodKind.WEEK:
            year, week, _ = self.start.isocalendar()
            return f"{year}-W{week:02d}"
        return self.start.isoformat()

    def bounds(self) -> tuple[datetime, datetime]:
        """The UTC instants ``[first day 00:00, day after the last 00:00)``."""
        first = datetime.combine(self.start, time(0), UTC)
        return first, datetime.combine(self.end + timedelta(days=1), time(0), UTC)

    def previous(self) -> Period:
        return period_containing(self.start - timedelta(days=1), self.kind)

    def next(self) -> Period:
        return period_containing(self.end + timedelta(days=1), self.kind)

    def closed_at(self, now: datetime) -> bool:
        """Whether the period is over at ``now`` (its last instant has passed)."""
        return now >= self.bounds()[1]


def period_containing(day: date, kind: PeriodKind) -> Period:
    """The period of ``kind`` that ``day`` falls in."""
    if kind is PeriodKind.MONTH:
        start = day.replace(day=1)
        following = (start + timedelta(days=32)).replace(day=1)
        return Period(start, following - timedelta(days=1), kind)
    if kind is PeriodKind.WEEK:
        start = day - timedelta(days=day.weekday())
        return Period(start, start + timedelta(days=6), kind)
    return Period(day, day, kind)


_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_period(text: str, kind: PeriodKind, *, field: str = "--period") -> Period:
    """``2026-11`` (month), ``2026-W48`` (week) or ``2026-11-30`` (day), as ``kind`` says.

    Raises InputError naming ``field`` when the text is not a period of that kind.
    """
    value = text.strip()
    try:
        if kind is PeriodKind.MONTH and (m := _MONTH.match(value)):
            return period_containing(date(int(m[1]), int(m[2]), 1), kind)
        if kind is PeriodKind.WEEK and (m := _WEEK.match(value)):
            return period_containing(date.fromisocalendar(int(m[1]), int(m[2]), 1), kind)
        if kind is PeriodKind.DAY and _DAY.match(value):
            return period_containing(date.fromisoformat(value), kind)
    except ValueError as exc:
        raise InputError([(field, f"{value!r} is not a {kind.value}: {exc}")]) from None
    examples = {
        PeriodKind.MONTH: "2026-11",
        PeriodKind.WEEK: "2026-W48",
        PeriodKind.DAY: "2026-11-30",
    }
    raise InputError([(field, f"{value!r} is not a {kind.value} (write it as {examples[kind]})")])


def period_of_indicator(start: date, end: date) -> Period:
    """The period an indicator's ``period_start`` / ``period_end`` describe (its kind guessed
    from the dates: a whole month, a Monday-to-Sunday week, a single day; otherwise a day
    kind spanning the dates, labelled by its first day)."""
    for kind in PeriodKind:
        p = period_containing(start, kind)
        if p.start == start and p.end == end:
            return p
    return Period(start, end, PeriodKind.DAY)
