"""The node end to end on a three-broker cluster, beside one broker, and a leader's failover.

``20,000 * BENCH_SCALE`` OffenceAlerts of about 1 KB are enqueued into FR's outbox (not
timed); then DE and FR run in this process (SQLite stores, test-tuned configs, FR skips its
own messages) and the clock runs from FR's start until DE has stored them all. Once on the
harness's single broker (topics RF 1: the baseline, same run) and once on a private
three-broker cluster from ``deploy/kafka/cluster.sh`` (topics RF 3, ``min.insync.replicas``
2; the producer's ``acks=all`` then waits for two replicas).

Failover: on the cluster, while FR streams ``10,000 * BENCH_SCALE`` alerts to DE, the broker
leading most alerts partitions is killed (SIGKILL). The figure is the time from the kill to
the first record DE stores from one of the partitions that broker led, signed after the
kill (its ``received_at`` minus the kill time): leader election, the producer's and the
consumer's metadata refresh, and one round of the pipeline.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from exchange.bus import KafkaSettings, ensure_topics
from exchange.topics import trust_topic
from nodes.config import load_config
from nodes.daemon import Node
from tests.bench.harness import BenchContext, Figure
from tests.helpers.broker import unique_prefix
from tests.helpers.cluster import LocalCluster, partition_state
from tests.helpers.federation import Federation, make_federation
from tests.node.helpers import alert_items, enqueue

FAST: dict[str, Any] = {
    "http": {"listen": ""},
    "publisher": {"poll_interval_ms": 50},
    "consumer": {"poll_timeout_ms": 100, "own_messages": "skip"},
}


async def _federation(directory: Path, bootstrap: str, rf: int) -> Federation:
    fed = make_federation(directory, prefix=unique_prefix(), bootstrap=bootstrap)
    settings = KafkaSettings(bootstrap_servers=bootstrap, topic_replication_factor=rf)
    isr = {"min.insync.replicas": str(min(rf, 2))}
    await ensure_topics(settings, fed.prefix, configs=isr)
    await ensure_topics(settings, {trust_topic(fed.prefix): 1}, configs=isr)
    return fed


def _node(fed: Federation, name: str, rf: int) -> Node:
    kafka = {"topic_replication_factor": rf}
    return Node(load_config(fed.config_path(name), kafka=kafka, **FAST))


async def end_to_end(directory: Path, bootstrap: str, rf: int, n: int) -> float:
    """Alerts per second from FR's outbox into DE's store."""
    fed = await _federation(directory, bootstrap, rf)
    await enqueue(fed, "FR", alert_items(fed, "FR", n))
    fr, de = _node(fed, "FR", rf), _node(fed, "DE", rf)
    await de.start()
    start = time.perf_counter()
    await fr.start()
    try:
        await de.wait_until(lambda: de.metrics.stored.value() >= n, 600)
        return n / (time.perf_counter() - start)
    finally:
        await fr.stop()
        await de.stop()


async def failover_ms(directory: Path, cluster: LocalCluster, n: int) -> float:
    """Milliseconds from killing the leading broker to DE storing a record written after."""
    fed = await _federation(directory, cluster.bootstrap, 3)
    topic = fed.topic()
    fr, de = _node(fed, "FR", 3), _node(fed, "DE", 3)
    await de.start()
    await fr.start()
    try:
        await enqueue(fed, "FR", alert_items(fed, "FR", n // 4))
        await de.wait_until(lambda: de.metrics.stored.value() >= n // 8, 300)
        state = await partition_state(cluster.bootstrap, topic)
        victim = Counter(lead for lead, _ in state.values()).most_common(1)[0][0]
        led = sorted(p for p, (lead, _) in state.items() if lead == victim)
        killed_us = time.time() * 1_000_000  # the store keeps times in microseconds
        await asyncio.to_thread(cluster.kill, victim)
        await enqueue(fed, "FR", alert_items(fed, "FR", n - n // 4, start=n // 4))
        query = (
            "SELECT kafka_partition, min(received_at) FROM records"
            " WHERE topic = ? AND created_at > ? GROUP BY kafka_partition"
        )
        first: int | None = None
        async with asyncio.timeout(300):
            while first is None:
                with sqlite3.connect(fed.db_path("DE")) as db:
                    rows = db.execute(query, (topic, killed_us)).fetchall()
                times = [t for p, t in rows if p in led]
                first = min(times) if times else None
                await asyncio.sleep(0.1)
        await de.wait_until(lambda: de.metrics.stored.value() >= n, 600)
        await asyncio.to_thread(cluster.restart, victim)
        return (first - killed_us) / 1000
    finally:
        await fr.stop()
        await de.stop()


async def run(ctx: BenchContext) -> list[Figure]:
    n = ctx.n(20_000, minimum=1000)
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        single = await end_to_end(Path(tmp) / "single", ctx.bootstrap, 1, n)
        cluster = LocalCluster()
        await asyncio.to_thread(cluster.start)
        try:
            three = await end_to_end(Path(tmp) / "three", cluster.bootstrap, 3, n)
            failover = await failover_ms(Path(tmp) / "failover", cluster, ctx.n(10_000, 1000))
        finally:
            await asyncio.to_thread(cluster.stop)
            await asyncio.to_thread(cluster.reset)
    single_name = "node end to end, one broker (RF 1, acks=all)"
    return [
        Figure(single_name, single, "msg/s"),
        Figure(
            "node end to end, three brokers (RF 3, min ISR 2, acks=all)",
            three,
            "msg/s",
            single_name,
            single,
        ),
        Figure("leader killed -> first record stored after it", failover, "ms"),
    ]
