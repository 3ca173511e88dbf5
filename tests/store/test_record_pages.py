"""``Store.page_records``: keyset pages of the stored records, oldest message id first (then
sender), against SQLite and a real PostgreSQL alike. Pages are tiny so that every walk
crosses several page boundaries."""

from __future__ import annotations

import random
import sqlite3
from dataclasses import replace
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from exchange.uuid7 import uuid7
from nodes.store.base import MessageKey, RecordState, Store, StoredRecord, StoreError
from nodes.store.record_pages import page_query
from tests.store.conftest import NOW, TOPIC, Backend, commit, make_record, retraction

OTHER = "ncp.indicators.v1"
UNCHOSEN = "ncp.blacklist.v1"


async def walk(store: Store, topics: list[str], *, size: int, **options: Any) -> list[list[Any]]:
    """Every page of a walk from the start, each asked for just past the previous one."""
    pages: list[list[StoredRecord]] = []
    after: MessageKey | None = None
    while True:
        page = await store.page_records(topics, after=after, limit=size, **options)
        pages.append(page)
        if len(page) < size:
            return pages
        after = (page[-1].sender, page[-1].message_id)


def in_order(records: list[StoredRecord]) -> list[StoredRecord]:
    return sorted(records, key=lambda r: (r.message_id.bytes, r.sender))


def history(count: int) -> list[StoredRecord]:
    """``count`` records a minute apart from three senders on three topics, shuffled so that
    neither insertion nor arrival order is message-id order."""
    topics, senders = (TOPIC, OTHER, UNCHOSEN), ("FR", "DE", "NL")
    records = [
        make_record(
            offset=i,
            at=NOW - timedelta(minutes=count - i),
            topic=topics[i % 3],
            sender=senders[i % 2 + (i % 5 == 0)],
        )
        for i in range(count)
    ]
    random.Random(7).shuffle(records)
    return records


async def test_pages_hold_every_record_of_the_chosen_topics_once_in_message_id_order(
    store: Store,
) -> None:
    """Walking in pages of 4 yields each record of the chosen topics exactly once, in
    message-id order across page boundaries; other topics stay out; pages are full but the
    last."""
    records = history(30)
    await commit(store, records=records)
    pages = await walk(store, [TOPIC, OTHER], size=4)
    chosen = in_order([r for r in records if r.topic != UNCHOSEN])
    assert [r for page in pages for r in page] == chosen
    assert [len(p) for p in pages] == [4] * (len(chosen) // 4) + [len(chosen) % 4]


async def test_since_keeps_the_records_received_at_or_after_it_whatever_their_ids(
    store: Store,
) -> None:
    """``since`` filters on arrival, inclusive: a record with an old id that arrived late is in,
    one whose sender stamped a future id but that arrived before ``since`` is out."""
    records = history(12)
    since = NOW - timedelta(minutes=6)
    late = replace(make_record(offset=90, at=NOW - timedelta(days=3)), received_at=NOW)
    before = since - timedelta(microseconds=1)
    early = replace(make_record(offset=91, at=NOW + timedelta(days=3)), received_at=before)
    edge = replace(make_record(offset=92, at=NOW - timedelta(days=1)), received_at=since)
    await commit(store, records=[*records, late, early, edge])
    pages = await walk(store, [TOPIC, OTHER, UNCHOSEN], size=3, since=since)
    got = [r for page in pages for r in page]
    assert got == in_order([r for r in [*records, late, edge] if r.received_at >= since])
    assert {late.message_id, edge.message_id} <= {r.message_id for r in got}
    assert early.message_id not in {r.message_id for r in got}


async def test_withdrawn_records_are_left_out_unless_asked_for(store: Store) -> None:
    """As ``list_records``: ACTIVE records by default; WITHDRAWN ones too, marked, in their
    place in the order, when asked."""
    records = history(10)
    await commit(store, records=records)
    withdrawn = records[:3]
    await commit(store, retractions=[retraction(r, purge=False) for r in withdrawn])
    topics = [TOPIC, OTHER, UNCHOSEN]
    active = [r for page in await walk(store, topics, size=3) for r in page]
    assert active == in_order(records[3:])
    every = [r for page in await walk(store, topics, size=3, include_withdrawn=True) for r in page]
    assert [r.message_id for r in every] == [r.message_id for r in in_order(records)]
    assert {r.message_id for r in every if r.state is RecordState.WITHDRAWN} == {
        r.message_id for r in withdrawn
    }


async def test_one_id_used_by_several_senders_is_walked_once_each_across_a_boundary(
    store: Store,
) -> None:
    """Wire v2: a member may reuse another's message id. The walk orders one id's records by
    sender, so a page boundary inside them neither skips nor repeats one."""
    shared = uuid7(NOW)
    squatters = [make_record(offset=i, sender=s, message_id=shared) for i, s in enumerate("PLIT")]
    others = [make_record(offset=10 + i, at=NOW + timedelta(seconds=i - 2)) for i in range(4)]
    await commit(store, records=[*squatters, *others])
    for size in (1, 2, 3):
        got = [r for page in await walk(store, [TOPIC], size=size) for r in page]
        assert got == in_order([*squatters, *others])
        assert [r.sender for r in got if r.message_id == shared] == ["I", "L", "P", "T"]


async def test_an_empty_topic_list_is_an_empty_page(store: Store) -> None:
    """No topics chosen: nothing, not every record."""
    await commit(store, records=history(3))
    assert await store.page_records([], limit=10) == []


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"topics": TOPIC}, "topics"),
        ({"topics": [TOPIC, 3]}, "topics"),
        ({"topics": [TOPIC], "limit": 0}, "limit"),
        ({"topics": [TOPIC], "since": NOW.replace(tzinfo=None)}, "since"),
        ({"topics": [TOPIC], "after": ("FR", "not-a-uuid")}, "after"),
        ({"topics": [TOPIC], "after": uuid7(NOW)}, "after"),
    ],
)
async def test_bad_arguments_are_refused_naming_the_argument(
    store: Store, options: dict[str, Any], field: str
) -> None:
    """A wrong argument is a StoreError naming it, before any query runs."""
    with pytest.raises(StoreError, match=f" {field}: must be"):
        await store.page_records(**options)


