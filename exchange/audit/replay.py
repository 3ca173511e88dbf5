"""The replay loop: records in, violations and counts out.

From Kafka with a process pool (:func:`replay_kafka`): this process plans each
partition's offset range, cuts the ranges into pieces (:func:`chunks`) and keeps
``2 x workers`` pieces in flight; each worker reads its piece from Kafka itself,
verifies it and sends back a compact digest. From an archive, or with threads or
inline verification (:func:`replay`): this process reads and hands out batches, up
to ``3 x workers`` in flight, so the workers never wait for the reader and raw
records in memory stay bounded. Either way this process only merges digests and
runs the chain checks, whose result does not depend on the order digests arrive in.

Memory: chains span partitions, which Kafka does not order among themselves, so the
checks keep every verified record until the end, but only what they need, in
columns (:class:`~exchange.audit.checks.ChainChecker`, 112 bytes a record), and only
a run of them in memory: each million records held go to scratch files, sorted by
sequence, and the end reads each chain back in windows of sequences, never whole
(:mod:`exchange.audit.spill`), so the longest chain does not set the peak. Measured
(tests/bench/stream_audit_10m.py): a replay of 3M records, 2.7M of them one member's,
peaked at 322 MB, reached before the end's checks (607 MB when the end read chains
whole). What still grows is the volume chart's timestamps, 8 bytes a record.
Disk: about 130 bytes a record in the system's temporary directory during a replay.
"""

from __future__ import annotations

import asyncio
import gc
import heapq
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import BrokenExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

from exchange.audit.checks import ChainChecker, RecordSummary, Violation
from exchange.audit.digest import Digest
from exchange.audit.reader import KafkaHistoryReader, Range, RangeSource, RawRecord
from exchange.audit.tally import Tally
from exchange.audit.verify_pool import RelayedError, VerifyPool
from exchange.errors import TransientError

#: Called with the number of records done so far.
Progress = Callable[[int], None]
MIN_CHUNK, MAX_CHUNK = 500, 20_000


@dataclass
class ReplayOutcome:
    """What a replay found: the sorted violations, the counts, chains seen, time taken."""

    violations: list[Violation]
    tally: Tally
    chains: int
    elapsed_s: float = 0.0
    by_kind: dict[str, int] = field(default_factory=dict)
    anchored_topics: list[str] = field(default_factory=list)
    #: Violations counted (in ``by_kind`` too) but not listed: past the checker's limit.
    unlisted: dict[str, int] = field(default_factory=dict)

    @property
    def exit_status(self) -> int:
        """0 when clean, 1 when anything was found."""
        return 1 if self.violations or self.unlisted else 0


async def from_iterable(batches: Iterable[list[RawRecord]]) -> AsyncIterator[list[RawRecord]]:
    """An async view of a synchronous batch source (an archive)."""
    for batch in batches:
        yield batch
        await asyncio.sleep(0)


