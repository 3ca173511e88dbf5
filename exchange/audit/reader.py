"""Reading topic history from Kafka for the audit: the only Kafka-touching audit module.

The reader joins no consumer group and commits nothing: it assigns itself every
partition of the topics, takes the end offsets once at start (what is written later
is not part of this replay), seeks each partition to its beginning or, with
``since``, to the first offset whose timestamp is at or after ``since``
(``offsets_for_times``), and reads up to those end offsets. Records are filtered on
their Kafka timestamp to ``since <= timestamp < until`` (Kafka timestamps need not be
monotonic, so the filter applies to every record read). It yields batches of
:data:`RawRecord` tuples, cheap to hand to verification workers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from exchange.bus import (
    KafkaSettings,
    admin_kwargs,
    consumer_kwargs,
    kafka_errors,
    start_or_close,
    started,
    stop_quietly,
)
from exchange.errors import InputError, TransientError
from exchange.fetchguard import UndecodableBatch

T = TypeVar("T")

#: (topic, partition, offset, timestamp ms, key, value)
RawRecord = tuple[str, int, int, int, bytes | None, bytes | None]
#: (topic, partition, start offset, end offset): the records ``start <= offset < end``
Range = tuple[str, int, int, int]
#: The most a fetch brings a partition: 4 MiB, about 3,500 records of 1.2 KB. Against
#: aiokafka's 1 MiB, the broker spent 1.7-1.9 us a record serving the replay rather than
#: 2.4-3.6, and the bench's ratio was 0.70-0.77 rather than 0.67-0.74 (4 paired runs, 100k).
FETCH_BYTES = 4 * 1024 * 1024
#: Turns of the event loop a :class:`RangeReader` gives aiokafka after each fetch it
#: takes: enough for its fetch routine to wake, plan and send the next request (three
#: to four; a spare turn costs well under a microsecond).
TURNS = 6


def to_ms(t: datetime | None) -> int | None:
    """An aware datetime as milliseconds since the epoch (None stays None)."""
    return None if t is None else int(t.timestamp() * 1000)


def _consumer_kwargs(settings: KafkaSettings) -> dict[str, Any]:
    """The bus's consumer settings, with fetches of up to :data:`FETCH_BYTES` a partition."""
    return {**consumer_kwargs(settings), "max_partition_fetch_bytes": FETCH_BYTES}


def in_window(ts: int, since: int | None, until: int | None, value: Any) -> bool:
    """Whether a record appended at ``ts`` (ms) is in [since, until). A batch that could
    not be read has no trustworthy time: it is always reported."""
    if type(value) is UndecodableBatch:
        return True
    return (since is None or ts >= since) and (until is None or ts < until)


def _stalled(timeout_s: float, where: str) -> TransientError:
    """The error for a read that got no record for ``timeout_s`` (empty polls of 0.5 s)."""
    return TransientError(f"reading records: no progress within {timeout_s:g} s on {where}")


def truncated_topics(offsets: dict[str, dict[str, dict[str, int]]]) -> set[str]:
    """Topics of a report's ``offsets`` mapping where some partition starts after 0."""
    return {t for t, parts in offsets.items() if any(r["start"] > 0 for r in parts.values())}


@dataclass
class ReadPlan:
    """What a reader read: per topic and partition the offsets ``[start, end)``."""

    topics: list[str]
    missing_topics: list[str] = field(default_factory=list)
    ranges: dict[str, dict[int, tuple[int, int]]] = field(default_factory=dict)

    def truncated_topics(self) -> set[str]:
        """Topics read from after their first offset (retention removed the oldest)."""
        return truncated_topics(self.as_dict()["offsets"])

    def as_dict(self) -> dict[str, Any]:
        """Sorted, JSON-ready form for the report."""
        return {
            "topics": sorted(self.topics),
            "missing_topics": sorted(self.missing_topics),
            "offsets": {
                t: {str(p): {"start": s, "end": e} for p, (s, e) in sorted(parts.items())}
                for t, parts in sorted(self.ranges.items())
            },
        }


