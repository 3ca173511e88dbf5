"""A rebalance in the middle of a drain drops the batch opened ahead, and nothing else.

With worker processes the consumer sends the batch after the one in hand to the workers
before it decides the one in hand. A rebalance must drop that batch undecided (its records
are read again from the stored offsets, by whichever member then owns their partitions)
and must not count it: ``exchange_consumed_total`` counts records when they are decided.

The second member of DE's group is a plain aiokafka consumer with DE's group id: it takes
partitions, reads from them and leaves without committing, as a stray or misconfigured
client would. (Two DE node instances are an HA pair only if they share one store, which
the project does not support; each node's exactly-once rests on its own store.)

DE is held mid-drain deterministically, not by timing: once it has stored ``HOLD_AT``
records and has a batch opened ahead that holds records of an even and an odd partition of
the alerts topic, its next commit waits until the group revokes DE's partitions, which is
what the second member's joining causes. The group assigns round-robin (aiokafka's
default), so of two members each gets every other partition: whichever half DE keeps, the
batch opened ahead holds records of a partition that moves to the other member.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from exchange.bus import consumer_kwargs, ensure_topics, producer_kwargs, stop_quietly
from exchange.topics import TopicKind
from nodes.consumer import Consumer
from nodes.daemon import Node
from nodes.store.base import Store
from tests.helpers.federation import Federation
from tests.helpers.nodes import make_node
from tests.node.helpers import quarantine_of, stored_ids

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 6
TOTAL = 1500
#: DE's commits wait for the rebalance once it has stored this many records.
HOLD_AT = 300
#: Records a batch: more than one fetch brings from one partition.
MAX_RECORDS = 200


class HeldAtRevocation:
    """Makes DE's commits wait, once ``HOLD_AT`` records are stored and the batch opened
    ahead holds records of an even and an odd partition, until its partitions are revoked;
    records what the revocation found and each assignment."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.holding = asyncio.Event()  # a commit waits: DE is mid-drain, a batch ahead
        self.revoking = asyncio.Event()
        #: The partitions of the batch opened ahead, at the revocation that ends the hold.
        self.ahead_at_revocation: set[int] = set()
        #: Partitions DE committed offsets for while they were not assigned to it.
        self.foreign_commits: list[tuple[str, int]] = []
        #: The partitions of DE's alerts topic, at each assignment.
        self.assignments: list[set[int]] = []

    @property
    def consumer(self) -> Consumer:
        assert self.node.consumer is not None, "node not started"
        return self.node.consumer

    def _ahead_partitions(self) -> set[int]:
        ahead = self.consumer._ahead
        return set() if ahead is None else {raw.partition for raw in ahead.raws}

    def hold_commits(self, store: Store) -> None:
        """Before the node starts: its consumer's ``store`` holds the commit as described."""
        commit_batch = store.commit_batch

        async def held_commit(*args: Any, **kwargs: Any) -> Any:
            if (
                not self.revoking.is_set()
                and self.node.metrics.stored.value() >= HOLD_AT
                and len({p % 2 for p in self._ahead_partitions()}) == 2
            ):
                self.holding.set()
                await self.revoking.wait()
            client = self.consumer._consumer
            assigned = {(tp.topic, tp.partition) for tp in client.assignment()} if client else set()
            self.foreign_commits.extend(p for p in kwargs.get("offsets", {}) if p not in assigned)
            return await commit_batch(*args, **kwargs)

        store.commit_batch = held_commit  # type: ignore[method-assign]

    def watch_rebalances(self, alerts: str) -> None:
        """Once the node has started: record its revocations and assignments."""
        on_revoked = self.consumer.on_revoked
        on_assigned = self.consumer.on_assigned

        async def revoked() -> None:
            if self.holding.is_set() and not self.revoking.is_set():
                self.ahead_at_revocation = self._ahead_partitions()
                self.revoking.set()  # the held commit goes on; the round in hand ends
            await on_revoked()

        async def assigned(consumer: AIOKafkaConsumer, partitions: Any) -> None:
            self.assignments.append({tp.partition for tp in partitions if tp.topic == alerts})
            await on_assigned(consumer, partitions)

        self.consumer.on_revoked = revoked  # type: ignore[method-assign]
        self.consumer.on_assigned = assigned  # type: ignore[method-assign]


