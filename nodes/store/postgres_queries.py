"""The PostgreSQL store's reads of records and quarantine, and its retention work (purges,
tombstones): whole method groups of :class:`nodes.store.postgres.PostgresStore`, which
inherits them (:class:`PostgresQueries`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from nodes.store import codecs as c
from nodes.store import postgres_ops as ops
from nodes.store.base import (
    QuarantineEntry,
    StoredRecord,
    Tombstone,
)
from nodes.store.postgres_access import Conn, PostgresAccess


class PostgresQueries(PostgresAccess):
    """Record and quarantine queries; retention."""

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
