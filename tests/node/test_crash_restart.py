"""Nothing lost, nothing twice: nodes killed with SIGKILL mid-stream and restarted.

The killed node runs as a child process (``exchange node run``); the other node runs in
this test's event loop. Both use the real broker and their real SQLite stores. The last
test sets up, deterministically, the state a publisher crash between sending and marking
sent leaves behind, which a random SIGKILL only sometimes hits.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from exchange.bus import ensure_topics
from exchange.topics import TopicKind
from exchange.trust import load_trust_list
from nodes.daemon import Node
from nodes.publisher import Publisher
from tests.helpers.federation import Federation
from tests.node.helpers import (
    NodeProcess,
    alert_items,
    count_stored,
    enqueue,
    fr_and_de,
    node_store,
    outbox_counts,
    outbox_ids,
    quarantine_of,
    stored_ids,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: A killed consumer's group membership lingers until its session times out (10 s), so a
#: restarted node may wait that long before it is given partitions again.
REJOIN_S = 60.0


async def _feed(
    fed: Federation, node: str, start: int, count: int, wave: int, pause: float
) -> None:
    """Enqueue ``count`` alerts into ``node``'s outbox, ``wave`` at a time, ``pause`` s apart."""
    async with node_store(fed, node) as store:
        for first in range(start, start + count, wave):
            await store.enqueue(
                alert_items(fed, node, min(wave, start + count - first), start=first)
            )
            await asyncio.sleep(pause)


async def _kill_when_stored(de: NodeProcess, fed: Federation, at_least: int, total: int) -> int:
    """SIGKILL DE as soon as it has stored ``at_least`` records; returns what it had stored."""
    await wait_for(
        lambda: count_stored(fed, "DE") >= at_least,
        within_s=REJOIN_S,
        what=f"DE storing {at_least} records",
        detail=de.log_tail,
        watch=(de,),
        interval=0.01,
    )
    assert de.kill() == -9
    stored = count_stored(fed, "DE")
    assert 0 < stored < total, "the kill must land mid-stream"
    return stored


