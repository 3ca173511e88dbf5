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
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from exchange.bus import KafkaSettings, consumer_kwargs, kafka_errors, stop_quietly
from exchange.errors import ExchangeError, Reason, TransientError
from exchange.fetchguard import UndecodableBatch
from nodes.config import ConsumerConfig, OwnMessages, PublisherConfig
from nodes.intake import refusal
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
    check_raws,
    message_ids,
    open_checked,
    open_own,
    open_raws,
    own_claim,
    own_key_ids,
    process,
    quarantine,
    refuse_unsent,
)
from nodes.publisher import Backoff, Clock, utc_now
from nodes.store.base import QuarantineEntry, Store

STATUS_EVERY_S = 5.0
#: Records per signature-checking task, verified in one batch check: large enough for the
#: batch check's gain (256: ~5x single checks, bench zip215), small enough that the first
#: chunk is ready soon.
OPEN_CHUNK = 256


@dataclass
class _Fetched:
    """A fetched batch on its way: the records to open, those refused before decoding, the
    round's clock, and the task opening them (in the worker processes)."""

    raws: list[RawRecord]
    refused: list[tuple[RawRecord, QuarantineEntry]]
    now: datetime
    opening: asyncio.Future[Sequence[Opening | OpenedRecord]]

    def discard(self) -> None:
        """Drop it undecided (a rewind or a rebalance: its records will be read again)."""
        self.opening.cancel()


def _retrieve(future: asyncio.Future[Sequence[Opening | OpenedRecord]]) -> None:
    """Read a discarded opening's outcome, so its error is not reported as never retrieved."""
    if not future.cancelled():
        future.exception()


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: Consumer, consumer: AIOKafkaConsumer) -> None:
        self.owner = owner
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.owner.on_revoked()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.owner.on_assigned(self.consumer, list(assigned))


