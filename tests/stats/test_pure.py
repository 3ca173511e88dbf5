"""The pure part of statistical indicators: periods, suppression, corrections, counting,
and the wire (schema evolution)."""

from __future__ import annotations

import io
import uuid
from collections import Counter
from datetime import UTC, date, datetime
from typing import Any

import fastavro
import pytest
from pydantic import ValidationError

from exchange import codec
from exchange.errors import InputError
from exchange.models import IndicatorMeasure, MeasureCount, OffenceCategory, StatisticalIndicator
from exchange.stats.latest import Published, resolve
from exchange.stats.period import PeriodKind, parse_period, period_containing, period_of_indicator
from exchange.stats.tally import Tally, build_indicator, cell, same_counts, shown
from nodes.stats import counting

M = IndicatorMeasure
NOVEMBER = parse_period("2026-11", PeriodKind.MONTH)


def test_periods_parse_and_bound_in_utc() -> None:
    """A month, an ISO week and a day parse from their labels and bound half-open in UTC."""
    assert (NOVEMBER.start, NOVEMBER.end, NOVEMBER.label) == (
        date(2026, 11, 1),
        date(2026, 11, 30),
        "2026-11",
    )
    assert NOVEMBER.bounds() == (
        datetime(2026, 11, 1, tzinfo=UTC),
        datetime(2026, 12, 1, tzinfo=UTC),
    )
    week = parse_period("2026-W48", PeriodKind.WEEK)
    assert (week.start, week.end, week.label) == (
        date(2026, 11, 23),
        date(2026, 11, 29),
        "2026-W48",
    )
    assert parse_period("2026-11-30", PeriodKind.DAY).label == "2026-11-30"
    assert period_containing(date(2027, 1, 5), PeriodKind.MONTH).previous().label == "2026-12"
    assert period_of_indicator(week.start, week.end) == week


@pytest.mark.parametrize("text", ["2026-13", "2026/11", "2026-11-01", "november"])
def test_a_bad_period_names_the_option(text: str) -> None:
    """A period that is not a month is refused naming --period."""
    with pytest.raises(InputError) as err:
        parse_period(text, PeriodKind.MONTH)
    assert err.value.problems[0][0] == "--period"


def test_counts_under_the_threshold_travel_as_suppressed_never_as_their_value() -> None:
    """0-4 become "<5" (count None), 5 stays 5; the legacy counts list only shown ones."""
    tally: Tally = Counter(
        {
            cell(M.ALERTS_SENT, "IDENTITY_THEFT"): 4,
            cell(M.ALERTS_SENT, "FRAUDULENT_SALES"): 5,
            cell(M.BLACKLIST_REMOVED_SENT): 1,
            (M.QUARANTINED, None, "bad_signature"): 7,
        }
    )
    ind = build_indicator("FR", NOVEMBER, tally, threshold=5)
    cells = {(m.measure, m.category, m.reason): m for m in ind.measures}
    small = cells[(M.ALERTS_SENT, OffenceCategory.IDENTITY_THEFT, None)]
    assert (small.count, small.suppressed_below, shown(small)) == (None, 5, "<5")
    assert shown(cells[(M.ALERTS_SENT, OffenceCategory.FRAUDULENT_SALES, None)]) == "5"
    assert shown(cells[(M.ALERTS_RECEIVED, OffenceCategory.OTHER, None)]) == "<5"  # a zero
    assert shown(cells[(M.BLACKLIST_REMOVED_SENT, None, None)]) == "<5"
    assert shown(cells[(M.QUARANTINED, None, "bad_signature")]) == "7"
    assert [(c.category, c.count) for c in ind.counts] == [(OffenceCategory.FRAUDULENT_SALES, 5)]
    assert len(ind.measures) == 10 * 11 + 2
    exact = build_indicator("FR", NOVEMBER, tally, threshold=0)
    assert shown({(m.measure, m.category): m for m in exact.measures}[
        (M.ALERTS_SENT, OffenceCategory.IDENTITY_THEFT)
    ]) == "4"  # fmt: skip


def test_same_counts_ignores_the_revision_only() -> None:
    """Two indicators differing only in revision say the same; one more alert does not."""
    tally: Tally = Counter({cell(M.ALERTS_SENT, "OTHER"): 9})
    a = build_indicator("FR", NOVEMBER, tally, revision=1)
    assert same_counts(a, build_indicator("FR", NOVEMBER, tally, revision=2))
    tally[cell(M.ALERTS_SENT, "OTHER")] += 1
    assert not same_counts(a, build_indicator("FR", NOVEMBER, tally))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"measure": "ALERTS_SENT", "count": 3, "suppressed_below": 5}, "exactly one"),
        ({"measure": "ALERTS_SENT"}, "exactly one"),
        ({"measure": "ALERTS_SENT", "count": -1}, "greater than or equal"),
        ({"measure": "QUARANTINED", "reason": "John Doe at 5 Main St", "count": 9}, "reason code"),
        ({"measure": "QUARANTINED", "count": 9}, "reason code"),
        ({"measure": "ALERTS_SENT", "reason": "bad_signature", "count": 9}, "only QUARANTINED"),
        ({"measure": "ALERTS_SENT", "suppressed_below": 1}, "greater than or equal"),
    ],
)
def test_a_lying_measure_is_refused(data: dict[str, Any], reason: str) -> None:
    """Both or neither of count and suppressed_below, negative counts, free text as a reason."""
    with pytest.raises(ValidationError, match=reason):
        MeasureCount.model_validate(data)


