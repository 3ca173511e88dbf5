"""A restarted node resumes exactly at the offsets stored with its records, under load.

aiokafka starts fetching a newly assigned partition from its reset position (the earliest
offset: a node never commits to Kafka) as soon as the group assigns it, while the node's
rebalance listener is still reading the stored offsets from its store. The consumer must
keep such records from reaching the pipeline. These tests count what the consumer itself
takes, life by life, not only what the store ends up holding: a record read twice would
land in the store as a ``replayed`` quarantine entry, or, once purged, be stored again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from exchange.bus import ensure_topics
from exchange.topics import TopicKind
from nodes.daemon import Node
from nodes.store.base import Store
from tests.helpers.federation import Federation
from tests.helpers.load import cpu_hog
from tests.node.helpers import (
    alert_items,
    enqueue,
    fr_and_de,
    node_store,
    quarantine_of,
    stored_ids,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 12
TOTAL = 3000
#: DE is stopped (finishing its batch) each time it has stored this many more records.
LIVES = (700, 1400, 2100)


async def _stored_position(fed: Federation, node: str) -> int:
    """The sum of the offsets ``node`` stored with its records, over every partition."""
    group = fed.config(node).consumer_group
    async with node_store(fed, node) as store:
        return sum((await store.load_offsets(group)).values())


def _answer_slowly(store: Store, delay_s: float = 0.3) -> None:
    """Make ``store`` read the stored offsets ``delay_s`` late, as a busy disk or a
    PostgreSQL server across a network does: the window in which aiokafka fetches from the
    reset position while the rebalance listener waits for the store."""
    load_offsets = store.load_offsets

    async def late(group: str) -> dict[tuple[str, int], int]:
        await asyncio.sleep(delay_s)  # injected latency, not a wait for a condition
        return await load_offsets(group)

    store.load_offsets = late  # type: ignore[method-assign]


async def _live(fed: Federation, until_stored: int | None) -> tuple[int, int]:
    """Run DE until it has stored ``until_stored`` records in all (None: everything), stop
    it mid-stream, and return (records its consumer took in this life, records re-read)."""
    before = await _stored_position(fed, "DE")
    de = Node(fed.config("DE"))
    _answer_slowly(de._consumer_store)
    await de.start()
    try:
        target = TOTAL if until_stored is None else until_stored
        await de.wait_until(lambda: before + de.metrics.stored.value() >= target, within_s=120)
    finally:
        await de.stop()
    after = await _stored_position(fed, "DE")
    taken = int(de.metrics.consumed.value())
    assert taken == after - before, (
        f"DE's consumer took {taken} records in a life that moved its stored offsets by "
        f"{after - before}: it read records it had stored before"
    )
    return taken, int(de.metrics.reread.value())


async def test_each_restart_resumes_exactly_at_the_stored_offsets_under_load(
    tmp_path: Path, kafka_bootstrap: str, topic_prefix: str
) -> None:
    """DE, stopped mid-stream three times on twelve partitions beside a CPU hog, takes every
    record exactly once across its four lives: nothing below its stored offsets is read."""
    fed = fr_and_de(
        tmp_path,
        kafka_bootstrap,
        topic_prefix,
        per_node={"DE": {"consumer": {"max_records": 50, "poll_timeout_ms": 50}}},
    )
    await ensure_topics(fed.config("DE").kafka.settings(), topic_prefix, partitions=PARTITIONS)
    await enqueue(fed, "FR", alert_items(fed, "FR", TOTAL))
    fr = Node(fed.config("FR"))
    await fr.start()
    try:
        await fr.wait_published(TOTAL, within_s=120)
    finally:
        await fr.stop()
    with cpu_hog():
        lives = [await _live(fed, stop_at) for stop_at in (*LIVES, None)]
    assert [reread for _, reread in lives] == [0, 0, 0, 0]
    assert sum(taken for taken, _ in lives) == TOTAL
    assert all(taken > 0 for taken, _ in lives)
    stored = await stored_ids(fed, "DE", fed.topic(TopicKind.ALERTS))
    assert len(stored) == len(set(stored)) == TOTAL
    assert await quarantine_of(fed, "DE") == []