async def test_the_page_query_walks_the_message_id_index(store: Store, backend: Backend) -> None:
    """The plan of every page (first or later, with ``since`` or not) reads records along the
    existing ``records_message_id`` index; no full sort of the table (SQLite sorts only the
    senders of one id, PostgreSQL does an incremental sort presorted by message id)."""
    cursor = ("FR", uuid7(NOW))
    for after in (None, cursor):
        for since in (None, NOW):
            if backend.name == "sqlite":
                plan = await sqlite_plan(backend, after, since)
                assert "USING INDEX records_message_id" in plan
                assert "TEMP B-TREE FOR ORDER BY" not in plan
            else:
                plan = await postgres_plan(backend, after, since)
                assert "Index Scan using records_message_id on records" in plan
                assert "Presorted Key: message_id" in plan
                assert "Seq Scan" not in plan
                assert "\n  ->  Sort" not in plan


async def sqlite_plan(backend: Backend, after: MessageKey | None, since: Any) -> str:
    query = page_query(
        "sqlite", [TOPIC, OTHER], since=since, after=after, include_withdrawn=False, limit=200
    )
    assert query is not None
    conn = sqlite3.connect(backend.url.removeprefix("sqlite:///"))
    try:
        rows = conn.execute(f"EXPLAIN QUERY PLAN {query[0]}", query[1]).fetchall()
    finally:
        conn.close()
    return "\n".join(str(r[-1]) for r in rows)


async def postgres_plan(backend: Backend, after: MessageKey | None, since: Any) -> str:
    """The plan with sequential scans and full sorts priced out: on a table this small the
    planner would rightly sort it all, so the test shows what the query allows (walking the
    index in order) rather than what a few rows cost. On a populated, analysed table
    (20,000 records) the planner picks the same plan unprompted."""
    query = page_query(
        "postgres", [TOPIC, OTHER], since=since, after=after, include_withdrawn=False, limit=200
    )
    assert query is not None
    conn = await asyncpg.connect(backend.url)
    try:
        await conn.execute("SET enable_seqscan = off")
        await conn.execute("SET enable_sort = off")
        rows = await conn.fetch(f"EXPLAIN {query[0]}", *query[1])
    finally:
        await conn.close()
    return "\n".join(r[0] for r in rows)
