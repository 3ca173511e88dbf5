"""The federation's indicators from a node's store: the latest revision per member and period.

:func:`load_report` reads every StatisticalIndicator the node stored (its own come back from
the bus like any other member's), resolves corrections (:func:`exchange.stats.latest.resolve`)
and flattens them into :class:`Row` s, one per member, period and cell, for the renderers in
:mod:`nodes.stats.render`. A stored payload that no longer validates (a rule dropped a field)
is set aside as ``invalid_payload``, never charted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from pydantic import ValidationError

from exchange.models import IndicatorMeasure, StatisticalIndicator
from exchange.stats.latest import Current, Published, SetAside, resolve
from exchange.stats.period import period_of_indicator
from exchange.stats.tally import shown
from nodes.stats.queries import stored_indicators
from nodes.store.base import Store


@dataclass(frozen=True, slots=True)
class Row:
    """One cell of one member's indicator in force for one period."""

    member: str
    period: str
    period_start: date
    period_end: date
    measure: str
    category: str | None
    reason: str | None
    shown: str  # "12" or "<5"
    count: int | None
    suppressed_below: int | None
    revision: int
    replaced: tuple[int, ...]  # revisions this one replaced, oldest first
    message_id: str


@dataclass(frozen=True, slots=True)
class Report:
    """Everything a report shows."""

    generated_at: datetime
    since: datetime | None
    until: datetime | None
    current: list[Current]
    set_aside: list[Aside]
    rows: list[Row] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Aside:
    """A stored indicator not charted, and why (a stable reason code)."""

    member: str
    message_id: str
    reason: str  # country_not_sender, invalid_payload


def _aside(a: SetAside) -> Aside:
    return Aside(a.published.sender, str(a.published.message_id), a.reason)


def flatten(current: list[Current]) -> list[Row]:
    rows = []
    for cur in current:
        ind, p = cur.latest.indicator, cur.latest
        label = period_of_indicator(ind.period_start, ind.period_end).label
        replaced = tuple(r.indicator.revision for r in cur.replaced)
        for m in ind.measures:
            if m.measure is IndicatorMeasure.UNKNOWN:
                continue  # a measure newer than this node's schema: not charted
            rows.append(
                Row(
                    member=p.sender,
                    period=label,
                    period_start=ind.period_start,
                    period_end=ind.period_end,
                    measure=m.measure.value,
                    category=m.category.value if m.category else None,
                    reason=m.reason,
                    shown=shown(m),
                    count=m.count,
                    suppressed_below=m.suppressed_below,
                    revision=ind.revision,
                    replaced=replaced,
                    message_id=str(p.message_id),
                )
            )
    return rows


def _in_window(ind: StatisticalIndicator, since: datetime | None, until: datetime | None) -> bool:
    start, end = period_of_indicator(ind.period_start, ind.period_end).bounds()
    return (since is None or end > since) and (until is None or start < until)


async def load_report(
    store: Store, *, now: datetime, since: datetime | None = None, until: datetime | None = None
) -> Report:
    """The indicators in force whose period overlaps ``[since, until)``."""
    published: list[Published] = []
    invalid: list[Aside] = []
    for row in await stored_indicators(store):
        try:
            ind = StatisticalIndicator.model_validate(row.payload)
        except ValidationError:
            invalid.append(Aside(row.sender, str(row.message_id), "invalid_payload"))
            continue
        if _in_window(ind, since, until):
            published.append(
                Published(row.sender, row.message_id, row.sequence, row.created_at, ind)
            )
    current, aside = resolve(published)
    return Report(now, since, until, current, [*map(_aside, aside), *invalid], flatten(current))
