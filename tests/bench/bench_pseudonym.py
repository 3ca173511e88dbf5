"""Pseudonym hit/no-hit: the import, index look-ups, and answers through three nodes.

- import: ``exchange pseudonym import``'s work (parse, normalize, upsert, blind under the
  federation key) of ``BENCH_SCALE`` x 1,000,000 CSV rows into a SQLite store, against
  sqlite3 ``executemany`` of the same rows already parsed into a plain table;
- look-up: the responder's index probe (``lookup`` by key id and blind) on that index,
  half hits, against a bare sqlite3 SELECT on the same table and index;
- three nodes (FR, DE, NL in-process, real broker, SQLite), DE and NL each holding the
  index: FR sends queries (half hit at DE) all at once: answers stored at FR a second
  (two answers a query); then one query at a time: time from the query enqueued at FR to
  both answers stored at FR (p50, p99).
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from exchange.ids import NodeId
from exchange.pseudonyms.csvfile import parse_rows
from exchange.pseudonyms.keys import blind, keyring_for
from nodes.config import load_config
from nodes.daemon import Node
from nodes.pseudonyms.cli import import_file
from nodes.pseudonyms.node import service_for
from nodes.pseudonyms.repo import repo_for
from nodes.pseudonyms.service import PseudonymService
from nodes.store.base import open_store
from tests.bench.harness import BenchContext, Figure
from tests.helpers.federation import NOW, Federation, make_federation

FAST: dict[str, Any] = {
    "http": {"listen": ""},
    "publisher": {"backoff_initial_ms": 50, "backoff_max_ms": 1000, "poll_interval_ms": 20},
    "consumer": {"poll_timeout_ms": 50},
}
RULES = {"pseudonyms": {"query_allowed_from": ["*"], "max_queries_per_hour": 1_000_000}}


def write_csv(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.write("platform,handle,case_reference,contact_unit,first_seen,last_seen\n")
        for i in range(n):
            f.write(f"telegram,@Vendor_{i:07d},DE-{i:07d},BKA SO41,2026-10-01,2026-11-20\n")


def baseline_import(path: Path, db: Path) -> float:
    rows = []
    with path.open(encoding="utf-8", newline="") as f:
        for item in parse_rows(f):
            assert not isinstance(item, str)
            rows.append(item)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE t (platform TEXT, handle TEXT, c TEXT, u TEXT, f TEXT, l TEXT)")
    start = time.perf_counter()
    for i in range(0, len(rows), 20_000):
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)",
            [
                (e.platform, e.handle, e.case_reference, e.contact_unit, "a", "b")  # type: ignore[union-attr]
                for e in rows[i : i + 20_000]
            ],
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return len(rows) / elapsed


def node(fed: Federation, name: str) -> Node:
    return Node(load_config(fed.config_path(name), **FAST, rules=RULES))


def svc(n: Node) -> PseudonymService:
    part = n.pseudonyms
    assert part is not None
    return service_for(n.config, n.store, lambda: part.ring, lambda: part.trust)


async def ask(fr: Node, handle: str) -> str:
    return await svc(fr).ask(
        platform="telegram",
        handle=handle,
        actor="bench",
        justification="bench",
        purpose="bench",
        legal_basis="bench",
        category="OTHER",
        now=datetime.now(UTC),
    )


async def answered(fr: Node, query_id: str) -> int:
    s = svc(fr)
    return len(await s.repo.responses(s.topic, query_id))


async def run(ctx: BenchContext) -> list[Figure]:
    n = ctx.n(1_000_000, minimum=1000)
    with tempfile.TemporaryDirectory(prefix="bench-pseudonym-") as tmp:
        root = Path(tmp)
        fed = make_federation(
            root / "fed",
            prefix=ctx.prefix,
            bootstrap=ctx.bootstrap,
            valid_from=NOW - timedelta(days=30),
        )
        csv = root / "patrol.csv"
        write_csv(csv, n)
        base_rate = baseline_import(csv, root / "baseline.db")

        de_url = load_config(fed.config_path("DE")).store.url
        store = open_store(de_url)
        await store.open()
        ring = keyring_for(fed.trust.pseudonym_keys, NodeId("DE"), fed.nodes["DE"].encryption)
        service = service_for(
            load_config(fed.config_path("DE")), store, lambda: ring, lambda: fed.trust
        )
        start = time.perf_counter()
        kept, problems = await import_file(
            service, store, csv, actor="bench", now=datetime.now(UTC)
        )
        import_rate = kept / (time.perf_counter() - start)
        assert kept == n
        assert not problems
        key = ring.current
        assert key is not None
        probes = [
            blind(key.secret, "telegram", f"vendor_{i * 7919 % n:07d}" if i % 2 else f"nobody_{i}")
            for i in range(ctx.n(20_000, minimum=200))
        ]
        repo = repo_for(store)
        start = time.perf_counter()
        hits = sum([await repo.lookup(key.key_id, p) is not None for p in probes])
        lookup_rate = len(probes) / (time.perf_counter() - start)
        assert hits == len(probes) // 2
        await store.close()
        db = Path(de_url.removeprefix("sqlite:///"))
        raw = sqlite3.connect(db)
        start = time.perf_counter()
        for p in probes:
            raw.execute(
                "SELECT i.case_reference, i.contact_unit FROM pseudonym_blinds b JOIN"
                " pseudonym_index i ON i.id = b.index_id WHERE b.key_id = ? AND b.blind = ?",
                (key.key_id, p),
            ).fetchone()
        raw_rate = len(probes) / (time.perf_counter() - start)
        raw.close()
        nl_db = Path(load_config(fed.config_path("NL")).store.url.removeprefix("sqlite:///"))
        shutil.copyfile(db, nl_db)  # NL holds the same index (no WAL left: the store closed)

        fr, de, nl = node(fed, "FR"), node(fed, "DE"), node(fed, "NL")
        for x in (fr, de, nl):
            await x.start()
        try:
            warm = await ask(fr, "warm_up")
            await _until(lambda: answered(fr, warm), 2, 120)
            count = ctx.n(2000, minimum=100)
            start = time.perf_counter()
            ids = [
                await ask(fr, f"@Vendor_{i * 31 % n:07d}" if i % 2 else f"x{i}")
                for i in range(count)
            ]
            for qid in ids:
                await _until(lambda q=qid: answered(fr, q), 2, 300)  # type: ignore[misc]
            answer_rate = 2 * count / (time.perf_counter() - start)
            latencies = []
            for i in range(ctx.n(100, minimum=20)):
                t0 = time.perf_counter()
                qid = await ask(fr, f"vendor_{i:07d}")
                await _until(lambda q=qid: answered(fr, q), 2, 60)  # type: ignore[misc]
                latencies.append((time.perf_counter() - t0) * 1000)
        finally:
            for x in (fr, de, nl):
                await x.stop()
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return [
        Figure(
            "pseudonym import (1M-row scale)",
            import_rate,
            "rows/s",
            "sqlite3 executemany, parsed rows",
            base_rate,
        ),
        Figure(
            "pseudonym index look-up",
            lookup_rate,
            "lookups/s",
            "sqlite3 SELECT, same index",
            raw_rate,
        ),
        Figure("pseudonym answers stored at FR (3 nodes)", answer_rate, "answers/s"),
        Figure("pseudonym query -> all answers stored, p50", statistics.median(latencies), "ms"),
        Figure("pseudonym query -> all answers stored, p99", p99, "ms"),
    ]


async def _until(count: Any, want: int, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while await count() < want:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {want} answers within {within_s} s")
        await asyncio.sleep(0.005)
