"""The consumer: Kafka -> verify/open -> rules -> store (records + offsets in ONE transaction).

One ``AIOKafkaConsumer`` reads all four federation topics (group ``{prefix}.node.{node}``):
one group membership and one fetch loop, and - what matters most for speed - one store
transaction per batch whatever the topic mix; per-partition order is kept all the same.
Kafka's own committed offsets are never used: on every assignment the rebalance listener
seeks to the offsets stored with the records (or to the beginning when there are none),
so each record lands in the store exactly once. aiokafka starts fetching a new assignment
from its reset position before the listener has read the store, so the listener pauses
the partitions first and resumes them only at their stored offsets; a rebalance also
waits for the round in hand to queue its commit (``_round_lock``). Records below the
consumer's own position would be counted (``exchange_consumer_reread_total``) and
dropped, never processed twice; tests prove the count stays at zero.

Each batch (``getmany(max_records=...)``) is opened in worker processes (``open_processes``
> 0, nodes.openpool: the whole opening on every core; a dead worker fails the round, which
rewinds) or has its signatures checked in a small thread pool, a chunk per ZIP-215 batch check
(which releases the GIL), while this thread opens what already verified; it is then decided by
the pure pipeline, then committed in a task
that overlaps with opening the next batch; the consumer waits for that commit before
deciding the next batch (replay checks see it) and on revocation. A failed commit rewinds
every assigned partition to the stored offsets and retries after a backoff.

Its parts: this module holds the loop (:meth:`Consumer.run`, one round, the commit and
its metrics); the rebalance side (the listener, seeking to the stored offsets) and
:func:`end_offsets` are in nodes.consumer_offsets; taking and opening a fetched batch
(and ``OPEN_CHUNK``) in nodes.consumer_batch.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from exchange.bus import KafkaSettings, consumer_kwargs, kafka_errors, start_or_close, stop_quietly
from exchange.errors import AuthenticationError, ExchangeError, Reason, TransientError
from nodes.config import ConsumerConfig, PublisherConfig
from nodes.consumer_batch import OPEN_CHUNK, BatchOpening, _Fetched, _retrieve
from nodes.consumer_offsets import Rebalancing, _Listener, end_offsets
from nodes.logging import get_logger
from nodes.metrics import Metrics
from nodes.openpool import OpenPool
from nodes.outbound import Dispatcher
from nodes.pipeline import (
    INTERNAL_ERROR,
    BatchOutcome,
    Decision,
    OpenedRecord,
    Opening,
    PipelineContext,
    RawRecord,
    message_ids,
    process,
    quarantine,
)
from nodes.publisher import Backoff, Clock, utc_now
from nodes.store.base import Store

__all__ = ["OPEN_CHUNK", "STATUS_EVERY_S", "Consumer", "end_offsets"]

STATUS_EVERY_S = 5.0


class Consumer(Rebalancing, BatchOpening):
    """Reads the federation topics into the store. ``run()`` until :meth:`stop`."""

    def __init__(
        self,
        *,
        node: str,
        group: str,
        topics: Sequence[str],
        store: Store,
        kafka: KafkaSettings,
        context: PipelineContext,
        config: ConsumerConfig,
        backoff: PublisherConfig,
        metrics: Metrics | None = None,
        dispatcher: Dispatcher | None = None,
        clock: Clock = utc_now,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.node = node
        self.group = group
        self.topics = list(topics)
        self.store = store
        self.kafka = kafka
        self.context = context
        self.config = config
        self.backoff_config = backoff
        self.metrics = metrics or Metrics()
        self.dispatcher = dispatcher
        self.clock = clock
        self.on_commit = on_commit
        self.actor = f"node:{node}/consumer"
        self.log = get_logger(node=node, component="consumer")
        self._consumer: AIOKafkaConsumer | None = None
        self._commit_task: asyncio.Task[None] | None = None
        self._pool = (
            ThreadPoolExecutor(config.verify_threads, thread_name_prefix="verify")
            if config.verify_threads > 0 and config.open_processes == 0
            else None
        )
        self.open_pool = (
            OpenPool(context, config.open_processes) if config.open_processes > 0 else None
        )
        self._open_pool_started = False
        self._stopping = False
        self._stop = asyncio.Event()
        self._offsets: dict[tuple[str, int], int] = {}
        #: The next offset this consumer takes per partition: set by each seek, moved by
        #: each round. A record below it was read before in this life (see :meth:`_take`).
        self._position: dict[TopicPartition, int] = {}
        #: Held from a fetched batch until its commit is queued: a rebalance waits for it.
        self._round_lock = asyncio.Lock()
        #: The next batch, fetched and being opened in the worker processes while the one
        #: in hand is decided and committed; dropped by every seek (see :meth:`_round`).
        self._ahead: _Fetched | None = None
        self._assign_error: Exception | None = None
        self._last_status = 0.0
        self.alive = False
        self.last_error: str | None = None

    def committed(self) -> dict[tuple[str, int], int]:
        """The offset stored with the records, per partition, as of the last commit."""
        return dict(self._offsets)

    def stop(self) -> None:
        """Finish (and commit) the current batch, then return from :meth:`run`."""
        self._stopping = True
        self._stop.set()

    # --- the loop --------------------------------------------------------------------------

    async def _start(self) -> AIOKafkaConsumer:
        kwargs = consumer_kwargs(self.kafka, self.group)
        # What one fetch may bring (compressed): bounded per partition and in all.
        kwargs["fetch_max_bytes"] = self.config.fetch_max_bytes
        kwargs["max_partition_fetch_bytes"] = self.config.max_partition_fetch_bytes
        consumer = AIOKafkaConsumer(**kwargs)

        async def subscribed(start: Awaitable[None]) -> None:  # part of starting it
            await start
            consumer.subscribe(self.topics, listener=_Listener(self, consumer))

        with kafka_errors("starting the consumer"):  # kept across rounds: closed if not started
            await start_or_close(consumer, subscribed)
        return consumer

    async def run(self) -> None:
        backoff = Backoff(
            self.backoff_config.backoff_initial_ms / 1000, self.backoff_config.backoff_max_ms / 1000
        )
        self.alive = True
        try:
            while not self._stopping:
                try:
                    if self.open_pool is not None and not self._open_pool_started:
                        await self.open_pool.start()  # not in the first batch's time
                        self._open_pool_started = True
                    if self._consumer is None:
                        self._consumer = await self._start()
                    await self._round(self._consumer)
                    if backoff.failures:
                        self.log.info("consuming again", after_failures=backoff.failures)
                        backoff.reset()
                        self.last_error = None
                except AuthenticationError:
                    raise  # refused credentials: no retry fixes them (fatal to the supervisor)
                except ExchangeError as exc:
                    await self._failed(exc)
                    await self._pause(backoff.next_delay())
                except Exception as exc:  # a bug: log it loudly, rewind, retry; never die
                    self.log.exception("consumer round failed unexpectedly")
                    await self._failed(
                        ExchangeError(Reason.UNAVAILABLE, f"{type(exc).__name__}: {exc}")
                    )
                    await self._pause(backoff.next_delay())
            self._drop_ahead()  # fetched, not decided: read again at the next start
            await self.settle()
        finally:
            self._drop_ahead()
            self.alive = False
            await self._close()

    async def _pause(self, seconds: float) -> None:
        """Sleep, unless :meth:`stop` is called meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _failed(self, exc: ExchangeError) -> None:
        error = str(exc)
        task, self._commit_task = self._commit_task, None
        if task is not None:  # a failed commit: it is retried from the stored offsets
            with contextlib.suppress(Exception):
                await task
        if error != self.last_error:  # once per state change, not once per retry
            self.log.warning("consuming paused, will retry", error=error)
            with contextlib.suppress(Exception):  # the store may be what failed
                await self.store.set_status(
                    "last_error", f"{self.clock().isoformat()} consumer: {error}"
                )
        self.last_error = error
        if self._consumer is not None:
            try:
                assignment = list(self._consumer.assignment())
                await self.seek_to_stored(assignment)
            except Exception as rewind_error:  # the next round restarts the client
                self.log.debug("rewind failed", error=str(rewind_error))
                await self._close()

    async def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                await stop_quietly(consumer)  # closes it even when this task is cancelled
            except Exception as exc:
                self.log.debug("consumer stop failed", error=str(exc))

    def shutdown_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self.open_pool is not None:
            self.open_pool.shutdown()

    async def _round(self, consumer: AIOKafkaConsumer) -> None:
        """Decide and queue the commit of one batch.

        With worker processes, the batch after it is fetched (what the client has already
        buffered) and sent to the workers before this one is decided: the workers open it
        while this process decides, stores and fetches. Every seek drops that batch, so a
        rewind or a rebalance never decides records past the offsets it sets.
        """
        if self._assign_error is not None:  # partitions left paused: rewind, then resume
            error, self._assign_error = self._assign_error, None
            raise TransientError(f"seeking to the stored offsets: {error}")
        batch = None
        if self._ahead is None:
            with kafka_errors("fetching"):
                batch = await consumer.getmany(
                    timeout_ms=self.config.poll_timeout_ms, max_records=self.config.max_records
                )
        async with self._round_lock:
            current, self._ahead = self._ahead, None
            if current is None and batch is not None:
                current = self._fetched(batch)
            if current is None:
                await self.settle()
                return
            if self.open_pool is not None:
                with kafka_errors("fetching"):
                    buffered = await consumer.getmany(
                        timeout_ms=0, max_records=self.config.max_records
                    )
                self._ahead = self._fetched(buffered)
            opened = await current.opening
            now = current.now
            self.metrics.consumed.inc(len(current.raws) + len(current.refused))
            await self.settle()
            already = await self.store.seen_message_ids(message_ids(opened))
            outcome = process(current.raws, self.context, now, already, opened)
            for raw, entry in current.refused:
                outcome.add(raw, Decision(entry))
            self._log_internal(outcome)
            self._commit_task = asyncio.create_task(self._commit(outcome, current.raws, now))

    def _fetched(self, batch: Mapping[TopicPartition, Sequence[Any]]) -> _Fetched | None:
        """Take ``batch`` (see :meth:`_take`) and start opening it; None when it is empty."""
        now = self.clock()
        raws, refused = self._take(batch, now)
        if not raws and not refused:
            return None
        opening: asyncio.Future[Sequence[Opening | OpenedRecord]]
        if raws:
            opening = asyncio.ensure_future(self._open_matching_own(raws, now))
            opening.add_done_callback(_retrieve)
        else:
            opening = asyncio.get_running_loop().create_future()
            opening.set_result([])
        return _Fetched(raws, refused, now, opening)

    def _log_internal(self, outcome: BatchOutcome) -> None:
        for raw, exc in outcome.internal_errors:
            self.log.error(
                "internal error on a record; quarantined",
                topic=raw.topic,
                partition=raw.partition,
                offset=raw.offset,
                error=f"{type(exc).__name__}: {exc}",
            )
        for entry in outcome.quarantined:
            if entry.reason == INTERNAL_ERROR and entry.message_id is None:
                self.log.error(
                    "internal error opening a record; quarantined",
                    topic=entry.topic,
                    partition=entry.partition,
                    offset=entry.offset,
                    error=entry.detail,
                )

    async def _commit(
        self, outcome: BatchOutcome, raws: Sequence[RawRecord], now: datetime
    ) -> None:
        audit = outcome.collection_events(self.actor, now)
        started = time.perf_counter()
        result = await self.store.commit_batch(
            self.group,
            records=outcome.records,
            quarantined=outcome.quarantined,
            retractions=outcome.retractions,
            audit=audit,
            offsets=outcome.offsets,
        )
        self.metrics.commit_latency.observe(time.perf_counter() - started)
        records = outcome.records
        if result.duplicates:  # stored meanwhile by someone else: quarantine as replayed
            dupes = set(result.duplicates)
            raw_by_place = {(r.topic, r.partition, r.offset): r for r in raws}
            entries = [
                quarantine(
                    raw_by_place[(r.topic, r.partition, r.offset)],
                    Reason.REPLAYED.value,
                    f"message {r.message_id} already stored",
                    now,
                    r.message_id,
                    r.sender,
                )
                for r in records
                if r.message_id in dupes
            ]
            await self.store.commit_batch(
                self.group, records=(), quarantined=entries, retractions=(), audit=(), offsets={}
            )
            outcome.quarantined.extend(entries)
            records = [r for r in records if r.message_id not in dupes]
        self._offsets.update(outcome.offsets)
        self._count(outcome, records, result.retractions_applied)
        await self._status(now)
        if self.on_commit is not None:
            self.on_commit()
        if self.dispatcher is not None:  # the batch queued its connector events: deliver them
            self.dispatcher.wake()

    def _count(self, outcome: BatchOutcome, records: Sequence[Any], retractions: int) -> None:
        m = self.metrics
        for topic, n in collections.Counter(record.topic for record in records).items():
            m.stored.inc(n, topic)
        for reason, n in collections.Counter(entry.reason for entry in outcome.quarantined).items():
            m.quarantined.inc(n, reason)
        for reason, n in collections.Counter(skipped.reason for skipped in outcome.skipped).items():
            m.skipped.inc(n, reason)
        m.retractions.inc(retractions)
        m.last_batch.set(time.time())
        consumer = self._consumer
        if consumer is None:
            return
        lag: dict[str, float] = {}
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is not None:
                done = self._offsets.get((tp.topic, tp.partition), 0)
                lag[tp.topic] = lag.get(tp.topic, 0.0) + max(0, high - done)
        for topic, value in lag.items():
            m.lag.set(value, topic)

    async def _status(self, now: datetime) -> None:
        if time.monotonic() - self._last_status < STATUS_EVERY_S:
            return
        self._last_status = time.monotonic()
        await self.store.set_status("last_batch_at", now.isoformat())
