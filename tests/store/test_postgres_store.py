"""What only the PostgreSQL store does: connection errors mapped, instances sharing a chain."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from exchange.errors import TransientError
from nodes.store.base import StoreError
from nodes.store.postgres import PostgresStore
from tests.helpers.postgres import database_url, free_port
from tests.store.conftest import make_event


async def test_an_unreachable_server_is_a_transient_error() -> None:
    """No server listening: open() raises TransientError (retry later), not an OSError."""
    store = PostgresStore(f"postgresql://postgres@127.0.0.1:{free_port()}/ncp")
    with pytest.raises(TransientError, match="postgres store"):
        await store.open()


def test_a_url_of_another_scheme_is_refused() -> None:
    """Only postgresql:// and postgres:// URLs are accepted, naming the setting."""
    with pytest.raises(StoreError, match="store url"):
        PostgresStore("mysql://localhost/ncp")


@pytest.mark.integration
@pytest.mark.postgres
async def test_a_missing_database_is_a_store_error(postgres_server: str) -> None:
    """A database that does not exist is a configuration error, not a transient one."""
    store = PostgresStore(database_url(postgres_server, "no_such_database_here"))
    with pytest.raises(StoreError, match="no_such_database_here"):
        await store.open()


@pytest.mark.integration
@pytest.mark.postgres
async def test_instances_appending_at_once_keep_one_chain(postgres_url: str) -> None:
    """Several instances appending audit entries concurrently never fork the hash chain."""
    stores = [PostgresStore(postgres_url) for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))
    try:

        async def append(store: PostgresStore, base: int) -> None:
            for n in range(10):
                await store.append_audit([make_event(base + n), make_event(base + n + 100)])

        await asyncio.gather(*(append(s, i * 1000) for i, s in enumerate(stores)))
        entries = await stores[0].audit_entries(limit=1000)
        assert [e.seq for e in entries] == list(range(1, 61))
        assert await stores[1].verify_audit_chain() is None
    finally:
        await asyncio.gather(*(s.close() for s in stores))


@pytest.mark.integration
@pytest.mark.postgres
async def test_a_dropped_connection_is_a_transient_error(
    postgres_server: str, postgres_url: str
) -> None:
    """A killed connection surfaces as TransientError (or not at all); the pool reconnects."""
    store = PostgresStore(postgres_url, min_size=1, max_size=1)
    await store.open()
    try:
        assert await store.count_records() == 0
        database = postgres_url.rsplit("/", 1)[1]
        admin = await asyncpg.connect(postgres_server)
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
        finally:
            await admin.close()
        assert killed == 1
        outcomes = []
        for _ in range(3):  # whether the first call sees the kill depends on timing
            try:
                outcomes.append(await store.count_records())
            except TransientError:
                outcomes.append(-1)
        assert set(outcomes) <= {0, -1}
        assert outcomes[-1] == 0
    finally:
        await store.close()
