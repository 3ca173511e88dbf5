"""Flat cost as history grows: the store's insert rate with 100k and with 10M records stored.

Two SQLite stores (the node's own schema, migrations applied by ``SqliteStore.open``) are
pre-filled with synthetic history by one bulk SQL statement per million rows (a
recursive CTE: no Python per row, no node), so a 10M-record history takes about a minute
to make rather than hours through the node. The synthetic rows have what the indexes
see in real history: 27 senders in turn, time-ordered 16-byte message ids older than
anything inserted afterwards (so each sender's ids grow at their own right edge, as
UUIDv7 ids do), an expiry time growing with arrival, a 32-byte envelope hash; their
payload is a short JSON text (a 1 KB payload would make 10M rows 10 GB of disk and
changes nothing the indexes see: rows go to the end of the rowid table either way).

Then both stores take the same kind of new records (1 KB alerts from
:func:`tests.bench.bench_store.make_records`, fresh UUIDv7 ids) through
``SqliteStore.commit_batch`` in 1,000-record batches, the rounds interleaved between the
two stores so that load from other processes hits both alike; the figure is the median
round. The ratio "at 10M vs at 100k" is the target (>= 0.8).

``BENCH_SCALE`` scales the large history (10M at 1.0; 1M at 0.1) and the records
inserted per round; the small history stays 100k.
"""

from __future__ import annotations

import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from nodes.store.sqlite import SqliteStore
from tests.bench.bench_store import BATCH, TOPIC, make_records
from tests.bench.harness import BenchContext, Figure

SMALL = 100_000
LARGE = 10_000_000
ROUNDS = 5
STEP = 1_000_000  # rows per prefill transaction
SENDERS = "AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK"
_SENDER = (
    "CASE i % 27 "
    + " ".join(f"WHEN {k} THEN '{s}'" for k, s in enumerate(SENDERS.split()))
    + " END"
)
_T0_US = 1_700_000_000_000_000  # Nov 2023: before any UUIDv7 made today
# A 16-byte id: 0x01, then 15 ASCII digits of the row number; it sorts before every UUIDv7
# made since 2023 (0x01 0x8b...) and in row order among its own.
PREFILL = f"""
WITH RECURSIVE c(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM c WHERE i + 1 < ?)
INSERT INTO records (message_id, topic, kafka_partition, kafka_offset, sender, message_type,
    record_key, sequence, created_at, received_at, category, tlp, handling_code, recipients,
    payload, envelope_hash, expires_at, state)
SELECT CAST(char(1) || printf('%015d', i) AS BLOB), '{TOPIC}', i % 3, i, {_SENDER},
    'OffenceAlert', 'history-' || i, i / 27 + 1, {_T0_US} + i * 1000, {_T0_US} + i * 1000,
    'OTHER', 'AMBER', 'H1', '[]', '{{"synthetic":true}}', randomblob(32),
    {_T0_US} + i * 1000 + 15552000000000, 'active'
FROM c
"""  # noqa: S608  (constants only)


def prefill(path: Path, n: int) -> float:
    """Fill the store file at ``path`` with ``n`` synthetic history rows; rows per second."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")  # a bench's history: speed over durability
        t0 = time.perf_counter()
        for start in range(0, n, STEP):
            conn.execute("BEGIN")
            conn.execute(PREFILL, (start, min(n, start + STEP)))
            conn.execute("COMMIT")
        rate = n / (time.perf_counter() - t0)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (count,) = conn.execute("SELECT count(*) FROM records").fetchone()
        assert count == n, (count, n)
        return rate
    finally:
        conn.close()


async def insert_rate(store: SqliteStore, n: int, group: str) -> float:
    """Records/s of ``commit_batch`` of ``n`` new 1 KB alerts in 1,000-record batches."""
    records = make_records(n)
    t0 = time.perf_counter()
    for start in range(0, n, BATCH):
        batch = records[start : start + BATCH]
        offsets = {(TOPIC, p): batch[-1].offset + 1 for p in range(3)}
        result = await store.commit_batch(
            group, records=batch, quarantined=(), retractions=(), audit=(), offsets=offsets
        )
        assert result.stored == len(batch), result
    return n / (time.perf_counter() - t0)


async def run(ctx: BenchContext) -> list[Figure]:
    large = max(ctx.n(LARGE), 2 * SMALL)
    per_round = ctx.n(20_000, minimum=2 * BATCH) // BATCH * BATCH
    sizes = {SMALL: "100k", large: f"{large / 1e6:g}M"}
    prefill_rates: dict[int, float] = {}
    rates: dict[int, list[float]] = {n: [] for n in sizes}
    mb: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        stores: dict[int, SqliteStore] = {}
        try:
            for n in sizes:
                path = Path(tmp) / f"history-{n}.db"
                store = SqliteStore(f"sqlite:///{path}")
                await store.open()
                await store.close()  # schema made; fill it without the store's thread
                prefill_rates[n] = prefill(path, n)
                mb[n] = path.stat().st_size / 1e6
                stores[n] = SqliteStore(f"sqlite:///{path}")
                await stores[n].open()
            for _ in range(ROUNDS):
                for n, store in stores.items():
                    rates[n].append(await insert_rate(store, per_round, "bench"))
        finally:
            for store in stores.values():
                await store.close()
    small_rate = statistics.median(rates[SMALL])
    return [
        Figure(
            f"history: synthetic history bulk SQL prefill, {sizes[large]} rows"
            f" ({mb[large]:,.0f} MB)",
            prefill_rates[large],
            "rows/s",
        ),
        Figure(f"history: SQLite commit_batch with {sizes[SMALL]} stored", small_rate, "records/s"),
        Figure(
            f"history: SQLite commit_batch with {sizes[large]} stored",
            statistics.median(rates[large]),
            "records/s",
            f"with {sizes[SMALL]} stored",
            small_rate,
        ),
    ]
