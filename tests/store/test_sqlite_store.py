"""What only the SQLite store does: file URLs, WAL, a dedicated thread, several instances."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from exchange.errors import TransientError
from nodes.store.base import AuditAction, ChainHead, OutboxStatus, StoreError
from nodes.store.sqlite import SqliteStore, parse_sqlite_url
from tests.store.conftest import NOW, TOPIC, commit, make_event, make_record, outbox_item, signed


def test_url_forms() -> None:
    """Three slashes and a relative path, four slashes for an absolute one."""
    assert parse_sqlite_url("sqlite:///var/node.db") == "var/node.db"
    assert parse_sqlite_url("sqlite:////srv/ncp/node.db") == "/srv/ncp/node.db"
    for bad in ("sqlite://node.db", "sqlite:///", "postgresql:///x", "node.db"):
        with pytest.raises(StoreError, match="store url"):
            parse_sqlite_url(bad)


async def test_relative_url_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sqlite:///data/node.db creates data/node.db under the working directory, in WAL mode."""
    monkeypatch.chdir(tmp_path)
    store = SqliteStore("sqlite:///data/node.db")
    await store.open()
    await store.close()
    path = tmp_path / "data" / "node.db"
    assert path.is_file()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


async def test_a_store_that_is_not_open_says_so(tmp_path: Path) -> None:
    """Calling a store before open() raises a StoreError, not an AttributeError."""
    store = SqliteStore(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(StoreError, match="not open"):
        await store.count_records()


async def test_a_locked_database_is_a_transient_error(tmp_path: Path) -> None:
    """A write lock held past busy_timeout raises TransientError; the store works after."""
    url = f"sqlite:///{tmp_path / 'node.db'}"
    store = SqliteStore(url, busy_timeout=0.05)
    await store.open()
    blocker = sqlite3.connect(tmp_path / "node.db", isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(TransientError, match="locked"):
            await commit(store, records=[make_record()], offsets={(TOPIC, 0): 1})
        blocker.execute("ROLLBACK")
        result = await commit(store, records=[make_record()], offsets={(TOPIC, 0): 1})
        assert result.stored == 1
    finally:
        blocker.close()
        await store.close()


async def test_publisher_and_consumer_instances_write_at_once(tmp_path: Path) -> None:
    """Two instances on one file (WAL) write concurrently without 'database is locked'."""
    url = f"sqlite:///{tmp_path / 'node.db'}"
    consumer, publisher = SqliteStore(url), SqliteStore(url)
    await consumer.open()
    await publisher.open()
    rounds, per_batch = 15, 200

    async def consume() -> None:
        for n in range(rounds):
            at = NOW + timedelta(seconds=n)
            records = [make_record(offset=n * per_batch + i, at=at) for i in range(per_batch)]
            await commit(
                consumer,
                records=records,
                audit=[make_event(n)],
                offsets={(TOPIC, 0): (n + 1) * per_batch},
            )

    async def publish() -> None:
        for n in range(rounds):
            [item_id] = await publisher.enqueue([outbox_item(n)])
            [item] = [p for p in await publisher.pending(100) if p.id == item_id]
            await publisher.mark_signed(
                [signed(item, item_id, n + 1)], [ChainHead(TOPIC, n + 1, bytes(32))]
            )
            await publisher.mark_sent([item_id], NOW)
            await publisher.append_audit([replace(make_event(n), action=AuditAction.DISCLOSURE)])

    try:
        await asyncio.gather(consume(), publish())
        assert await publisher.count_records() == rounds * per_batch
        assert await consumer.load_offsets("g1") == {(TOPIC, 0): rounds * per_batch}
        assert await consumer.outbox_depth() == 0
        assert await consumer.chain_head(TOPIC) == ChainHead(TOPIC, rounds, bytes(32))
        assert len(await consumer.audit_entries()) == 2 * rounds
        assert await publisher.verify_audit_chain() is None
        assert await consumer.pending(10) == []
    finally:
        await consumer.close()
        await publisher.close()


async def test_the_event_loop_keeps_running_during_a_large_batch(tmp_path: Path) -> None:
    """A large commit runs on the store's thread: other tasks keep running meanwhile."""
    store = SqliteStore(f"sqlite:///{tmp_path / 'node.db'}")
    await store.open()
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.002)

    records = [make_record(offset=i) for i in range(20_000)]
    task = asyncio.create_task(ticker())
    try:
        await asyncio.sleep(0)
        start = ticks
        result = await commit(store, records=records)
        assert result.stored == len(records)
        assert ticks - start >= 5
    finally:
        done.set()
        await task
        await store.close()


async def test_outbox_items_keep_their_status_across_instances(tmp_path: Path) -> None:
    """What one instance signs, another sees as SIGNED (one file, one truth)."""
    url = f"sqlite:///{tmp_path / 'node.db'}"
    first, second = SqliteStore(url), SqliteStore(url)
    await first.open()
    await second.open()
    try:
        [item_id] = await first.enqueue([outbox_item()])
        [item] = await second.pending(1)
        await second.mark_signed([signed(item, item_id, 1)], [ChainHead(TOPIC, 1, None)])
        [seen] = await first.pending(1)
        assert seen.status is OutboxStatus.SIGNED
    finally:
        await first.close()
        await second.close()