def chunks(ranges: Sequence[Range], workers: int) -> list[Range]:
    """``ranges`` cut into pieces for ``workers``, in the order they should be read.

    Guided: each piece is the records left over all ranges divided by ``2 x workers``
    (at least 500, at most 20,000), cut from the range with the most records left, so
    the ranges advance together and the pieces shrink as the replay nears its end.
    The first pieces are large, because each piece costs its worker a fetch round
    trip before the first record (about 6 ms measured); the last are small, so the
    workers finish together (fixed pieces of 1/16 a worker left one core idle for
    up to a piece's time at the end). A range's pieces follow one another.
    """
    heap = [(start - end, n, start) for n, (_, _, start, end) in enumerate(ranges) if end > start]
    heapq.heapify(heap)
    remaining = -sum(left for left, _, _ in heap)
    share = 2 * max(1, workers)
    out: list[Range] = []
    while heap:
        negative_left, n, start = heapq.heappop(heap)
        size = min(MAX_CHUNK, max(MIN_CHUNK, remaining // share), -negative_left)
        topic, partition, _, end = ranges[n]
        out.append((topic, partition, start, start + size))
        remaining -= size
        if start + size < end:
            heapq.heappush(heap, (negative_left + size, n, start + size))
    return out


class _Replay:
    """The checks and counts, fed with digests."""

    def __init__(self, anchored: bool, progress: Progress | None) -> None:
        self.checker = ChainChecker(anchored=anchored)
        self.tally = Tally()
        self.progress = progress
        self.done = 0
        self.started = time.perf_counter()

    def take(self, digest: Digest) -> None:
        failed, blocks, tally = digest
        add, make = self.checker.add, RecordSummary._make
        for row in failed:
            add(make(row))
        for block in blocks:
            self.checker.add_block(block)
        self.tally.merge(tally)
        self.done += tally.records
        if self.progress is not None:
            self.progress(self.done)

    def outcome(self, anchored_topics: Callable[[], Collection[str]]) -> ReplayOutcome:
        late_start = sorted(anchored_topics())
        violations = self.checker.finish(late_start)
        self.checker.close()
        by_kind: dict[str, int] = dict(self.checker.unlisted)
        for v in violations:
            by_kind[v.kind] = by_kind.get(v.kind, 0) + 1
        return ReplayOutcome(
            violations,
            self.tally,
            self.checker.chains,
            time.perf_counter() - self.started,
            dict(sorted(by_kind.items())),
            late_start,
            dict(sorted(self.checker.unlisted.items())),
        )


@contextmanager
def _running(inflight: Collection[asyncio.Future[Digest]]) -> Iterator[None]:
    """Around a replay's loop over ``inflight`` futures (a collection kept, not rebound).

    The cyclic garbage collector pauses: nothing the replay keeps holds a cycle (with
    a summary object per record kept, collections doubled the checks' cost at 200k
    records; with columns little is left to walk, and collecting gains nothing). A
    killed worker (out of memory, a signal) ends the replay with TransientError and no
    report; whatever is still in flight is cancelled.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    except BrokenExecutor as exc:
        raise TransientError(f"a verification worker stopped: {exc}") from exc
    finally:
        for f in inflight:
            f.cancel()
        if collecting:
            gc.enable()


async def replay(
    batches: AsyncIterator[list[RawRecord]],
    pool: VerifyPool,
    *,
    anchored: bool,
    anchored_topics: Callable[[], Collection[str]] = frozenset,
    progress: Progress | None = None,
) -> ReplayOutcome:
    """Verify every record of ``batches`` and run the checks over their digests.

    ``anchored``: the replay starts at a time, so each chain's first message seen
    anchors it; ``anchored_topics()`` (asked once everything is read) names topics
    where that holds too because their oldest records are gone.
    """
    state = _Replay(anchored, progress)
    limit = max(2, 3 * pool.workers)
    inflight: deque[asyncio.Future[Digest]] = deque()
    with _running(inflight):
        async for batch in batches:
            if not batch:
                continue
            inflight.append(asyncio.wrap_future(pool.submit_digest(batch)))
            while len(inflight) >= limit or (inflight and inflight[0].done()):
                state.take(await inflight.popleft())
        while inflight:
            state.take(await inflight.popleft())
    return state.outcome(anchored_topics)


async def replay_kafka(
    reader: KafkaHistoryReader,
    pool: VerifyPool,
    *,
    anchored: bool,
    anchored_topics: Callable[[], Collection[str]] = frozenset,
    progress: Progress | None = None,
) -> ReplayOutcome:
    """Replay what ``reader`` plans: read by the workers themselves when they are processes.

    The main process plans the ranges (:meth:`KafkaHistoryReader.ranges`), cuts them
    (:func:`chunks`) and keeps ``2 x workers`` pieces in flight; each worker reads its
    piece with its own consumer, verifies it and sends back only its digest. With
    threads or inline verification the main process reads (:func:`replay`).
    """
    if not pool.reads_ranges:
        return await replay(
            reader.batches(),
            pool,
            anchored=anchored,
            anchored_topics=anchored_topics,
            progress=progress,
        )
    state = _Replay(anchored, progress)
    source = RangeSource(
        reader.settings,
        reader.since_ms,
        reader.until_ms,
        reader.timeout_s,
        reader.batch_records,
    )
    todo = deque(chunks(await reader.ranges(), pool.workers))
    limit = max(2, 2 * pool.workers)
    inflight: set[asyncio.Future[Digest]] = set()
    with _running(inflight):
        while todo or inflight:
            while todo and len(inflight) < limit:
                inflight.add(asyncio.wrap_future(pool.submit_range(source, todo.popleft())))
            finished, _ = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
            inflight -= finished
            for f in finished:
                try:
                    digest = f.result()
                except RelayedError as exc:
                    raise exc.error() from None
                state.take(digest)
    return state.outcome(anchored_topics)
