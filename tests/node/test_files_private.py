"""Files holding decrypted content are mode 0600 whatever the umask: the SQLite store with
its WAL and SHM files, and the JSONL connector's output; older, looser files are tightened."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.jsonl import JsonlConnector
from exchange.ids import NodeId
from nodes.inbound import build_item
from nodes.store.sqlite import SqliteStore
from tests.helpers.federation import Federation, alert_data
from tests.node.test_connectors import context, shared_record


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def loose(path: Path) -> None:
    """An empty file at ``path``, mode 0644 (as an older version left it)."""
    path.touch()
    path.chmod(0o644)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """A umask that would leave new files group- and world-readable (0644 or wider)."""
    old = os.umask(0o002)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("loose_umask")
async def test_sqlite_store_database_wal_and_shm_are_private(
    tmp_path: Path, federation: Federation
) -> None:
    """A new SQLite store's database, WAL and SHM files are created 0600 (checked while the
    store is open and has written); an existing 0644 database and WAL are tightened."""
    db = tmp_path / "node.db"
    store = SqliteStore(f"sqlite:///{db}")
    await store.open()
    try:
        now = datetime.now(UTC)
        item = build_item(
            "OffenceAlert",
            alert_data("private", observed_at=now),
            handling={"tlp": "GREEN", "code": "H0"},
            node=NodeId("FR"),
            prefix=federation.prefix,
            trust=federation.trust,
            now=now,
        )
        await store.enqueue([item])
        files = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
        assert all(f.exists() for f in files)
        assert {str(f): mode(f) for f in files} == {str(f): 0o600 for f in files}
    finally:
        await store.close()
    old = tmp_path / "old.db"
    loose(old)
    loose(Path(f"{old}-wal"))
    again = SqliteStore(f"sqlite:///{old}")
    await again.open()
    try:
        assert mode(old) == 0o600
        assert mode(Path(f"{old}-wal")) == 0o600
    finally:
        await again.close()


@pytest.mark.usefixtures("loose_umask")
async def test_jsonl_output_is_private(tmp_path: Path) -> None:
    """The JSONL connector creates its file 0600 and tightens one it finds looser."""
    fresh = JsonlConnector(context(tmp_path, path="new.jsonl"))
    await fresh.deliver(shared_record(), context(tmp_path))
    assert mode(tmp_path / "new.jsonl") == 0o600
    loose(tmp_path / "old.jsonl")
    older = JsonlConnector(context(tmp_path, path="old.jsonl"))
    await older.retract(shared_record().message_id, context(tmp_path))
    assert mode(tmp_path / "old.jsonl") == 0o600


def _outbox_count_in_another_process(db: Path) -> int:
    """How many outbox rows another process sees (it opens, reads, and closes the file)."""
    code = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]);"
        " print(c.execute('SELECT count(*) FROM outbox').fetchone()[0]); c.close()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(db)], capture_output=True, text=True, check=True
    )
    return int(done.stdout)


async def test_opening_a_second_store_keeps_the_first_ones_locks(
    tmp_path: Path, federation: Federation
) -> None:
    """Making an existing database private never opens (and closes) it: that would drop the
    POSIX locks of this process's open connections, and another process closing its own
    connection would then checkpoint and delete the WAL under them (writes lost to readers)."""
    db = tmp_path / "node.db"
    first = SqliteStore(f"sqlite:///{db}")
    await first.open()
    second = SqliteStore(f"sqlite:///{db}")  # a node opens one store per loop
    await second.open()
    try:
        now = datetime.now(UTC)

        def item(title: str) -> Any:
            return build_item(
                "OffenceAlert",
                alert_data(title, observed_at=now),
                handling={"tlp": "GREEN", "code": "H0"},
                node=NodeId("FR"),
                prefix=federation.prefix,
                trust=federation.trust,
                now=now,
            )

        await first.enqueue([item("one")])
        assert await asyncio.to_thread(_outbox_count_in_another_process, db) == 1
        await first.enqueue([item("two")])  # after the other process closed its connection
        assert await asyncio.to_thread(_outbox_count_in_another_process, db) == 2
    finally:
        await second.close()
        await first.close()
