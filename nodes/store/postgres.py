"""The PostgreSQL store (asyncpg, a small connection pool), for production nodes.

Same semantics as the SQLite store. A batch of records goes in as one
``INSERT ... SELECT FROM unnest(arrays) ON CONFLICT DO NOTHING RETURNING message_id``, so
duplicates cost nothing extra to find. Appends to the audit log take a transaction-level
advisory lock, so concurrent instances (consumer, publisher, CLI) never fork the chain.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

import asyncpg

from exchange.errors import ExchangeError, TransientError
from nodes.store import audit_chain, migrations
from nodes.store import codecs as c
from nodes.store import postgres_ops as ops
from nodes.store.base import (
    AuditEntry,
    AuditEvent,
    BatchResult,
    ChainHead,
    ConnectorEvent,
    MessageKey,
    OutboxItem,
    QuarantineEntry,
    RetractionOrder,
    StoredRecord,
    StoreError,
    Tombstone,
    TopicPartition,
)

T = TypeVar("T")
Conn = Any  # asyncpg.Connection (asyncpg ships no type hints)

_LOCK_MIGRATE = 0x4E43_5001  # advisory lock keys ("NCP" + purpose)
# Everything asyncpg raises: server errors, client misuse or a closed connection, a broken
# protocol state (a connection killed mid-operation), network errors and timeouts.
_DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    TimeoutError,
)
_TRANSIENT_CLASSES = ("08", "53", "57")  # connection, insufficient resources, operator
_TRANSIENT_STATES = frozenset({"40001", "40P01", "55P03"})  # serialization, deadlock, lock


def _translate(exc: BaseException) -> ExchangeError:
    text = f"postgres store: {type(exc).__name__}: {exc}"
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        if state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES:
            return TransientError(text)
        return StoreError(text)
    if isinstance(exc, asyncpg.InterfaceError) and "closed" not in str(exc):
        return StoreError(text)
    return TransientError(text)  # OSError, TimeoutError, a connection that went away


class PostgresStore:
    """:class:`nodes.store.base.Store` on a PostgreSQL database."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 4) -> None:
        if not url.startswith(("postgresql://", "postgres://")):
            raise StoreError(f"store url: expected postgresql://user@host:port/db, got {url!r}")
        self.url = url
        self.min_size, self.max_size = min_size, max_size
        self._pool: Any = None

    # --- plumbing ------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _conn(self, *, transaction: bool = False) -> AsyncIterator[Conn]:
        if self._pool is None:
            raise StoreError("postgres store: not open (call open() first)")
        try:
            async with self._pool.acquire() as conn:
                if transaction:
                    async with conn.transaction():
                        yield conn
                else:
                    yield conn
        except ExchangeError:
            raise
        except _DRIVER_ERRORS as exc:
            raise _translate(exc) from exc

    async def _read(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        async with self._conn() as conn:
            return await fn(conn)

    async def _write(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        async with self._conn(transaction=True) as conn:
            return await fn(conn)

    # --- lifecycle ---------------------------------------------------------------
    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            self._pool = await asyncpg.create_pool(
                self.url, min_size=self.min_size, max_size=self.max_size
            )
        except _DRIVER_ERRORS as exc:
            raise _translate(exc) from exc
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
            except _DRIVER_ERRORS:
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

    # --- queries -----------------------------------------------------------------------
    async def list_records(
        self,
        *,
        topic: str | None = None,
        sender: str | None = None,
        include_withdrawn: bool = False,
        limit: int = 100,
    ) -> list[StoredRecord]:
        where: list[str] = ["TRUE"]
        args: list[Any] = []
        if topic is not None:
            args.append(topic)
            where.append(f"topic = ${len(args)}")
        if sender is not None:
            args.append(sender)
            where.append(f"sender = ${len(args)}")
        if not include_withdrawn:
            where.append("state = 'active'")
        args.append(c.positive_limit(limit))
        sql = (
            f"SELECT {c.RECORD_COLUMNS} FROM records WHERE {' AND '.join(where)}"  # noqa: S608
            f" ORDER BY message_id DESC LIMIT ${len(args)}"
        )

        async def work(conn: Conn) -> list[StoredRecord]:
            return [ops.record(r) for r in await conn.fetch(sql, *args)]

        return await self._read(work)

    async def get_record(self, message_id: UUID) -> StoredRecord | None:
        sql = f"SELECT {c.RECORD_COLUMNS} FROM records WHERE message_id = $1"  # noqa: S608

        async def work(conn: Conn) -> StoredRecord | None:
            row = await conn.fetchrow(sql, message_id)
            return None if row is None else ops.record(row)

        return await self._read(work)

    async def count_records(self, topic: str | None = None) -> int:
        if topic is None:
            return await self._read(
                lambda conn: ops.fetch_int(conn, "SELECT count(*) FROM records")
            )
        return await self._read(
            lambda conn: ops.fetch_int(conn, "SELECT count(*) FROM records WHERE topic = $1", topic)
        )

    async def quarantine_counts(self) -> dict[str, int]:
        async def work(conn: Conn) -> dict[str, int]:
            rows = await conn.fetch("SELECT reason, count(*) FROM quarantine GROUP BY reason")
            return {r[0]: r[1] for r in rows}

        return await self._read(work)

    async def list_quarantine(self, limit: int = 100) -> list[QuarantineEntry]:
        sql = f"SELECT {c.QUARANTINE_COLUMNS} FROM quarantine ORDER BY id DESC LIMIT $1"  # noqa: S608
        lim = c.positive_limit(limit)

        async def work(conn: Conn) -> list[QuarantineEntry]:
            return [ops.quarantine(r) for r in await conn.fetch(sql, lim)]

        return await self._read(work)

    # --- retention -----------------------------------------------------------------------
    async def purge_expired(self, now: datetime, actor: str) -> list[UUID]:
        cutoff = c.aware(now, "now")

        async def work(conn: Conn) -> list[UUID]:
            rows = await conn.fetch(
                "DELETE FROM records WHERE expires_at <= $1"
                " RETURNING message_id, topic, expires_at, sender",
                cutoff,
            )
            erased = sorted((UUID(bytes=r[0].bytes), r[1], r[2]) for r in rows)
            if rows:
                await conn.executemany(
                    ops.BURY, [(r[3], r[0], cutoff, c.TOMBSTONE_EXPIRED) for r in rows]
                )
            await ops.append_audit(conn, [c.expiry_erasure(now, actor, *e) for e in erased])
            if erased:  # every connector that was handed them is told to drop them
                await conn.execute(
                    ops.INSERT_EVENTS,
                    ["retract"] * len(erased),
                    [m for m, _, _ in erased],
                    [t for _, t, _ in erased],
                    [None] * len(erased),
                )
            return [mid for mid, _, _ in erased]

        return await self._write(work)

    async def purge_quarantine(self, before: datetime, now: datetime, actor: str) -> int:
        cutoff = c.aware(before, "before")

        async def work(conn: Conn) -> int:
            rows = await conn.fetch(
                "DELETE FROM quarantine WHERE received_at < $1 RETURNING reason", cutoff
            )
            if rows:
                by_reason = Counter(r[0] for r in rows)
                await ops.append_audit(conn, [c.quarantine_erasure(now, actor, before, by_reason)])
            return len(rows)

        return await self._write(work)

    async def outbox_envelope_hashes(self, hashes: Sequence[bytes]) -> set[bytes]:
        wanted = list(set(hashes))

        async def work(conn: Conn) -> set[bytes]:
            rows = await conn.fetch(
                "SELECT envelope_hash FROM outbox WHERE envelope_hash = ANY($1::bytea[])", wanted
            )
            return {bytes(r[0]) for r in rows}

        return await self._read(work) if wanted else set()

    async def tombstones(self, limit: int = 100) -> list[Tombstone]:
        lim = c.positive_limit(limit)

        async def work(conn: Conn) -> list[Tombstone]:
            rows = await conn.fetch(
                "SELECT sender, message_id, at, reason FROM tombstones ORDER BY at DESC LIMIT $1",
                lim,
            )
            return [Tombstone(r[0], UUID(bytes=r[1].bytes), r[2], r[3]) for r in rows]

        return await self._read(work)

    # --- outbox ---------------------------------------------------------------------------
    async def enqueue(self, items: Sequence[OutboxItem]) -> list[int]:
        rows = [
            (
                i.topic,
                i.key,
                i.message_type,
                c.dump_json(i.payload, "outbox.payload"),
                c.dump_json(i.handling, "outbox.handling"),
                c.dump_names(i.recipients, "outbox.recipients"),
                c.aware(i.created_at, "outbox.created_at"),
                i.message_id,
                i.payload_avro,
            )
            for i in items
        ]

        async def work(conn: Conn) -> list[int]:
            sql = (
                "INSERT INTO outbox (topic, record_key, message_type, payload, handling,"
                " recipients, created_at, message_id, payload_avro, status) VALUES ($1, $2, $3,"
                " $4::jsonb, $5::jsonb, $6::jsonb, $7, $8, $9, 'pending') RETURNING id"
            )
            return [int(await conn.fetchval(sql, *row)) for row in rows]

        return await self._write(work)

    async def pending(self, limit: int, *, signed_after: int | None = None) -> list[OutboxItem]:
        lim = c.positive_limit(limit)
        select = f"SELECT {c.OUTBOX_COLUMNS} FROM outbox WHERE status <> 'sent'"  # noqa: S608
        signed_sql = f"{select} AND status = 'signed' AND id > $1 ORDER BY id LIMIT $2"
        pending_sql = f"{select} AND status = 'pending' ORDER BY id LIMIT $1"
        after = -1 if signed_after is None else signed_after

        async def work(conn: Conn) -> list[OutboxItem]:
            out = [ops.outbox(r) for r in await conn.fetch(signed_sql, after, lim)]
            if len(out) < lim:
                out.extend(ops.outbox(r) for r in await conn.fetch(pending_sql, lim - len(out)))
            return out

        return await self._read(work)

    async def chain_head(self, topic: str) -> ChainHead | None:
        async def work(conn: Conn) -> ChainHead | None:
            row = await conn.fetchrow(
                "SELECT sequence, envelope_hash FROM chain_heads WHERE topic = $1", topic
            )
            return None if row is None else ChainHead(topic, row[0], row[1])

        return await self._read(work)

    async def mark_signed(self, items: Sequence[OutboxItem], heads: Sequence[ChainHead]) -> None:
        await self._write(lambda conn: ops.mark_signed(conn, items, heads))

    async def reseal(self, items: Sequence[OutboxItem]) -> None:
        async def work(conn: Conn) -> None:
            for item in items:
                mid, seq, value, digest = c.signed_fields(item)
                status = await conn.execute(
                    "UPDATE outbox SET value = $1, envelope_hash = $2 WHERE id = $3"
                    " AND status = 'signed' AND message_id = $4 AND sequence = $5",
                    value,
                    digest,
                    item.id,
                    mid,
                    seq,
                )
                if status != "UPDATE 1":
                    raise StoreError(
                        f"outbox[{item.id}]: not a signed item with message id {mid}"
                        f" at sequence {seq}"
                    )
                await conn.execute(
                    "UPDATE chain_heads SET envelope_hash = $1 WHERE topic = $2 AND sequence = $3",
                    digest,
                    item.topic,
                    seq,
                )

        await self._write(work)

    async def envelope_hash_at(self, topic: str, sequence: int) -> bytes | None:
        async def work(conn: Conn) -> bytes | None:
            value = await conn.fetchval(
                "SELECT envelope_hash FROM outbox WHERE topic = $1 AND sequence = $2",
                topic,
                sequence,
            )
            return None if value is None else bytes(value)

        return await self._read(work)

    async def mark_sent(self, ids: Sequence[int], at: datetime) -> None:
        when = c.aware(at, "at")
        await self._write(lambda conn: ops.mark_sent(conn, ids, when))

    async def record_publish_error(self, ids: Sequence[int], error: str) -> None:
        async def work(conn: Conn) -> None:
            await conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = $1"
                " WHERE id = ANY($2::bigint[])",
                error,
                list(ids),
            )

        await self._write(work)

    async def outbox_depth(self) -> int:
        return await self._read(
            lambda conn: ops.fetch_int(conn, "SELECT count(*) FROM outbox WHERE status <> 'sent'")
        )

    async def outbox_item(self, outbox_id: int) -> OutboxItem | None:
        sql = f"SELECT {c.OUTBOX_COLUMNS} FROM outbox WHERE id = $1"  # noqa: S608

        async def work(conn: Conn) -> OutboxItem | None:
            row = await conn.fetchrow(sql, outbox_id)
            return None if row is None else ops.outbox(row)

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
