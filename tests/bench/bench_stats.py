"""Statistics: counting one period's records from a SQLite store, against bare sqlite3.

The store holds ``n`` received ~1 KB alerts in the period. The figure is records counted a
second by :func:`nodes.stats.publish.count_period` (the scan of ``records``, the outbox and
the quarantine, JSON decoding of each payload, the tally); the baseline is sqlite3 reading
the same payload column of the same rows and doing nothing with it. The ratio is what the
counting adds to the read: what a period's check costs on a large store.
"""

from __future__ import annotations

import sqlite3
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from exchange.stats.period import PeriodKind, period_containing
from nodes.stats.publish import count_period
from nodes.store.sqlite import SqliteStore
from tests.bench.bench_store import BATCH, make_records
from tests.bench.harness import BenchContext, Figure

REPEATS = 3
BASELINE = "sqlite3 read of the same payloads"


async def run(ctx: BenchContext) -> list[Figure]:
    n = ctx.n(100_000, minimum=1000)
    records = [replace(r, sender="DE") for r in make_records(n)]
    period = period_containing(records[0].received_at.date(), PeriodKind.MONTH)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "node.db"
        store = SqliteStore(f"sqlite:///{path}")
        await store.open()
        try:
            for i in range(0, n, BATCH):
                await store.commit_batch(
                    "g", records=records[i : i + BATCH], quarantined=[], retractions=[],
                    audit=[], offsets={},
                )  # fmt: skip
            ours, base = [], []
            for _ in range(REPEATS):
                started = time.perf_counter()
                tally = await count_period(store, "FR", period)
                ours.append(n / (time.perf_counter() - started))
                assert sum(tally.values()) >= n, "every record counted"
                conn = sqlite3.connect(path)
                started = time.perf_counter()
                conn.execute("SELECT message_type, payload FROM records").fetchall()
                base.append(n / (time.perf_counter() - started))
                conn.close()
        finally:
            await store.close()
    baseline = statistics.median(base)
    return [
        Figure(BASELINE, baseline, "records/s"),
        Figure(
            "stats count_period (SQLite)",
            statistics.median(ours),
            "records/s",
            BASELINE,
            baseline,
        ),
    ]
