"""Reading a connector backfill's history: the keyset page walk against loading it whole.

One SQLite store (the node's schema) is pre-filled with synthetic history by bulk SQL
(:func:`tests.bench.bench_history.prefill`: time-ordered 16-byte ids, 27 senders). Then the
same history is read two ways, each twice, the rounds interleaved:

- **paged** (what ``exchange connector backfill`` does): ``Store.page_records`` pages of
  :data:`nodes.outbound.PAGE` along the message-id index, each asked for just past the last;
- **whole** (what it did before): ``count_records`` then ``list_records(limit=count)`` and a
  sort in Python, every record in memory at once.

Figures: records read per second over the whole history (paged beside whole), and the time
until the first record can be handed to the connector (paged beside whole). Memory is not
timed: paged holds one page (200 records), whole holds all of them.

``BENCH_SCALE`` scales the history (1M records at 1.0).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from nodes.outbound import PAGE
from nodes.store.base import MessageKey
from nodes.store.sqlite import SqliteStore
from tests.bench.bench_history import prefill
from tests.bench.bench_store import TOPIC
from tests.bench.harness import BenchContext, Figure

HISTORY = 1_000_000
ROUNDS = 2


async def paged(store: SqliteStore) -> tuple[int, float, float]:
    """(records, seconds to the first page, seconds for all) of a page walk."""
    t0 = time.perf_counter()
    first = 0.0
    count = 0
    after: MessageKey | None = None
    while True:
        page = await store.page_records([TOPIC], after=after, limit=PAGE)
        if not first:
            first = time.perf_counter() - t0
        count += len(page)
        if len(page) < PAGE:
            return count, first, time.perf_counter() - t0
        after = (page[-1].sender, page[-1].message_id)


async def whole(store: SqliteStore) -> tuple[int, float, float]:
    """(records, seconds to the first record, seconds for all) of the former whole read."""
    t0 = time.perf_counter()
    count = await store.count_records(TOPIC)
    records = await store.list_records(topic=TOPIC, limit=count)
    chosen = sorted(records, key=lambda r: (r.received_at, r.message_id))
    elapsed = time.perf_counter() - t0
    count = len(chosen)
    del records, chosen
    for _ in range(2):  # the loop lets go of the finished read (its result) on a later tick:
        await asyncio.sleep(0)  # free it here, untimed, not in the next measurement
    return count, elapsed, elapsed


async def run(ctx: BenchContext) -> list[Figure]:
    n = ctx.n(HISTORY, minimum=10 * PAGE)
    label = f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n // 1000}k"
    results: dict[str, list[tuple[int, float, float]]] = {"paged": [], "whole": []}
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
        path = Path(tmp) / "history.db"
        store = SqliteStore(f"sqlite:///{path}")
        await store.open()
        await store.close()  # schema made; fill it without the store's thread
        prefill(path, n)
        store = SqliteStore(f"sqlite:///{path}")
        await store.open()
        try:
            for _ in range(ROUNDS):
                results["paged"].append(await paged(store))
                results["whole"].append(await whole(store))
        finally:
            await store.close()
    for name, runs in results.items():
        assert all(r[0] == n for r in runs), (name, [r[0] for r in runs])

    def median(name: str, column: int) -> float:
        return statistics.median(r[column] for r in results[name])

    return [
        Figure(
            f"backfill: whole read of {label} records (former)", n / median("whole", 2), "rec/s"
        ),
        Figure(
            f"backfill: page walk of {label} records, pages of {PAGE}",
            n / median("paged", 2),
            "rec/s",
            "whole read",
            n / median("whole", 2),
        ),
        Figure(f"backfill: first record, whole read of {label}", median("whole", 1) * 1e3, "ms"),
        Figure(f"backfill: first page, page walk of {label}", median("paged", 1) * 1e3, "ms"),
    ]
