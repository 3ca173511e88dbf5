"""The replay loop: batches of raw records in, violations and counts out.

Reading (Kafka or an archive) and the chain checks run in this process; verification
runs in the :class:`~exchange.audit.verify_pool.VerifyPool`. Up to ``3 x workers``
batches are in flight, so the workers never wait for the reader and the reader never
runs far ahead (raw records in memory stay bounded). Results are taken in submission
order; the checks do not depend on the order anyway. The checks keep one summary per
verified record until the end (chains span partitions, which Kafka does not order
among themselves): memory grows by about 1 KB a record.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection, Iterable
from concurrent.futures import BrokenExecutor
from dataclasses import dataclass, field

from exchange.audit.checks import ChainChecker, RecordSummary, Violation
from exchange.audit.reader import RawRecord
from exchange.audit.tally import Tally
from exchange.audit.verify_pool import Packed, VerifyPool
from exchange.errors import TransientError

#: Called with the number of records done so far.
Progress = Callable[[int], None]


@dataclass
class ReplayOutcome:
    """What a replay found: the sorted violations, the counts, chains seen, time taken."""

    violations: list[Violation]
    tally: Tally
    chains: int
    elapsed_s: float = 0.0
    by_kind: dict[str, int] = field(default_factory=dict)
    anchored_topics: list[str] = field(default_factory=list)

    @property
    def exit_status(self) -> int:
        """0 when clean, 1 when anything was found."""
        return 1 if self.violations else 0


async def from_iterable(batches: Iterable[list[RawRecord]]) -> AsyncIterator[list[RawRecord]]:
    """An async view of a synchronous batch source (an archive)."""
    for batch in batches:
        yield batch
        await asyncio.sleep(0)


async def replay(
    batches: AsyncIterator[list[RawRecord]],
    pool: VerifyPool,
    *,
    anchored: bool,
    anchored_topics: Callable[[], Collection[str]] = frozenset,
    progress: Progress | None = None,
) -> ReplayOutcome:
    """Verify every record of ``batches`` and run the checks over the summaries.

    ``anchored``: the replay starts at a time, so each chain's first message seen
    anchors it; ``anchored_topics()`` (asked once everything is read) names topics
    where that holds too because their oldest records are gone.
    """
    checker = ChainChecker(anchored=anchored)
    tally = Tally()
    limit = max(2, 3 * pool.workers)
    inflight: deque[asyncio.Future[Packed]] = deque()
    done = 0
    started = time.perf_counter()

    def take(packed: Packed) -> None:
        nonlocal done
        add, make = checker.add, RecordSummary._make
        for row in packed[0]:
            add(make(row))
        tally.merge(packed[1])
        done += len(packed[0])
        if progress is not None:
            progress(done)

    # The checks keep a summary per record alive; the cyclic garbage collector would
    # traverse them all, again and again (it doubled the checks' cost at 200k records).
    # Summaries hold no cycles, so it is paused for the replay and restored after.
    collecting = gc.isenabled()
    gc.disable()
    try:
        async for batch in batches:
            if not batch:
                continue
            inflight.append(asyncio.wrap_future(pool.submit(batch)))
            while len(inflight) >= limit or (inflight and inflight[0].done()):
                take(await inflight.popleft())
        while inflight:
            take(await inflight.popleft())
    except BrokenExecutor as exc:  # a worker killed (out of memory, signal): no partial report
        raise TransientError(f"a verification worker stopped: {exc}") from exc
    finally:
        for f in inflight:
            f.cancel()
        if collecting:
            gc.enable()
    late_start = sorted(anchored_topics())
    violations = checker.finish(late_start)
    by_kind: dict[str, int] = {}
    for v in violations:
        by_kind[v.kind] = by_kind.get(v.kind, 0) + 1
    return ReplayOutcome(
        violations,
        tally,
        checker.chains,
        time.perf_counter() - started,
        dict(sorted(by_kind.items())),
        late_start,
    )
