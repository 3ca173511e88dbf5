"""The statistics queries read the same counts from SQLite and PostgreSQL: what was sent
(acknowledged outbox items), received from others, and quarantined, inside the period only."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import timedelta

from exchange.models import IndicatorMeasure as M
from exchange.stats.period import PeriodKind, period_containing
from exchange.stats.tally import cell
from nodes.stats.publish import tally_rows
from nodes.stats.queries import own_latest, period_rows, stored_indicators
from nodes.store.base import ChainHead, RecordState, Store, StoredRecord
from tests.store.conftest import (
    NOW,
    TOPIC,
    commit,
    make_quarantine,
    make_record,
    outbox_item,
    signed,
)

PERIOD = period_containing(NOW.date(), PeriodKind.MONTH)
START, END = PERIOD.bounds()


def received(
    offset: int, sender: str, message_type: str, payload: dict[str, object]
) -> StoredRecord:
    return replace(
        make_record(sender=sender, offset=offset),
        message_type=message_type,
        key=str(payload.get("query_id", f"k{offset}")),
        payload=payload,
    )


async def test_period_rows_count_the_same_on_both_backends(store: Store) -> None:
    """Alerts, a pseudonym hit and quarantine entries in the period count; the node's own
    read-back records, unsent items and anything outside the period do not. Indicators
    withdrawn by their sender are not read for the report."""
    before = START - timedelta(seconds=1)
    query = {"query_id": "q1", "category": "ILLICIT_DRUG_TRADE"}
    await commit(
        store,
        records=[
            received(0, "DE", "OffenceAlert", {"category": "IDENTITY_THEFT"}),
            received(1, "NL", "OffenceAlert", {"category": "IDENTITY_THEFT"}),
            received(2, "FR", "OffenceAlert", {"category": "IDENTITY_THEFT"}),  # our own
            replace(received(3, "DE", "OffenceAlert", {"category": "OTHER"}), received_at=before),
            received(4, "DE", "PseudonymQuery", query),
            received(5, "NL", "PseudonymResponse", {"query_id": "q1", "hit": True}),
            received(6, "DE", "StatisticalIndicator", {"country": "DE"}),
            replace(  # withdrawn by its sender: not in force
                received(7, "NL", "StatisticalIndicator", {"country": "NL"}),
                state=RecordState.WITHDRAWN,
            ),
        ],
        quarantined=[
            make_quarantine("bad_signature", 10),
            make_quarantine("bad_signature", 11),
            make_quarantine("malformed", 12, received_at=before),
        ],
    )
    sent = replace(outbox_item(0), payload={"category": "OTHER"})
    unsent = replace(outbox_item(1), payload={"category": "OTHER"})
    a, _ = await store.enqueue([sent, unsent])
    await store.mark_signed([signed(sent, a, 1)], [ChainHead(TOPIC, 1, None)])
    await store.mark_sent([a], NOW)

    rows = await period_rows(store, "FR", START, END)
    assert Counter(tally_rows(rows)) == {
        cell(M.ALERTS_RECEIVED, "IDENTITY_THEFT"): 2,
        cell(M.ALERTS_SENT, "OTHER"): 1,
        cell(M.PSEUDONYM_QUERIES_RECEIVED, "ILLICIT_DRUG_TRADE"): 1,
        cell(M.PSEUDONYM_HITS_RECEIVED, "ILLICIT_DRUG_TRADE"): 1,
        (M.QUARANTINED, None, "bad_signature"): 2,
    }
    assert [r.sender for r in await stored_indicators(store)] == ["DE"]


async def test_own_latest_is_the_newest_queued_indicator_for_the_key(store: Store) -> None:
    """Revisions are read back from the outbox, newest first."""
    key = f"FR:{PERIOD.start:%Y-%m-%d}"
    assert await own_latest(store, key) is None
    items = [
        replace(
            outbox_item(n), key=key, message_type="StatisticalIndicator", payload={"revision": n}
        )
        for n in (1, 2)
    ]
    await store.enqueue(items)
    assert await own_latest(store, key) == {"revision": 2}
