"""The PostgreSQL store's outbox: enqueue, the publisher's reads and marks (signed, resealed,
sent, failed), the per-topic chain heads. A method group of
:class:`nodes.store.postgres.PostgresStore`, which inherits it (:class:`PostgresOutbox`);
the SQLite store's counterpart is in :mod:`nodes.store.sqlite` and
:mod:`nodes.store.sqlite_outbox`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from nodes.store import codecs as c
from nodes.store import postgres_ops as ops
from nodes.store.base import (
    ChainHead,
    OutboxItem,
    StoreError,
)
from nodes.store.postgres_access import Conn, PostgresAccess


class PostgresOutbox(PostgresAccess):
    """The outbox and the chain heads."""

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
