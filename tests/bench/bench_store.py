"""Store insert speed: SQLite ``commit_batch`` against bare sqlite3 on the same rows.

Both sides write the same 1 KB alerts in 1,000-row transactions to a fresh file in WAL
mode with synchronous=NORMAL. The baseline is sqlite3's ``executemany`` of rows already
encoded into a table with only a primary key on the message id; the store's figure
includes everything the consumer pays: encoding each record (JSON, times), the hop to
the store's thread, the retention index, the offsets upsert and the audit entries.
Two store figures: one COLLECTION audit entry per batch, and one per record.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from exchange.uuid7 import uuid7
from nodes.store.base import AuditAction, AuditEvent, StoredRecord
from nodes.store.sqlite import SqliteStore
from nodes.store.sqlite_ops import sq_record_row
from tests.bench.harness import BenchContext, Figure

BATCH = 1000
REPEATS = 3
TOPIC = "ncp.alerts.v1"
BASELINE = "sqlite3 executemany, PK only"


def make_records(n: int) -> list[StoredRecord]:
    """``n`` alerts with ~1 KB payloads and time-ordered (UUIDv7) ids."""
    start = datetime.now(UTC)
    out = []
    for i in range(n):
        at = start + timedelta(microseconds=20 * i)
        out.append(
            StoredRecord(
                message_id=uuid7(at),
                topic=TOPIC,
                partition=i % 3,
                offset=i,
                sender="FR",
                message_type="OffenceAlert",
                key=f"alert-{i}",
                sequence=i + 1,
                created_at=at,
                received_at=at,
                category="identity_fraud",
                tlp="AMBER",
                handling_code="H1",
                recipients=(),
                payload={
                    "alert_id": f"alert-{i}",
                    "category": "identity_fraud",
                    "description": os.urandom(400).hex(),
                    "indicators": [{"type": "url", "value": f"https://example.test/{i}"}],
                },
                envelope_hash=os.urandom(32),
                expires_at=at + timedelta(days=180),
            )
        )
    return out


def fresh(folder: Path, name: str) -> Path:
    path = folder / name
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


def baseline_rate(folder: Path, records: list[StoredRecord]) -> float:
    """Records/s of bare executemany of pre-encoded rows into a primary-key-only table."""
    rows = [sq_record_row(r) for r in records]
    conn = sqlite3.connect(fresh(folder, "baseline.db"), isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(
            "CREATE TABLE records (message_id BLOB PRIMARY KEY, topic, kafka_partition,"
            " kafka_offset, sender, message_type, record_key, sequence, created_at, received_at,"
            " category, tlp, handling_code, recipients, payload, envelope_hash, expires_at, state)"
        )
        sql = f"INSERT INTO records VALUES ({','.join('?' * 18)})"  # noqa: S608
        t0 = time.perf_counter()
        for start in range(0, len(rows), BATCH):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, rows[start : start + BATCH])
            conn.execute("COMMIT")
        return len(rows) / (time.perf_counter() - t0)
    finally:
        conn.close()


async def store_rate(folder: Path, records: list[StoredRecord], *, audit_per_record: bool) -> float:
    """Records/s of SqliteStore.commit_batch in 1,000-record batches."""
    store = SqliteStore(f"sqlite:///{fresh(folder, 'store.db')}")
    await store.open()
    try:
        t0 = time.perf_counter()
        for start in range(0, len(records), BATCH):
            batch = records[start : start + BATCH]
            subjects = [str(r.message_id) for r in batch] if audit_per_record else ["batch"]
            audit = [
                AuditEvent(
                    at=batch[-1].received_at,
                    action=AuditAction.COLLECTION,
                    actor="node:FR/consumer",
                    justification="received from the federation",
                    subject=subject,
                    details={"topic": TOPIC},
                )
                for subject in subjects
            ]
            offsets = {(TOPIC, p): batch[-1].offset + 1 for p in range(3)}
            result = await store.commit_batch(
                "bench", records=batch, quarantined=(), retractions=(), audit=audit, offsets=offsets
            )
            assert result.stored == len(batch), result
        return len(records) / (time.perf_counter() - t0)
    finally:
        await store.close()


async def run(ctx: BenchContext) -> list[Figure]:
    n = ctx.n(50_000, minimum=5 * BATCH) // BATCH * BATCH
    records = make_records(n)
    base, per_batch, per_record = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        folder = Path(tmp)
        for _ in range(REPEATS):  # interleaved, so drift hits both sides alike
            base.append(baseline_rate(folder, records))
            per_batch.append(await store_rate(folder, records, audit_per_record=False))
            per_record.append(await store_rate(folder, records, audit_per_record=True))
    baseline = statistics.median(base)
    return [
        Figure(
            "store: SQLite commit_batch, 1 audit entry a batch",
            statistics.median(per_batch),
            "records/s",
            BASELINE,
            baseline,
        ),
        Figure(
            "store: SQLite commit_batch, 1 audit entry a record",
            statistics.median(per_record),
            "records/s",
            BASELINE,
            baseline,
        ),
    ]
