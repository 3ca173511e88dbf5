"""The PostgreSQL store (asyncpg, a small connection pool), for production nodes.

Same semantics as the SQLite store. This module holds the store's lifecycle (pool,
migrations), the consumer's commit path (:meth:`PostgresStore.commit_batch`), connector
cursors, the audit log and status; it inherits the connection plumbing
(:mod:`nodes.store.postgres_access`), the record queries and retention
(:mod:`nodes.store.postgres_queries`) and the outbox (:mod:`nodes.store.postgres_outbox`).

A batch of records goes in as one
``INSERT ... SELECT FROM unnest(arrays) ON CONFLICT DO NOTHING RETURNING message_id``, so
duplicates cost nothing extra to find. Appends to the audit log take a transaction-level
advisory lock, so concurrent instances (consumer, publisher, CLI) never fork the chain.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

from nodes.store import audit_chain, migrations
from nodes.store import codecs as c
from nodes.store import postgres_ops as ops
from nodes.store.base import (
    AuditEntry,
    AuditEvent,
    BatchResult,
    ConnectorEvent,
    MessageKey,
    QuarantineEntry,
    RetractionOrder,
    StoredRecord,
    StoreError,
    TopicPartition,
)
from nodes.store.postgres_access import DRIVER_ERRORS, Conn, translate
from nodes.store.postgres_outbox import PostgresOutbox
from nodes.store.postgres_pages import PostgresPages
from nodes.store.postgres_queries import PostgresQueries

_LOCK_MIGRATE = 0x4E43_5001  # advisory lock keys ("NCP" + purpose)


class PostgresStore(PostgresQueries, PostgresOutbox, PostgresPages):
    """:class:`nodes.store.base.Store` on a PostgreSQL database."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 4) -> None:
        if not url.startswith(("postgresql://", "postgres://")):
            raise StoreError(f"store url: expected postgresql://user@host:port/db, got {url!r}")
        self.url = url
        self.min_size, self.max_size = min_size, max_size
        self._pool: Any = None

    # --- lifecycle ---------------------------------------------------------------
    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            self._pool = await asyncpg.create_pool(
                self.url, min_size=self.min_size, max_size=self.max_size
            )
        except DRIVER_ERRORS as exc:
            raise translate(exc) from exc
        except ValueError as exc:  # a URL asyncpg cannot parse
            raise StoreError(f"store url: {exc}") from exc
        try:
            await self._migrate()
        except BaseException:
            await self.close()
            raise

    async def _migrate(self) -> None:
        known = migrations.load("postgres")
        for migration in (None, *known):
            async with self._conn(transaction=True) as conn:
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_MIGRATE)
                await conn.execute(migrations.SCHEMA_MIGRATIONS_DDL)
                current = await ops.schema_version(conn)
                if current > len(known):
                    raise StoreError(migrations.too_new_message(current, len(known)))
                if migration is None or current >= migration.version:
                    continue
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum, applied_at)"
                    " VALUES ($1, $2, $3, $4)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                    datetime.now(UTC).isoformat(),
                )

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=10)
            except DRIVER_ERRORS:
                pool.terminate()

    async def schema_version(self) -> int:
        return await self._read(ops.schema_version)

    # --- consumer ------------------------------------------------------------------
    async def load_offsets(self, group: str) -> dict[TopicPartition, int]:
        async def work(conn: Conn) -> dict[TopicPartition, int]:
            rows = await conn.fetch(
                "SELECT topic, kafka_partition, next_offset FROM consumer_offsets"
                " WHERE group_id = $1",
                group,
            )
            return {(r[0], r[1]): r[2] for r in rows}

        return await self._read(work)

    async def commit_batch(
        self,
        group: str,
        *,
        records: Sequence[StoredRecord],
        quarantined: Sequence[QuarantineEntry],
        retractions: Sequence[RetractionOrder],
        audit: Sequence[AuditEvent],
        offsets: Mapping[TopicPartition, int],
    ) -> BatchResult:
        rows = [ops.record_row(r) for r in c.first_occurrences(records)]
        q_rows = [ops.quarantine_row(q) for q in quarantined]
        o_rows = [(group, t, p, o) for (t, p), o in offsets.items()]

        async def work(conn: Conn) -> tuple[set[MessageKey], int]:
            inserted: set[MessageKey] = set()
            if rows:
                columns = list(zip(*rows, strict=True))
                got = await conn.fetch(ops.INSERT_RECORDS, *columns)
                inserted = {(r[0], UUID(bytes=r[1].bytes)) for r in got}
            if q_rows:
                await conn.executemany(ops.INSERT_QUARANTINE, q_rows)
            changed, erasures = await ops.apply_retractions(conn, retractions)
            await ops.append_audit(conn, [*audit, *erasures])
            if o_rows:
                await conn.executemany(ops.UPSERT_OFFSET, o_rows)
            delivered = [(row[0], row[1], row[4]) for row in rows if (row[4], row[0]) in inserted]
            await ops.append_events(conn, delivered, changed)
            return inserted, len(changed)

        inserted, applied = await self._write(work)
        duplicates = c.batch_duplicates(records, len(inserted), lambda k: k not in inserted)
        return BatchResult(len(inserted), duplicates, applied)

    async def seen_message_ids(self, ids: Sequence[MessageKey]) -> set[MessageKey]:
        async def work(conn: Conn) -> set[MessageKey]:
            wanted = set(ids)
            rows = await conn.fetch(
                "SELECT sender, message_id FROM records WHERE message_id = ANY($1::uuid[])"
                " UNION ALL"
                " SELECT sender, message_id FROM tombstones WHERE message_id = ANY($1::uuid[])",
                list({mid for _, mid in ids}),
            )
            found = {(r[0], UUID(bytes=r[1].bytes)) for r in rows}
            return found & wanted

        return await self._read(work)

    # --- outbound connectors -----------------------------------------------------------------
    async def open_cursor(self, connector: str, at: datetime) -> int:
        when = c.aware(at, "at")
        return await self._write(lambda conn: ops.open_cursor(conn, connector, when))

    async def connector_events(self, after_seq: int, limit: int) -> list[ConnectorEvent]:
        lim = c.positive_limit(limit)
        return await self._read(lambda conn: ops.connector_events(conn, after_seq, lim))

    async def advance_cursor(
        self, connector: str, last_seq: int, at: datetime, audit: Sequence[AuditEvent] = ()
    ) -> None:
        when = c.aware(at, "at")
        await self._write(lambda conn: ops.advance_cursor(conn, connector, last_seq, when, audit))

    async def prune_connector_events(self, up_to_seq: int) -> int:
        return await self._write(lambda conn: ops.prune_connector_events(conn, up_to_seq))

    # --- audit log ----------------------------------------------------------------------------
    async def append_audit(self, events: Sequence[AuditEvent]) -> None:
        await self._write(lambda conn: ops.append_audit(conn, events))

    async def audit_entries(self, since_seq: int = 0, limit: int = 1000) -> list[AuditEntry]:
        lim = c.positive_limit(limit)
        return await self._read(lambda conn: ops.audit_page(conn, since_seq, lim))

    async def verify_audit_chain(self) -> int | None:
        async def work(conn: Conn) -> int | None:
            verifier = audit_chain.ChainVerifier()
            since = 0
            while page := await ops.audit_page(conn, since, 5000):
                bad = verifier.feed(page)
                if bad is not None:
                    return bad
                since = page[-1].seq
            return None

        async with self._conn() as conn, conn.transaction(isolation="repeatable_read"):
            return await work(conn)

    # --- status ---------------------------------------------------------------------------------
    async def set_status(self, key: str, value: str) -> None:
        async def work(conn: Conn) -> None:
            await conn.execute(
                "INSERT INTO node_status (key, value) VALUES ($1, $2)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                key,
                value,
            )

        await self._write(work)

    async def get_status(self) -> dict[str, str]:
        async def work(conn: Conn) -> dict[str, str]:
            return {r[0]: r[1] for r in await conn.fetch("SELECT key, value FROM node_status")}

        return await self._read(work)