async def _until(condition: Callable[[], bool | Awaitable[bool]], within_s: float) -> None:
    """Poll ``condition`` until it holds (TimeoutError after ``within_s``)."""
    async with asyncio.timeout(within_s):
        while True:
            outcome = condition()
            if outcome if isinstance(outcome, bool) else await outcome:
                return
            await asyncio.sleep(0.05)


async def test_a_member_joining_and_leaving_mid_drain_loses_and_repeats_nothing(
    live_federation: Federation,
) -> None:
    """A second member of DE's group joins while DE drains a backlog with a batch opened
    ahead, takes partitions and leaves without committing: DE stores every record exactly
    once, its stored offsets are the ends of the topic, and it counts each record decided
    once (the dropped batch is not counted), and it never decides a record of a partition
    that is not its own at the time."""
    fed = live_federation
    alerts = fed.topic(TopicKind.ALERTS)
    de = make_node(
        fed,
        "DE",
        consumer={
            "open_processes": 2,
            "max_records": MAX_RECORDS,
            "poll_timeout_ms": 50,
            "max_partition_fetch_bytes": 65_536,  # a fetch brings ~50 records a partition
        },
    )
    settings = de.config.kafka.settings()
    group = de.config.consumer_group
    await ensure_topics(settings, fed.prefix, partitions=PARTITIONS)
    now = datetime.now(UTC)
    fr = fed.member("FR")
    sealed = [fr.alert(title=f"alert {i}", now=now) for i in range(TOTAL)]
    # small record batches, so that one fetched batch holds records of several partitions
    producer = AIOKafkaProducer(**{**producer_kwargs(settings), "max_batch_size": 16_384})
    await producer.start()
    try:
        for s in sealed:
            await producer.send(alerts, s.value, key=s.key)
        await producer.flush()
    finally:
        await stop_quietly(producer)

    held = HeldAtRevocation(de)
    held.hold_commits(de._consumer_store)
    await de.start()
    intruder: AIOKafkaConsumer | None = None
    try:
        held.watch_rebalances(alerts)
        consumer = held.consumer
        await asyncio.wait_for(held.holding.wait(), 60)
        assert HOLD_AT <= de.metrics.stored.value() < TOTAL  # mid-drain

        intruder = AIOKafkaConsumer(**consumer_kwargs(settings, group))
        await intruder.start()
        intruder.subscribe(de.topics)
        taken: set[int] = set()

        async def intruder_reads() -> bool:
            assert intruder is not None
            await intruder.getmany(timeout_ms=100)  # reads; never commits
            taken.update(tp.partition for tp in intruder.assignment() if tp.topic == alerts)
            return bool(taken)

        await _until(intruder_reads, 60)
        # the batch opened ahead, dropped, held records of partitions that moved away
        assert held.ahead_at_revocation & taken
        await _until(lambda: bool(held.assignments) and not held.assignments[-1] & taken, 60)
        await stop_quietly(intruder)  # leaves the group: its partitions go back to DE
        intruder = None
        await _until(lambda: held.assignments[-1] == set(range(PARTITIONS)), 60)
        await de.wait_until(lambda: de.metrics.stored.value() >= TOTAL, 60)
        await de.wait_caught_up(30)

        ends = await _ends(settings, alerts)
        stored_offsets = await de.store.load_offsets(group)
        assert {p: stored_offsets.get((alerts, p)) for p in ends} == ends
        assert {p: consumer.committed().get((alerts, p)) for p in ends} == ends
        assert sum(ends.values()) == TOTAL
        assert de.metrics.consumed.value() == TOTAL  # decided once each, the dropped batch not
        assert de.metrics.stored.value() == TOTAL
        assert de.metrics.reread.value() == 0
        assert held.foreign_commits == []  # nothing decided for a partition DE did not own
    finally:
        if intruder is not None:
            await stop_quietly(intruder)
        await de.stop()
    stored = await stored_ids(fed, "DE", alerts)
    assert len(stored) == len(set(stored)) == TOTAL
    assert set(stored) == {s.envelope.message_id for s in sealed}
    assert await quarantine_of(fed, "DE") == []


async def _ends(settings: Any, topic: str) -> dict[int, int]:
    """The end offset of each partition of ``topic``."""
    reader = AIOKafkaConsumer(**consumer_kwargs(settings))
    await reader.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return {tp.partition: end for tp, end in (await reader.end_offsets(tps)).items()}
    finally:
        await stop_quietly(reader)
