"""``page_records`` for the PostgreSQL store (a base of
:class:`nodes.store.postgres.PostgresStore`); the query and its order are
:mod:`nodes.store.record_pages`'."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from nodes.store import postgres_ops as ops
from nodes.store.base import MessageKey, StoredRecord
from nodes.store.postgres_access import Conn, PostgresAccess
from nodes.store.record_pages import page_query


class PostgresPages(PostgresAccess):
    """Keyset pages of records, oldest message id first."""

    async def page_records(
        self,
        topics: Sequence[str],
        *,
        since: datetime | None = None,
        after: MessageKey | None = None,
        include_withdrawn: bool = False,
        limit: int = 100,
    ) -> list[StoredRecord]:
        query = page_query(
            "postgres",
            topics,
            since=since,
            after=after,
            include_withdrawn=include_withdrawn,
            limit=limit,
        )
        if query is None:
            return []
        sql, args = query

        async def work(conn: Conn) -> list[StoredRecord]:
            return [ops.record(r) for r in await conn.fetch(sql, *args)]

        return await self._read(work)