class KafkaHistoryReader:
    """Reads ``topics`` from ``settings``' cluster between ``since`` and ``until``.

    ``required``: every topic must exist; otherwise at least one must, and those that
    do not are listed in :attr:`plan` ``.missing_topics``. ``timeout_s`` bounds each
    request and each stretch without progress; a cluster that does not answer raises
    :class:`TransientError`.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topics: Sequence[str],
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        required: bool = True,
        timeout_s: float = 30.0,
        batch_records: int = 2000,
    ) -> None:
        self.settings = settings
        self.plan = ReadPlan(list(dict.fromkeys(topics)))
        self.since_ms = to_ms(since)
        self.until_ms = to_ms(until)
        self.required = required
        self.timeout_s = timeout_s
        self.batch_records = batch_records

    async def _bounded(self, request: Awaitable[T], action: str) -> T:
        """``request``, or TransientError when the cluster does not answer within the timeout."""
        try:
            return await asyncio.wait_for(request, self.timeout_s)
        except TimeoutError:
            raise TransientError(f"{action}: no answer within {self.timeout_s:g} s") from None

    async def _connect(self, start: Awaitable[None]) -> None:
        """A client's start, bounded by the timeout, its errors translated."""
        action = f"connecting to {self.settings.bootstrap_servers}"
        with kafka_errors(action):
            await self._bounded(start, action)

    async def _partitions(self) -> dict[str, list[int]]:
        """The partitions of each existing topic (an admin metadata request, no group)."""
        action = f"connecting to {self.settings.bootstrap_servers}"
        admin = AIOKafkaAdminClient(**admin_kwargs(self.settings))
        async with started(admin, self._connect):
            with kafka_errors(action):
                # list first: describing a missing topic makes a broker with
                # auto.create.topics.enable create it, and an audit must change nothing
                existing = set(await self._bounded(admin.list_topics(), action))
                wanted = [t for t in self.plan.topics if t in existing]
                described = (
                    await self._bounded(admin.describe_topics(wanted), action) if wanted else []
                )
        found: dict[str, list[int]] = {}
        for entry in described:
            if entry.get("error_code", 0) == 0:
                found[entry["topic"]] = sorted(p["partition"] for p in entry["partitions"])
        return found

    async def _existing(self) -> dict[str, list[int]]:
        """:meth:`_partitions`, noting the missing topics in :attr:`plan` (InputError when
        a required one, or every one, is missing)."""
        partitions = await self._partitions()
        self.plan.missing_topics = [t for t in self.plan.topics if t not in partitions]
        missing = self.plan.missing_topics
        if missing and (self.required or len(missing) == len(self.plan.topics)):
            raise InputError([("topic", f"{t}: no such topic on the cluster") for t in missing])
        return partitions

    async def _seek(
        self, consumer: AIOKafkaConsumer, partitions: dict[str, list[int]]
    ) -> list[TopicPartition]:
        """Assign the partitions, fill the plan's ranges, seek each non-empty one to its start."""
        tps = [TopicPartition(t, p) for t in self.plan.topics for p in partitions.get(t, ())]
        if not tps:
            return []
        consumer.assign(tps)
        with kafka_errors("reading offsets"):
            ends = await self._bounded(consumer.end_offsets(tps), "reading end offsets")
            starts = await self._bounded(consumer.beginning_offsets(tps), "reading start offsets")
            if self.since_ms is not None:
                found = await self._bounded(
                    consumer.offsets_for_times(dict.fromkeys(tps, self.since_ms)),
                    "finding offsets by time",
                )
                for tp, at in found.items():
                    starts[tp] = ends[tp] if at is None else max(starts[tp], at.offset)
        todo = []
        for tp in tps:
            start, end = starts[tp], ends[tp]
            self.plan.ranges.setdefault(tp.topic, {})[tp.partition] = (start, end)
            if start < end:
                consumer.seek(tp, start)
                todo.append(tp)
        return todo

    async def ranges(self) -> list[Range]:
        """Plan only: fill :attr:`plan` and return the non-empty ``[start, end)`` ranges.

        For readers elsewhere (:class:`RangeReader`, one per verification worker); the
        consumer used to find the offsets is closed before returning.
        """
        partitions = await self._existing()
        consumer = AIOKafkaConsumer(**_consumer_kwargs(self.settings))
        async with started(consumer, self._connect):
            todo = await self._seek(consumer, partitions)
        return [(tp.topic, tp.partition, *self.plan.ranges[tp.topic][tp.partition]) for tp in todo]

    async def batches(self) -> AsyncIterator[list[RawRecord]]:
        """The records, in batches; each partition in offset order."""
        partitions = await self._existing()
        consumer = AIOKafkaConsumer(**_consumer_kwargs(self.settings))
        async with started(consumer, self._connect):
            todo = await self._seek(consumer, partitions)
            pending = {tp: self.plan.ranges[tp.topic][tp.partition][1] for tp in todo}
            since, until = self.since_ms, self.until_ms
            idle = 0.0
            while pending:
                with kafka_errors("reading records"):
                    fetched = await consumer.getmany(
                        *pending, timeout_ms=500, max_records=self.batch_records
                    )
                batch: list[RawRecord] = []
                for tp, records in fetched.items():
                    end = pending.get(tp)
                    if end is None:
                        continue
                    for r in records:
                        if r.offset >= end:
                            break
                        ts = r.timestamp
                        if in_window(ts, since, until, r.value):
                            batch.append((r.topic, r.partition, r.offset, ts, r.key, r.value))
                for tp in list(pending):
                    with kafka_errors("reading positions"):
                        position = await consumer.position(tp)
                    if position >= pending[tp]:
                        del pending[tp]
                        consumer.pause(tp)
                idle = 0.0 if fetched else idle + 0.5
                if idle >= self.timeout_s:
                    raise _stalled(self.timeout_s, f"{len(pending)} partition(s)")
                if batch:
                    yield batch