def test_one_cell_counted_twice_is_refused() -> None:
    """An indicator may not carry two counts for one (measure, category, reason)."""
    twice = [{"measure": "ALERTS_SENT", "category": "OTHER", "count": 5}] * 2
    base = {"country": "FR", "period_start": "2026-10-01", "period_end": "2026-10-31"}
    with pytest.raises(ValidationError, match="counted twice"):
        StatisticalIndicator.model_validate({**base, "counts": [], "measures": twice})


def test_measures_newer_than_the_schema_read_as_unknown_and_do_not_clash() -> None:
    """Two measures this reader does not know (both UNKNOWN, same category) still validate."""
    newer = [{"measure": "UNKNOWN", "category": "OTHER", "count": 5}] * 2
    base = {"country": "FR", "period_start": "2026-10-01", "period_end": "2026-10-31"}
    ind = StatisticalIndicator.model_validate({**base, "counts": [], "measures": newer})
    assert [m.measure for m in ind.measures] == [M.UNKNOWN, M.UNKNOWN]


def _published(sender: str, revision: int, sequence: int, country: str | None = None) -> Published:
    ind = build_indicator(country or sender, NOVEMBER, Counter(), revision=revision)
    return Published(sender, uuid.uuid4(), sequence, datetime(2026, 12, 1, tzinfo=UTC), ind)


def test_the_latest_in_the_chain_wins_and_names_what_it_replaced() -> None:
    """Per member and period the latest published (sequence) is in force, the others are
    listed as replaced; an inflated revision earlier in the chain does not outrank it."""
    first, second = _published("FR", 1, 1), _published("FR", 2, 2)
    inflated = _published("FR", 999, 3)
    genuine = _published("FR", 3, 4)
    de = _published("DE", 1, 1)
    current, aside = resolve([second, first, de])
    assert not aside
    (de_now, fr_now) = current
    assert (de_now.latest, de_now.replaced) == (de, ())
    assert (fr_now.latest, fr_now.replaced) == (second, (first,))
    (fr_now,) = resolve([genuine, inflated, first])[0]
    assert fr_now.latest == genuine
    assert [p.indicator.revision for p in fr_now.replaced] == [1, 999]


def test_a_member_cannot_correct_another_members_indicator() -> None:
    """FR publishing an indicator that names DE is set aside; DE's own stays in force."""
    de = _published("DE", 1, 1)
    forged = _published("FR", 9, 7, country="DE")
    current, aside = resolve([de, forged])
    assert [c.latest for c in current] == [de]
    assert [(a.published, a.reason) for a in aside] == [(forged, "country_not_sender")]


def test_counting_functions_count_entries_hits_and_reasons() -> None:
    """Blacklist entries of deltas by category (removals without; snapshots not), hits by
    their query's category,
    quarantine by code (anything not a code counted as ``other``)."""
    bl = counting.count_blacklist(
        [{"added": [{"category": "OTHER"}, {"category": "OTHER"}], "removed": [{}, {}, {}]}],
        [
            {"added": [], "removed": [{}]},
            {"kind": "SNAPSHOT", "added": [{"category": "OTHER"}], "removed": []},
        ],
    )
    assert bl == {
        cell(M.BLACKLIST_ADDED_SENT, "OTHER"): 2,
        cell(M.BLACKLIST_REMOVED_SENT): 3,
        cell(M.BLACKLIST_REMOVED_RECEIVED): 1,
    }
    ps = counting.count_pseudonyms(
        [{"category": "ILLICIT_DRUG_TRADE"}],
        [],
        [{"query_id": "q2", "hit": True}, {"query_id": "q2", "hit": False}],
        [{"query_id": "q1", "hit": True}],
        {"q1": "ILLICIT_DRUG_TRADE"},
    )
    assert ps == {
        cell(M.PSEUDONYM_QUERIES_SENT, "ILLICIT_DRUG_TRADE"): 1,
        cell(M.PSEUDONYM_HITS_RECEIVED, "ILLICIT_DRUG_TRADE"): 1,
        cell(M.PSEUDONYM_HITS_SENT): 1,
    }
    odd = counting.count_alerts([{"category": "identity_fraud"}, {}], [{"category": 7}])
    assert odd == {cell(M.ALERTS_SENT): 2, cell(M.ALERTS_RECEIVED): 1}
    assert counting.count_quarantine({"malformed": 2, "Drop table; x": 1}) == {
        (M.QUARANTINED, None, "malformed"): 2,
        (M.QUARANTINED, None, "other"): 1,
    }


def test_indicators_round_trip_and_old_ones_read_with_defaults() -> None:
    """A suppressed measure survives Avro; an indicator written with the released schema
    (history/2) reads as revision 1 with no measures."""
    ind = build_indicator("FR", NOVEMBER, Counter({cell(M.ALERTS_SENT, "OTHER"): 3}))
    _, back = codec.decode(codec.encode("StatisticalIndicator", ind.to_avro()))
    assert StatisticalIndicator.model_validate(back) == ind
    old = codec.REGISTRY.by_fingerprint(bytes.fromhex("0d975309c8e5a10f"))
    assert old.version in {"1", "2"}  # unchanged between the two releases
    out = io.BytesIO()
    record = {"country": "PL", "period_start": date(2026, 10, 1), "period_end": date(2026, 10, 31)}
    fastavro.schemaless_writer(out, old.parsed, {**record, "counts": []})
    _, read = codec.decode(codec.MARKER + old.fingerprint + out.getvalue())
    legacy = StatisticalIndicator.model_validate(read)
    assert (legacy.revision, legacy.measures) == (1, [])
