"""Counts into an indicator: one cell per (measure, category, reason), small counts suppressed.

A :data:`Tally` maps each :data:`Cell` to a count. :func:`build_indicator` makes the payload
a member publishes for a period:

- every (measure, category) of the per-category measures is present, zero included, so a
  reader can tell "none" (or "<N") from "not counted"; quarantine cells only for the
  reasons that occurred; cells without a category (a blacklist removal names none) only
  when non-zero;
- a count under ``threshold`` travels as ``count=None, suppressed_below=threshold``
  (``threshold`` 0 or 1: nothing is suppressed). Zero is under any threshold too, so a
  reader cannot tell 0 from 4: that is the point;
- the legacy ``counts`` array holds the alerts sent per category whose count is shown.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from exchange.models import (
    CategoryCount,
    IndicatorMeasure,
    MeasureCount,
    OffenceCategory,
    StatisticalIndicator,
)
from exchange.stats.period import Period

#: (measure, offence category or None, quarantine reason or None)
Cell = tuple[IndicatorMeasure, OffenceCategory | None, str | None]
Tally = Counter[Cell]

#: The measures counted per offence category (every category is listed, zero included).
PER_CATEGORY = tuple(
    m for m in IndicatorMeasure if m not in (IndicatorMeasure.UNKNOWN, IndicatorMeasure.QUARANTINED)
)
DEFAULT_THRESHOLD = 5


def cell(
    measure: IndicatorMeasure,
    category: OffenceCategory | str | None = None,
    reason: str | None = None,
) -> Cell:
    """A cell key; ``category`` may be given as its name."""
    return (measure, OffenceCategory(category) if category is not None else None, reason)


def merge(tallies: Iterable[Mapping[Cell, int]]) -> Tally:
    total: Tally = Counter()
    for t in tallies:
        total.update(t)
    return total


def _measure(c: Cell, count: int, threshold: int) -> MeasureCount:
    measure, category, reason = c
    if threshold > 1 and count < threshold:
        return MeasureCount(
            measure=measure, category=category, reason=reason, suppressed_below=threshold
        )
    return MeasureCount(measure=measure, category=category, reason=reason, count=count)


def _order(c: Cell) -> tuple[int, int, str]:
    measure, category, reason = c
    cats = list(OffenceCategory)
    return (
        list(IndicatorMeasure).index(measure),
        cats.index(category) if category is not None else len(cats),
        reason or "",
    )


def build_indicator(
    country: str,
    period: Period,
    tally: Mapping[Cell, int],
    *,
    threshold: int = DEFAULT_THRESHOLD,
    revision: int = 1,
) -> StatisticalIndicator:
    """The indicator ``country`` publishes for ``period`` from its ``tally`` (see module doc)."""
    cells: dict[Cell, int] = {(m, c, None): 0 for m in PER_CATEGORY for c in OffenceCategory}
    for key, count in tally.items():
        if count < 0:
            raise ValueError(f"negative count {count} for {key}")
        measure, category, _ = key
        if measure is IndicatorMeasure.UNKNOWN:
            continue
        if count or category is not None or measure is IndicatorMeasure.QUARANTINED:
            cells[key] = cells.get(key, 0) + count
    measures = [_measure(c, cells[c], threshold) for c in sorted(cells, key=_order)]
    legacy = [
        CategoryCount(category=m.category, count=m.count)
        for m in measures
        if m.measure is IndicatorMeasure.ALERTS_SENT
        and m.category is not None
        and m.count is not None
    ]
    return StatisticalIndicator(
        country=country,
        period_start=period.start,
        period_end=period.end,
        counts=legacy,
        revision=revision,
        measures=measures,
    )


def same_counts(a: StatisticalIndicator, b: StatisticalIndicator) -> bool:
    """Whether two indicators say the same (period, country and every shown count), whatever
    their revisions: a correction is published only when this is False."""
    return (a.country, a.period_start, a.period_end, a.measures) == (
        b.country,
        b.period_start,
        b.period_end,
        b.measures,
    )


def shown(m: MeasureCount) -> str:
    """The count as a reader sees it: ``"12"``, or ``"<5"`` when suppressed."""
    return f"<{m.suppressed_below}" if m.count is None else str(m.count)
