"""Joint blacklist speed: a 1,000,000-entry list applied as 10,000-entry deltas, then
exported as RPZ, beside bare SQLite inserts of the same rows in the same run.

Runs in a child process (so its peak RSS is the blacklist's alone): the child opens a fresh
SQLite store, applies ``ctx.n(1_000_000)`` entries as deltas of 10,000 through the real
path (``exchange.blacklist.deltas.parse_delta``: normalization included, then
``nodes.blacklist.state.receive``: the upserts, one transaction per delta), writes the RPZ
export (``nodes.blacklist.export.write_export``), and measures the baseline: sqlite3
``executemany`` of the same canonical rows into a table with the same primary key.
Targets (issue #11): apply < 30 s with peak RSS < 500 MB; RPZ < 30 s; >= 50,000 entries/s.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.bench.harness import BenchContext, Figure

DELTA = 10_000
NOW = datetime(2026, 11, 28, tzinfo=UTC)
BASELINE = "bare sqlite3 executemany, same rows and primary key"


def _payload(version: int, start: int, count: int) -> dict[str, Any]:
    at = NOW.isoformat()
    return {
        "list_id": "fr.csam",
        "base_version": version - 1,
        "version": version,
        "reason": "bench",
        "added": [
            {
                "kind": "DOMAIN",
                "value": f"h{i}.bench-{i % 997}.example",
                "category": "CHILD_SEXUAL_ABUSE_MATERIAL",
                "added_at": at,
            }
            for i in range(start, start + count)
        ],
        "removed": [],
    }


def _baseline(folder: Path, total: int) -> float:
    conn = sqlite3.connect(folder / "baseline.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE e (list_id TEXT, kind TEXT, value TEXT, algorithm TEXT, owner TEXT,"
        " joint TEXT, category TEXT, reason TEXT, added_at INTEGER, expires_at INTEGER,"
        " version INTEGER, listed_at INTEGER, mark INTEGER,"
        " PRIMARY KEY (list_id, kind, value, algorithm))"
    )
    elapsed = 0.0
    for start in range(0, total, DELTA):
        rows = [
            (
                "fr.csam",
                "DOMAIN",
                f"h{i}.bench-{i % 997}.example",
                "",
                "FR",
                "csam",
                "CHILD_SEXUAL_ABUSE_MATERIAL",
                "bench",
                0,
                None,
                1,
                0,
                1,
            )
            for i in range(start, min(start + DELTA, total))
        ]
        t0 = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO e VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
        elapsed += time.perf_counter() - t0
    conn.close()
    return total / elapsed


async def _child(total: int, folder: Path) -> dict[str, float]:
    from exchange.blacklist.deltas import parse_delta
    from exchange.blacklist.policy import ListRule
    from exchange.blacklist.render import ExportFormat
    from nodes.blacklist.db import opened
    from nodes.blacklist.export import write_export
    from nodes.blacklist.state import SyncReport, receive

    rates: list[float] = []
    async with opened(f"sqlite:///{folder / 'node.db'}") as db:
        t_apply = time.perf_counter()
        for version, start in enumerate(range(0, total, DELTA), start=1):
            payload = _payload(version, start, min(DELTA, total - start))
            t0 = time.perf_counter()
            delta = parse_delta("FR", payload)
            async with db.transaction() as tx:
                await receive(tx, delta, NOW, SyncReport())
            rates.append(len(delta.added) / (time.perf_counter() - t0))
        apply_s = time.perf_counter() - t_apply
        t0 = time.perf_counter()
        result = await write_export(
            db,
            joint="csam",
            fmt=ExportFormat.RPZ,
            out=folder / "csam.rpz",
            rule=ListRule(),
            now=NOW,
        )
        export_s = time.perf_counter() - t0
    assert result.entries == total
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "apply_s": apply_s,
        "export_s": export_s,
        "delta_rate": statistics.median(rates),
        "apply_rate": total / apply_s,
        "peak_mb": peak_mb,
        "baseline": _baseline(folder, total),
    }


def run(ctx: BenchContext) -> list[Figure]:
    total = ctx.n(1_000_000, minimum=DELTA)
    with tempfile.TemporaryDirectory(prefix="bench-blacklist-") as tmp:
        done = subprocess.run(
            [sys.executable, "-m", "tests.bench.bench_blacklist", str(total), tmp],
            capture_output=True,
            text=True,
            check=True,
            timeout=1800,
        )
    r = json.loads(done.stdout.strip().splitlines()[-1])
    n = f"{total:,}"
    return [
        Figure(f"blacklist: {n} entries applied as 10k deltas (target < 30)", r["apply_s"], "s"),
        Figure("blacklist: apply, peak RSS of the process (target < 500)", r["peak_mb"], "MB"),
        Figure(f"blacklist: RPZ export of {n} entries (target < 30)", r["export_s"], "s"),
        Figure(
            "blacklist: 10,000-entry delta applied (median; target >= 50k)",
            r["delta_rate"],
            "entries/s",
            BASELINE,
            r["baseline"],
        ),
        Figure(
            f"blacklist: whole {n}-entry apply",
            r["apply_rate"],
            "entries/s",
            BASELINE,
            r["baseline"],
        ),
    ]


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_child(int(sys.argv[1]), Path(sys.argv[2])))))
