"""Where the consumer reads from: the stored offsets on every assignment, and end offsets.

Kafka's own committed offsets are never used: on every assignment the rebalance listener
(:class:`_Listener`) seeks to the offsets stored with the records (or to the beginning
when there are none), so each record lands in the store exactly once. aiokafka starts
fetching a new assignment from its reset position before the listener has read the store,
so the listener pauses the partitions first and resumes them only at their stored offsets;
a rebalance also waits for the round in hand to queue its commit (``_round_lock``) and
drops the batch fetched ahead. :class:`Rebalancing` holds these methods of
:class:`nodes.consumer.Consumer`; :func:`end_offsets` reads the ends of the topics for
``exchange node status``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from exchange.bus import KafkaSettings, consumer_kwargs, kafka_errors, started
from nodes.consumer_batch import _Fetched
from nodes.store.base import Store


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: Rebalancing, consumer: AIOKafkaConsumer) -> None:
        self.owner = owner
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.owner.on_revoked()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.owner.on_assigned(self.consumer, list(assigned))


class Rebalancing:
    """The consumer's side of a rebalance: settle the commit in flight, drop the batch
    fetched ahead, seek each newly assigned partition to its stored offset."""

    # Set by Consumer.__init__.
    group: str
    store: Store
    log: Any
    _consumer: AIOKafkaConsumer | None
    _commit_task: asyncio.Task[None] | None
    _round_lock: asyncio.Lock
    _ahead: _Fetched | None
    _assign_error: Exception | None
    _offsets: dict[tuple[str, int], int]
    _position: dict[TopicPartition, int]

    async def settle(self) -> None:
        """Wait for the in-flight commit (before partitions move)."""
        task, self._commit_task = self._commit_task, None
        if task is not None:
            await task

    async def on_revoked(self) -> None:
        """Partitions are about to move: let the round in hand finish and commit first, and
        drop the batch fetched ahead (the next owner reads it from the stored offsets)."""
        async with self._round_lock:
            self._drop_ahead()
            await self.settle()

    def _drop_ahead(self) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.discard()

    async def on_assigned(
        self, consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition]
    ) -> None:
        """Resume every newly assigned partition exactly at its stored offset.

        Called by aiokafka right after it has set the new assignment, and the client's
        fetcher starts at once from the reset position (the earliest offset: a node never
        commits to Kafka). So :meth:`seek_to_stored` pauses the partitions before its first
        ``await``; until the seek, nothing from them reaches :meth:`_round`. A failure here
        (the store does not answer) leaves them paused and fails the next round, which
        rewinds; aiokafka itself would only log it and go on reading from the beginning.
        """
        try:
            await self.seek_to_stored(partitions, consumer)
        except Exception as exc:
            self._assign_error = exc
            self.log.warning("seeking to the stored offsets failed", error=str(exc))

    async def seek_to_stored(
        self, partitions: Sequence[TopicPartition], consumer: AIOKafkaConsumer | None = None
    ) -> None:
        """Set each of ``partitions`` to the offset stored with the records (or the
        beginning when none is stored), pausing them until then."""
        consumer = consumer or self._consumer
        if consumer is None or not partitions:
            return
        consumer.pause(*partitions)  # synchronously, before anything else can fetch
        async with self._round_lock:
            self._drop_ahead()  # read past the offsets about to be set: read again
            await self.settle()  # a commit in flight moves the stored offsets
            stored = await self.store.load_offsets(self.group)
            fresh = []
            for tp in partitions:
                offset = stored.get((tp.topic, tp.partition))
                if offset is None:
                    fresh.append(tp)
                    self._position[tp] = 0
                else:
                    consumer.seek(tp, offset)
                    self._offsets[(tp.topic, tp.partition)] = offset
                    self._position[tp] = offset
            if fresh:
                await consumer.seek_to_beginning(*fresh)
            consumer.resume(*partitions)
        self._assign_error = None
        self.log.info("partitions assigned", count=len(partitions), from_beginning=len(fresh))


async def end_offsets(kafka: KafkaSettings, topics: Sequence[str]) -> dict[tuple[str, int], int]:
    """The end offset of every partition of ``topics`` (for ``exchange node status``); a
    topic the cluster does not know has no entry."""
    with kafka_errors("reading end offsets"):
        async with started(AIOKafkaConsumer(**consumer_kwargs(kafka, None))) as consumer:
            # Fresh metadata for every topic: the client's own view right after start may
            # lack some (consumer.topics() returns a new view without updating it), and a
            # topic left out would read as "nothing on it".
            cluster = await consumer._client.fetch_all_metadata()
            partitions = [
                TopicPartition(topic, p)
                for topic in topics
                for p in sorted(cluster.partitions_for_topic(topic) or ())
            ]
            ends = await consumer.end_offsets(partitions) if partitions else {}
    return {(tp.topic, tp.partition): int(offset) for tp, offset in ends.items()}
