"""On a three-broker cluster (RF 3, min.insync.replicas 2, acks=all), a broker's death loses
nothing: FR's stream to DE survives the kill -9 of partition leaders, and with two brokers
down FR's records wait in its outbox until one returns."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from exchange.bus import KafkaSettings, ensure_topics
from exchange.cli import main as exchange_main
from exchange.topics import trust_topic
from nodes.daemon import Node
from tests.helpers.broker import unique_prefix
from tests.helpers.cluster import LocalCluster, partition_state, wait_in_sync
from tests.helpers.federation import Federation, make_federation
from tests.helpers.nodes import make_node
from tests.node.helpers import alert_items, enqueue, outbox_counts

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

TOTAL = 20_000
#: Each node skips its own records (the test counts what the others stored).
CONSUMER = {"poll_timeout_ms": 100, "own_messages": "skip"}


async def federation(tmp_path: Path, cluster: LocalCluster) -> Federation:
    """FR, DE, NL whose topics have RF 3 and min.insync.replicas 2."""
    fed = make_federation(tmp_path / "fed", prefix=unique_prefix(), bootstrap=cluster.bootstrap)
    settings = KafkaSettings(bootstrap_servers=cluster.bootstrap, topic_replication_factor=3)
    isr = {"min.insync.replicas": "2"}
    await ensure_topics(settings, fed.prefix, configs=isr)
    await ensure_topics(settings, {trust_topic(fed.prefix): 1}, configs=isr)
    return fed


def node(fed: Federation, name: str) -> Node:
    kafka = {"topic_replication_factor": 3, "request_timeout_ms": 15_000}
    return make_node(fed, name, kafka=kafka, consumer=CONSUMER)


def stored_message_ids(fed: Federation, name: str) -> Counter[str]:
    """How often each message id is in ``name``'s store (records table)."""
    with sqlite3.connect(fed.db_path(name)) as db:
        rows = db.execute("SELECT message_id FROM records").fetchall()
    return Counter(str(r[0]) for r in rows)


async def leader_broker(cluster: LocalCluster, topic: str, down: tuple[int, ...] = ()) -> int:
    """The broker leading most partitions of ``topic``."""
    state = await partition_state(cluster.bootstrap_without(*down), topic)
    leaders = Counter(lead for lead, _ in state.values() if lead >= 0)
    return leaders.most_common(1)[0][0]


async def audit_clean(fed: Federation, cluster: LocalCluster) -> None:
    report = fed.directory / "audit.json"
    args = ["audit", "replay", "--bootstrap", cluster.bootstrap, "--prefix", fed.prefix,
            "--trust", str(fed.trust_path), "--report", str(report), "--timeout", "60"]  # fmt: skip
    code = await asyncio.to_thread(exchange_main, args)
    violations = json.loads(report.read_text()).get("violations")
    assert code == 0, violations


async def test_killing_two_leaders_in_turn_loses_and_duplicates_nothing(
    tmp_path: Path, cluster: LocalCluster
) -> None:
    """While FR publishes 20,000 alerts and DE consumes them, the leader of the alerts
    partitions is killed (-9) and restarted, then a second broker likewise: DE ends with
    exactly the 20,000 alerts, each once, and the auditor's replay is clean."""
    fed = await federation(tmp_path, cluster)
    topic = fed.topic()
    items = alert_items(fed, "FR", TOTAL, size=600)
    fr, de = node(fed, "FR"), node(fed, "DE")
    await de.start()
    await fr.start()
    stored = de.metrics.stored.value
    try:
        await enqueue(fed, "FR", items[:6000])
        await de.wait_until(lambda: stored() >= 2000, 180)
        first = await leader_broker(cluster, topic)
        await asyncio.to_thread(cluster.kill, first)
        await enqueue(fed, "FR", items[6000:12000])
        await de.wait_until(lambda: stored() >= 7000, 240)  # flowing on two brokers
        await asyncio.to_thread(cluster.restart, first)
        await wait_in_sync(cluster.bootstrap, topic, 3)
        second = await leader_broker(cluster, topic)
        if second == first:
            second = first % 3 + 1
        await asyncio.to_thread(cluster.kill, second)
        await enqueue(fed, "FR", items[12000:])
        await de.wait_until(lambda: stored() >= 14000, 240)
        await asyncio.to_thread(cluster.restart, second)
        await de.wait_until(lambda: stored() >= TOTAL, 300)
        await wait_in_sync(cluster.bootstrap, topic, 3)
    finally:
        await fr.stop()
        await de.stop()
    ids = stored_message_ids(fed, "DE")
    assert len(ids) == TOTAL
    assert max(ids.values()) == 1
    assert de.metrics.quarantined.value() == 0
    assert outbox_counts(fed, "FR") == {"sent": TOTAL}
    await audit_clean(fed, cluster)


async def test_with_two_brokers_down_publishing_waits_in_the_outbox_and_catches_up(
    tmp_path: Path, cluster: LocalCluster
) -> None:
    """With two of three brokers dead nothing can be written (min.insync.replicas 2): FR's
    alerts stay in its outbox, none lost; once one broker returns, DE gets every one."""
    fed = await federation(tmp_path, cluster)
    fr, de = node(fed, "FR"), node(fed, "DE")
    await de.start()
    await fr.start()
    try:
        await enqueue(fed, "FR", alert_items(fed, "FR", 100))
        await de.wait_until(lambda: de.metrics.stored.value() >= 100, 120)
        await asyncio.to_thread(cluster.kill, 2)
        await asyncio.to_thread(cluster.kill, 3)
        await enqueue(fed, "FR", alert_items(fed, "FR", 300, start=100))
        # the publisher tries and fails: the 300 stay unsent in the outbox
        await fr.wait_until(lambda: bool(fr.publisher and fr.publisher.last_error), 120)
        assert outbox_counts(fed, "FR").get("sent", 0) < 400
        await asyncio.to_thread(cluster.restart, 2)
        await de.wait_until(lambda: de.metrics.stored.value() >= 400, 300)
        await asyncio.to_thread(cluster.restart, 3)
    finally:
        await fr.stop()
        await de.stop()
    ids = stored_message_ids(fed, "DE")
    assert len(ids) == 400
    assert max(ids.values()) == 1
    assert outbox_counts(fed, "FR") == {"sent": 400}
    # Not audited clean: a batch the leader appended while its dead followers were still in
    # the ISR is acknowledged to nobody; the publisher's retry after its ack timeout (a new
    # producer session, so idempotence cannot help) puts a second, byte-identical copy on
    # the bus, which DE's store keeps once and the auditor reports as duplicate_message_id.