async def test_consumer_killed_mid_stream_stores_every_alert_exactly_once(
    tmp_path: Path, kafka_bootstrap: str, topic_prefix: str
) -> None:
    """DE, killed twice with SIGKILL while storing FR's stream, ends with exactly FR's sent set."""
    fed = fr_and_de(
        tmp_path,
        kafka_bootstrap,
        topic_prefix,
        tables={"consumer": {"max_records": 100}},  # many small batches: kills land mid-commit
    )
    phase, total = 1000, 3000
    fr = Node(fed.config("FR"))
    de = NodeProcess(fed.config_path("DE"), tmp_path / "de.log")
    feeders: list[asyncio.Task[None]] = []
    await fr.start()
    try:
        de.start()
        stored_at_kill = []
        for k in range(2):  # the stream is still being fed when each kill lands
            feeders.append(
                asyncio.create_task(_feed(fed, "FR", k * phase, phase, wave=50, pause=0.1))
            )
            stored_at_kill.append(await _kill_when_stored(de, fed, k * phase + phase // 2, total))
            await feeders[-1]
            de.start()
        await _feed(fed, "FR", 2 * phase, phase, wave=200, pause=0.0)
        await wait_for(
            lambda: count_stored(fed, "DE") >= total,
            within_s=REJOIN_S + 30,
            what=f"DE storing all {total}",
            detail=de.log_tail,
            watch=(de,),
        )
        await wait_for(
            lambda: outbox_counts(fed, "FR") == {"sent": total}, within_s=30, what="FR sending all"
        )
        assert de.terminate() == 0, de.log_tail()
    finally:
        for feeder in feeders:
            feeder.cancel()
        de.close()
        await fr.stop()
    assert stored_at_kill[0] < stored_at_kill[1]
    sent = outbox_ids(fed, "FR")["sent"]
    stored = await stored_ids(fed, "DE", fed.topic(TopicKind.ALERTS))
    assert len(stored) == total
    assert set(stored) == set(sent)
    # The stored offsets moved with the records: a restart re-reads nothing already stored.
    assert await quarantine_of(fed, "DE") == []


async def test_publisher_killed_mid_publish_delivers_every_alert_exactly_once(
    tmp_path: Path, kafka_bootstrap: str, topic_prefix: str
) -> None:
    """FR, killed with SIGKILL mid-publish and restarted, gets every queued alert stored once."""
    fed = fr_and_de(
        tmp_path, kafka_bootstrap, topic_prefix, tables={"publisher": {"batch_size": 500}}
    )
    total = 10_000
    await enqueue(fed, "FR", alert_items(fed, "FR", total))
    de = Node(fed.config("DE"))
    fr = NodeProcess(fed.config_path("FR"), tmp_path / "fr.log")
    await de.start()
    try:
        fr.start()

        def mid_publish() -> bool:
            counts = outbox_counts(fed, "FR")
            return counts.get("sent", 0) > 0 and counts.get("signed", 0) > 0

        await wait_for(
            mid_publish,
            within_s=60,
            what="FR having items signed and items sent",
            interval=0.005,
            detail=fr.log_tail,
            watch=(fr,),
        )
        assert fr.kill() == -9
        at_kill = outbox_counts(fed, "FR")
        assert 0 < at_kill.get("sent", 0) < total, at_kill
        fr.start()
        await wait_for(
            lambda: outbox_counts(fed, "FR") == {"sent": total},
            within_s=60,
            what="FR sending everything after the restart",
            detail=fr.log_tail,
            watch=(fr,),
        )
        await wait_for(
            lambda: count_stored(fed, "DE") >= total, within_s=60, what="DE storing everything"
        )
        assert fr.terminate() == 0, fr.log_tail()
    finally:
        fr.close()
        await de.stop()
    sent = outbox_ids(fed, "FR")["sent"]
    assert len(set(sent)) == total
    stored = await stored_ids(fed, "DE", fed.topic(TopicKind.ALERTS))
    assert len(stored) == total
    assert set(stored) == set(sent)
    # Items signed but not yet marked sent were re-sent with their exact bytes: DE keeps the
    # first copy and quarantines any second one as replayed, never as anything else.
    quarantined = await quarantine_of(fed, "DE")
    assert {q.reason for q in quarantined} <= {"replayed"}
    assert {q.message_id for q in quarantined} <= set(sent)


async def test_signed_items_resent_after_a_crash_are_stored_once(
    tmp_path: Path, kafka_bootstrap: str, topic_prefix: str
) -> None:
    """Items on the bus but not yet marked sent when FR crashed are re-sent with the same bytes:
    DE stores each once and quarantines every second copy as replayed."""
    fed = fr_and_de(tmp_path, kafka_bootstrap, topic_prefix, tuned=True)
    total = 300
    await enqueue(fed, "FR", alert_items(fed, "FR", total))
    config = fed.config("FR")
    await ensure_topics(config.kafka.settings(), fed.prefix)
    # What a crash right after sending leaves: signed items, on the bus, not marked sent.
    async with node_store(fed, "FR") as store:
        publisher = Publisher(
            node=config.node,
            store=store,
            kafka=config.kafka.settings(),
            signer=fed.signer("FR"),
            trust=load_trust_list(config.keys.trust_list, config.root_public_key_path),
            config=config.publisher,
        )
        signed = await publisher.sign_pending()
    assert len(signed) == total
    # Idempotent, as FR's own producer is: a retried request must not add a third copy.
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        for item in signed:
            assert item.value is not None
            await producer.send(item.topic, item.value, key=item.key.encode())
        await producer.flush()
    finally:
        await producer.stop()
    assert outbox_counts(fed, "FR") == {"signed": total}

    fr, de = Node(config), Node(fed.config("DE"))
    await de.start()
    await fr.start()  # the restart: the SIGNED items go out again, byte for byte
    try:
        await wait_for(
            lambda: outbox_counts(fed, "FR") == {"sent": total},
            within_s=60,
            what="FR re-sending its signed items",
        )
        await wait_for(
            lambda: de.metrics.quarantined.value("replayed") >= total,
            within_s=60,
            what="DE quarantining the second copies",
        )
        await de.wait_caught_up()
        # Counted where DE reads them: each of the two copies once, none read again.
        assert de.metrics.consumed.value() == 2 * total
        assert de.metrics.reread.value() == 0
    finally:
        await fr.stop()
        await de.stop()
    ids = {item.message_id for item in signed}
    assert set(outbox_ids(fed, "FR")["sent"]) == ids
    stored = await stored_ids(fed, "DE", fed.topic(TopicKind.ALERTS))
    assert len(stored) == total
    assert set(stored) == ids
    quarantined = await quarantine_of(fed, "DE")
    assert sorted((q.reason, q.message_id) for q in quarantined) == sorted(
        ("replayed", i) for i in ids
    )