class Consumer:
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

    # --- rebalancing ---------------------------------------------------------------------

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

    # --- the loop --------------------------------------------------------------------------

    async def _start(self) -> AIOKafkaConsumer:
        kwargs = consumer_kwargs(self.kafka, self.group)
        # What one fetch may bring (compressed): bounded per partition and in all.
        kwargs["fetch_max_bytes"] = self.config.fetch_max_bytes
        kwargs["max_partition_fetch_bytes"] = self.config.max_partition_fetch_bytes
        consumer = AIOKafkaConsumer(**kwargs)
        try:
            with kafka_errors("starting the consumer"):
                await consumer.start()
                consumer.subscribe(self.topics, listener=_Listener(self, consumer))
        except BaseException:
            await consumer.stop()
            raise
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

    def _take(
        self, batch: Mapping[TopicPartition, Sequence[Any]], now: datetime
    ) -> tuple[list[RawRecord], list[tuple[RawRecord, QuarantineEntry]]]:
        """The fetched records as RawRecords to open, and those refused before any decoding
        (a batch that cannot be read, a record over ``max_record_bytes``), minus any below
        this consumer's position.

        None should ever be below it: every seek pauses its partitions until it applies.
        One that is all the same was read before in this life (stored or being stored):
        it is counted in ``exchange_consumer_reread_total`` and not processed twice.
        """
        raws: list[RawRecord] = []
        refused: list[tuple[RawRecord, QuarantineEntry]] = []
        cap = self.config.max_record_bytes
        position = self._position
        for tp, msgs in batch.items():
            if not msgs:
                continue
            start = position.get(tp, 0)
            if msgs[0].offset < start:
                again = [m for m in msgs if m.offset < start]
                self.metrics.reread.inc(len(again), tp.topic)
                self.log.error(
                    "records read again below the consumer's position; dropped",
                    topic=tp.topic,
                    partition=tp.partition,
                    position=start,
                    first=again[0].offset,
                    count=len(again),
                )
                msgs = [m for m in msgs if m.offset >= start]
                if not msgs:
                    continue
            position[tp] = msgs[-1].offset + 1
            for m in msgs:
                raw = RawRecord(
                    m.topic, m.partition, m.offset, m.key, m.value, m.timestamp, m.timestamp_type
                )
                value = m.value
                if value is not None and (len(value) > cap or type(value) is UndecodableBatch):
                    entry = refusal(raw, cap, now)
                    if entry is not None:
                        refused.append((raw, entry))
                        self._log_refused(entry)
                        continue
                raws.append(raw)
        return raws, refused

    def _log_refused(self, entry: QuarantineEntry) -> None:
        self.log.warning(
            "record refused before decoding; quarantined",
            topic=entry.topic,
            partition=entry.partition,
            offset=entry.offset,
            reason=entry.reason,
            detail=entry.detail,
        )

    async def _open_matching_own(
        self, raws: Sequence[RawRecord], now: datetime
    ) -> Sequence[Opening | OpenedRecord]:
        """Open a batch; with ``own_messages = "match"``, this node's own records first.

        A record naming one of this node's keys whose envelope hash is in its outbox is
        opened here without a signature check (the bytes are what it signed); one that is
        not in the outbox is verified like any other and, if it verifies, quarantined as
        ``not_in_own_outbox``: this node's key signed something it never sent.
        """
        if self.config.own_messages is not OwnMessages.MATCH:
            return await self._open(raws, now)
        ctx = self.context
        keys = own_key_ids(ctx)
        claims = {i: h for i, raw in enumerate(raws) if (h := own_claim(raw, keys)) is not None}
        if not claims:
            return await self._open(raws, now)
        sent = await self.store.outbox_envelope_hashes(list(claims.values()))
        result: list[Opening | OpenedRecord | None] = [None] * len(raws)
        rest: list[int] = []
        for i, raw in enumerate(raws):
            mine = open_own(raw, ctx, now, sent) if i in claims else None
            if mine is None:
                rest.append(i)
            else:
                result[i] = mine
        self.metrics.own_matched.inc(len(raws) - len(rest))
        if rest:
            others = await self._open([raws[i] for i in rest], now)
            for i, opening in zip(rest, others, strict=True):
                result[i] = refuse_unsent(raws[i], opening, now) if i in claims else opening
        return [r for r in result if r is not None]

    async def _open(
        self, raws: Sequence[RawRecord], now: datetime
    ) -> Sequence[Opening | OpenedRecord]:
        """Open a batch: in the worker processes when there are; otherwise signatures in the
        thread pool, a chunk per batch check (the native check releases the GIL), while this
        thread opens the chunks whose signatures already held."""
        ctx = self.context
        if self.open_pool is not None:
            return await self.open_pool.open(raws, now)
        if self._pool is None or len(raws) < 2 * OPEN_CHUNK:
            return open_raws(raws, ctx, now)
        chunks = [raws[i : i + OPEN_CHUNK] for i in range(0, len(raws), OPEN_CHUNK)]
        loop = asyncio.get_running_loop()
        pending = [loop.run_in_executor(self._pool, check_raws, c, ctx, now) for c in chunks]
        opened: list[Opening] = []
        for chunk, future in zip(chunks, pending, strict=True):
            checked = await future
            opened.extend(open_checked(r, c, ctx, now) for r, c in zip(chunk, checked, strict=True))
        return opened

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


async def end_offsets(kafka: KafkaSettings, topics: Sequence[str]) -> dict[tuple[str, int], int]:
    """The end offset of every partition of ``topics`` (for ``exchange node status``); a
    topic the cluster does not know has no entry."""
    consumer = AIOKafkaConsumer(**consumer_kwargs(kafka, None))

    with kafka_errors("reading end offsets"):
        await consumer.start()
        try:
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
        finally:
            await consumer.stop()
    return {(tp.topic, tp.partition): int(offset) for tp, offset in ends.items()}
