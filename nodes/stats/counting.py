"""One small counting function per source: what a node sent, stored and quarantined.

Pure functions over payloads as the store keeps them (JSON-able dicts): the outbox's
accepted payloads for what was SENT, the records from other members for what was
RECEIVED. Each returns a :data:`~exchange.stats.tally.Tally`. When the shape of a source
changes (per-owner blacklists, keyed pseudonym queries), only its function changes.

- alerts: one per OffenceAlert, by its category.
- blacklist: one per entry in ``added`` (by the entry's category) and in ``removed``
  (no category: a removal names none), of DELTA records only (a SNAPSHOT restates the
  owner's whole list; a REPAIR_REQUEST carries no entries).
- pseudonyms: one per PseudonymQuery (by its category); one hit per PseudonymResponse with
  ``hit`` true, by the category of the query it answers (looked up in ``query_categories``;
  None when the query is not known to this node).
- quarantine: one per entry, by its reason code.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from exchange.models import IndicatorMeasure as M
from exchange.models import OffenceCategory
from exchange.models.indicator import REASON_CODE
from exchange.stats.tally import Cell, Tally, cell

Payloads = Iterable[Mapping[str, Any]]


_CATEGORIES = frozenset(c.value for c in OffenceCategory)


def _category(value: Any) -> str | None:
    """The category named, or None (counted without one) for anything else: a stored
    payload never stops a count."""
    return value if isinstance(value, str) and value in _CATEGORIES else None


def count_alerts(sent: Payloads, received: Payloads) -> Tally:
    """ALERTS_SENT / ALERTS_RECEIVED per offence category."""
    tally: Tally = Counter()
    for measure, payloads in ((M.ALERTS_SENT, sent), (M.ALERTS_RECEIVED, received)):
        for p in payloads:
            tally[cell(measure, _category(p.get("category")))] += 1
    return tally


def count_blacklist(sent: Payloads, received: Payloads) -> Tally:
    """BLACKLIST_{ADDED,REMOVED}_{SENT,RECEIVED}: entries of BlacklistDelta records."""
    tally: Tally = Counter()
    for added, removed, payloads in (
        (M.BLACKLIST_ADDED_SENT, M.BLACKLIST_REMOVED_SENT, sent),
        (M.BLACKLIST_ADDED_RECEIVED, M.BLACKLIST_REMOVED_RECEIVED, received),
    ):
        for p in payloads:
            if p.get("kind", "DELTA") != "DELTA":
                continue  # a SNAPSHOT restates a list, a REPAIR_REQUEST asks for one
            for entry in p.get("added") or ():
                tally[cell(added, _category(entry.get("category")))] += 1
            gone = len(p.get("removed") or ())
            if gone:
                tally[cell(removed)] += gone
    return tally


def count_pseudonyms(
    sent_queries: Payloads,
    received_queries: Payloads,
    sent_responses: Payloads,
    received_responses: Payloads,
    query_categories: Mapping[str, str],
) -> Tally:
    """PSEUDONYM_QUERIES_{SENT,RECEIVED} by category, PSEUDONYM_HITS_{SENT,RECEIVED} (answers
    with a hit) by the category of the query answered."""
    tally: Tally = Counter()
    for measure, payloads in (
        (M.PSEUDONYM_QUERIES_SENT, sent_queries),
        (M.PSEUDONYM_QUERIES_RECEIVED, received_queries),
    ):
        for p in payloads:
            tally[cell(measure, _category(p.get("category")))] += 1
    for measure, payloads in (
        (M.PSEUDONYM_HITS_SENT, sent_responses),
        (M.PSEUDONYM_HITS_RECEIVED, received_responses),
    ):
        for p in payloads:
            if p.get("hit") is True:
                category = query_categories.get(str(p.get("query_id")))
                tally[cell(measure, _category(category))] += 1
    return tally


def count_quarantine(reasons: Mapping[str, int]) -> Tally:
    """QUARANTINED by reason code (the store's counts per reason for the period); a reason
    that is not a plain code (never expected) is counted as ``other``, so no stored text
    can travel."""
    tally: Tally = Counter()
    for reason, n in reasons.items():
        code = reason if REASON_CODE.match(reason) else "other"
        key: Cell = (M.QUARANTINED, None, code)
        tally[key] += n
    return tally
