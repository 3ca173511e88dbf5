"""The blacklist tables (migration 0006) on either backend, through one small interface.

The tables keep times as BIGINT microseconds on both dialects, so every statement in
``nodes.blacklist`` is written once, with ``?`` placeholders: :class:`SqliteTx` runs it as
is on a connection of its own (in one worker thread: a transaction spans several calls
and must not share the store's connection), :class:`PostgresTx` rewrites ``?`` to ``$n``
and runs it on a connection of the store's pool. :meth:`BlacklistDB.transaction` takes the
materializer's lock (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a transaction-scoped advisory
lock), so two writers (the daemon, an operator's command) never apply a delta twice.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from exchange.errors import ExchangeError, TransientError
from nodes.store.base import Store, StoreError

T = TypeVar("T")
Row = tuple[Any, ...]
ADVISORY_KEY = 0x6E63_7062_6C00  # "ncpbl": the blacklist materializer's lock
_PLACEHOLDER = re.compile(r"\?")


def micros(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000)


def from_micros(us: int | None) -> datetime | None:
    return None if us is None else datetime.fromtimestamp(us / 1_000_000, tz=UTC)


class Tx(Protocol):
    dialect: str

    async def execute(self, sql: str, *args: Any) -> None: ...
    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...
    def payload(self, value: Any) -> dict[str, Any]: ...


class SqliteTx:
    dialect = "sqlite"

    def __init__(self, db: SqliteBlacklistDB) -> None:
        self._db = db

    async def execute(self, sql: str, *args: Any) -> None:
        await self._db.run(lambda c: c.execute(sql, args))

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._db.run(lambda c: c.executemany(sql, rows))

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return await self._db.run(lambda c: c.execute(sql, args).fetchall())

    def payload(self, value: Any) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(value)
        return parsed


def _pg(sql: str) -> str:
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


class PostgresTx:
    dialect = "postgres"

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> None:
        await self._conn.execute(_pg(sql), *args)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            await self._conn.executemany(_pg(sql), rows)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return [tuple(r) for r in await self._conn.fetch(_pg(sql), *args)]

    def payload(self, value: Any) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(value) if isinstance(value, str) else dict(value)
        return parsed


class BlacklistDB(Protocol):
    store: Store

    def transaction(self) -> Any: ...  # async context manager -> Tx
    async def close(self) -> None: ...


class SqliteBlacklistDB:
    """A connection of its own to the store's SQLite file (WAL: readers never wait)."""

    def __init__(self, store: Store, path: str) -> None:
        self.store = store
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blacklist-db")
        self._conn: sqlite3.Connection | None = None

    def _guard(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            self._conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA cache_size=-65536")
        try:
            return fn(self._conn)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise TransientError(f"blacklist store {self.path}: {exc}") from exc
            raise StoreError(f"blacklist store {self.path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"blacklist store {self.path}: {exc}") from exc

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._guard, fn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        await self.run(lambda c: c.execute("BEGIN IMMEDIATE"))
        try:
            yield SqliteTx(self)
        except BaseException:
            await self.run(lambda c: c.execute("ROLLBACK"))
            raise
        await self.run(lambda c: c.execute("COMMIT"))

    async def close(self) -> None:
        def shut(_: sqlite3.Connection) -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        if self._conn is not None:
            await self.run(shut)
        self._executor.shutdown(wait=True)


class PostgresBlacklistDB:
    """Runs on a connection of the PostgreSQL store's pool."""

    def __init__(self, store: Any) -> None:
        self.store = store

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self.store._conn(transaction=True) as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", ADVISORY_KEY)
            yield PostgresTx(conn)

    async def close(self) -> None:
        return None


def blacklist_db(store: Store, url: str) -> BlacklistDB:
    """The blacklist tables of ``store`` (opened, so migrated) at ``url``."""
    if url.startswith("sqlite:"):
        from nodes.store.sqlite import parse_sqlite_url

        path = parse_sqlite_url(url)
        if path == ":memory:":
            raise StoreError("the blacklist needs a store file, not sqlite:///:memory:")
        return SqliteBlacklistDB(store, path)
    return PostgresBlacklistDB(store)


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[BlacklistDB]:
    """Open the store at ``url`` (migrating it) and its blacklist tables, for a command."""
    from nodes.store.base import open_store

    store = open_store(url)
    await store.open()
    db = blacklist_db(store, url)
    try:
        yield db
    finally:
        await db.close()
        await store.close()


__all__ = ["ExchangeError"]