@dataclass(frozen=True)
class RangeSource:
    """What a :class:`RangeReader` needs: the cluster, the time filter, the limits."""

    settings: KafkaSettings
    since_ms: int | None = None
    until_ms: int | None = None
    timeout_s: float = 30.0
    batch_records: int = 2000


class RangeReader:
    """Reads offset ranges planned elsewhere, synchronously: one per verification worker.

    It runs one consumer (no group, manual assignment, never commits), started on
    first use and kept: a range that continues where the last one of the same
    partition ended reuses what the consumer already fetched. At most the records up
    to a range's end are taken from the consumer, so it never runs past.

    The consumer's event loop runs in the caller's thread, only inside
    :meth:`batches`. After each ``getmany`` (which takes everything fetched, so that
    aiokafka fetches again) the loop gets a few more turns (:data:`TURNS`): the next
    fetch request goes out before the caller verifies the batch, and the answer waits
    in the socket meanwhile. Measured in paired runs on one core (15k records, real
    signatures): this costs 2-4 us a record less than a reader thread running the
    loop, which paid for GIL hand-offs with each signature check, and leaves no idle
    time (wall time equals CPU time); a loop run only inside ``getmany`` made every
    batch wait a full fetch round trip (0.43 of the bare verify rate).
    """

    def __init__(self, source: RangeSource) -> None:
        self.source = source
        self._loop = asyncio.new_event_loop()
        self._consumer: AIOKafkaConsumer | None = None
        self._at: tuple[TopicPartition, int] | None = None  # partition, next offset

    def _run(self, request: Awaitable[T], action: str) -> T:
        timeout = self.source.timeout_s

        async def bounded() -> T:
            try:
                return await asyncio.wait_for(request, timeout)
            except TimeoutError:
                raise TransientError(f"{action}: no answer within {timeout:g} s") from None

        with kafka_errors(action):
            return self._loop.run_until_complete(bounded())

    def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            kwargs = _consumer_kwargs(self.source.settings)

            async def make() -> AIOKafkaConsumer:  # aiokafka binds it to the running loop
                return AIOKafkaConsumer(**kwargs)

            consumer = self._loop.run_until_complete(make())
            action = f"connecting to {self.source.settings.bootstrap_servers}"
            self._run(start_or_close(consumer), action)  # not kept when it does not start
            self._consumer = consumer
        return self._consumer

    def batches(
        self, topic: str, partition: int, start: int, end: int
    ) -> Iterator[list[RawRecord]]:
        """The records of ``topic[partition]`` with ``start <= offset < end``, filtered by time."""
        consumer = self._started()
        tp = TopicPartition(topic, partition)
        at = self._at
        self._at = None  # unknown until this range is read through
        since, until, src = self.source.since_ms, self.source.until_ms, self.source

        async def place() -> None:  # aiokafka wants its loop running
            if at is None or at[0] != tp:
                consumer.assign([tp])
                consumer.seek(tp, start)
            elif at[1] != start:
                consumer.seek(tp, start)

        async def fetch(most: int) -> tuple[list[Any], int]:
            fetched = await consumer.getmany(tp, timeout_ms=500, max_records=most)
            position = await consumer.position(tp)
            for _ in range(TURNS):  # aiokafka sends the next fetch request
                await asyncio.sleep(0)
            return fetched.get(tp, []), position

        self._run(place(), f"assigning {topic}[{partition}]")
        position, idle = start, 0.0
        while position < end:
            records, position = self._run(
                fetch(min(src.batch_records, end - position)), "reading records"
            )
            idle = 0.0 if records else idle + 0.5
            if records and records[-1].offset >= end:  # offsets ascend: cut at the end
                records = [r for r in records if r.offset < end]
            if since is None and until is None:  # no window: every record, in one pass
                batch = [(topic, partition, r.offset, r.timestamp, r.key, r.value) for r in records]
            else:
                batch = [
                    (topic, partition, r.offset, r.timestamp, r.key, r.value)
                    for r in records
                    if in_window(r.timestamp, since, until, r.value)
                ]
            if idle >= src.timeout_s:
                raise _stalled(src.timeout_s, f"{topic}[{partition}]")
            if batch:
                yield batch
        self._at = (tp, position)

    def close(self) -> None:
        """Stop the consumer and close the loop."""
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            with contextlib.suppress(TransientError):  # no answer within the timeout
                self._run(stop_quietly(consumer), "closing the consumer")
        if not self._loop.is_closed():
            self._loop.close()
