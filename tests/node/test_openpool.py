"""Opening records in worker processes (nodes.openpool) gives exactly what the threads give,
and a worker killed mid-stream loses nothing."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import struct
import time
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer

from exchange.bus import ensure_topics
from exchange.ids import NodeId
from exchange.seal import Sealed
from exchange.topics import TopicKind, topic_name
from nodes.config import load_config
from nodes.daemon import Node
from nodes.openpool import BREAK_GRACE_S, MIN_CHUNK, OpenPool, _watched
from nodes.pipeline import PipelineContext, RawRecord, process
from tests.helpers.federation import ALERTS, NOW, Federation
from tests.node.test_pipeline import context, raw


@pytest.fixture
async def pool_ctx(federation: Federation) -> AsyncIterator[tuple[OpenPool, PipelineContext]]:
    base = context(federation)
    other = topic_name(TopicKind.BLACKLIST, "ncp")
    own = frozenset(k.key_id for k in federation.trust.member(NodeId("DE")).signing_keys)
    ctx = PipelineContext(
        node=base.node,
        trust=base.trust,
        decryption_key=base.decryption_key,
        policies={ALERTS: base.policies[ALERTS], other: base.policies[ALERTS]},
        skip_key_ids=own,
    )
    pool = OpenPool(ctx, 2)
    try:
        await pool.start()
        yield pool, ctx
    finally:
        pool.shutdown()


def mixed_batch(federation: Federation) -> list[RawRecord]:
    """Valid, garbage, tombstone, forged, moved, encrypted (for DE and for NL), from the
    future, own, retraction and replayed records, then enough valid ones for several chunks."""
    fr, nl = federation.member("FR"), federation.member("NL")
    first = fr.alert(title="first")
    forged = bytearray(fr.alert().value)
    forged[30] ^= 0x01
    moved = fr.alert()
    for_de = fr.alert(title="Red for DE", tlp="RED", code="H2", recipients=["DE"])
    for_nl = fr.alert(title="Red for NL", tlp="RED", code="H2", recipients=["NL"])
    future = fr.alert(now=NOW + timedelta(hours=1))
    own = federation.member("DE").alert()
    retraction = fr.retraction(first)
    other = topic_name(TopicKind.BLACKLIST, "ncp")
    batch = [
        raw(first, 0),
        RawRecord(ALERTS, 0, 1, b"k", b"\x00not avro at all"),
        RawRecord(ALERTS, 0, 2, b"k", None),
        RawRecord(ALERTS, 0, 3, first.key, bytes(forged)),
        RawRecord(ALERTS, 0, 4, b"another-key", moved.value),
        raw(moved, 5, topic=other),
        raw(for_de, 6),
        raw(for_nl, 7),
        raw(future, 8),
        raw(own, 9),
        raw(retraction, 10),
        raw(first, 11),  # replayed within the batch
    ]
    batch += [raw(nl.alert(title=f"bulk {i}"), 12 + i, partition=1) for i in range(MIN_CHUNK * 8)]
    return batch


async def test_the_pool_decides_a_mixed_batch_exactly_as_the_threads_do(
    federation: Federation, pool_ctx: tuple[OpenPool, PipelineContext]
) -> None:
    """Records, quarantine reasons and details, skips, retractions and offsets are the same
    whether the batch is opened in worker processes or in this process."""
    pool, ctx = pool_ctx
    batch = mixed_batch(federation)
    here = process(batch, ctx, NOW)
    there = process(batch, ctx, NOW, (), await pool.open(batch, NOW))
    assert there.records == here.records
    assert there.quarantined == here.quarantined
    assert there.skipped == here.skipped
    assert there.retractions == here.retractions
    assert there.offsets == here.offsets
    # and the batch really is mixed:
    assert len(here.records) == 3 + MIN_CHUNK * 8  # first, for DE, retraction, bulk
    assert sorted(q.reason for q in here.quarantined) == sorted(
        [
            "malformed",
            "malformed",
            "bad_signature",
            "wrong_key",
            "wrong_topic",
            "from_the_future",
            "replayed",
        ]
    )
    assert sorted(s.reason for s in here.skipped) == ["addressed_to_others", "own_message"]
    assert [r.payload["title"] for r in there.records[:2]] == ["first", "Red for DE"]


@pytest.mark.integration
async def test_a_worker_killed_mid_stream_loses_nothing(live_federation: Federation) -> None:
    """SIGKILL of an opening process fails the round; the consumer recreates the pool,
    rewinds to the stored offsets, and ends with every record stored exactly once."""
    fed = live_federation
    fr = fed.member("FR")
    now = datetime.now(UTC)
    topic = fed.topic(TopicKind.ALERTS)
    sealed = [fr.alert(title=f"alert {i}", now=now) for i in range(3000)]
    config = load_config(
        fed.config_path("DE"),
        http={"listen": ""},
        consumer={"open_processes": 2, "max_records": 100, "poll_timeout_ms": 100},
        publisher={"backoff_initial_ms": 50, "backoff_max_ms": 200},
    )
    node = Node(config)
    await node.start()
    # the topics exist (LogAppendTime) before the raw producer could auto-create them
    await ensure_topics(config.kafka.settings(), config.kafka.topic_prefix)
    producer = AIOKafkaProducer(bootstrap_servers=config.kafka.bootstrap_servers)
    await producer.start()
    try:

        async def produce(part: list[Sealed]) -> None:
            for s in part:
                await producer.send(topic, s.value, key=s.key)
            await producer.flush()

        await produce(sealed[:2000])
        consumer = node.consumer
        assert consumer is not None
        assert consumer.open_pool is not None
        pool = consumer.open_pool
        await node.wait_until(lambda: node.metrics.stored.value() > 0, 60)
        victim = pool.pids()[0]
        os.kill(victim, signal.SIGKILL)
        await produce(sealed[2000:])  # whatever the timing, later batches meet the dead worker
        await node.wait_until(lambda: pool.restarts >= 1, 30)
        await node.wait_until(lambda: node.metrics.stored.value() >= len(sealed), 120)
        assert victim not in pool.pids()
        stored = {r.message_id for r in await node.store.list_records(topic=topic, limit=10_000)}
        assert stored == {s.envelope.message_id for s in sealed}
        assert await node.store.count_records() == len(sealed)
        assert node.metrics.quarantined.value() == 0
    finally:
        await producer.stop()
        await node.stop()


def _block(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


async def test_a_worker_dying_while_its_result_is_half_written_breaks_the_pool() -> None:
    """A worker killed mid-way through writing a result leaves the executor's reader waiting
    for the rest for ever; the watch finds the dead worker, breaks the pool and raises."""
    executor = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("forkserver"))
    loop = asyncio.get_running_loop()
    try:
        pids = await asyncio.gather(*(loop.run_in_executor(executor, os.getpid) for _ in "ab"))
        pending = loop.run_in_executor(executor, _block, 120.0)
        # The executor's reader now gets a header announcing 1 MB and only 10 bytes of it:
        # exactly what a worker killed mid-write leaves in the pipe.
        writer = executor._result_queue._writer  # type: ignore[attr-defined]
        os.write(writer.fileno(), struct.pack("!i", 1_000_000) + b"x" * 10)
        os.kill(pids[0], signal.SIGKILL)
        started = loop.time()
        with pytest.raises(BrokenProcessPool):
            await _watched(executor, pending)
        assert loop.time() - started < BREAK_GRACE_S + 30
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
