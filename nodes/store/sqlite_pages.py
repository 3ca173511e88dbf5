"""``page_records`` for the SQLite store (a base of :class:`nodes.store.sqlite.SqliteStore`);
the query and its order are :mod:`nodes.store.record_pages`'."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from nodes.store import sqlite_ops as ops
from nodes.store.base import MessageKey, StoredRecord
from nodes.store.record_pages import page_query

T = TypeVar("T")


class SqlitePages:
    """Keyset pages of records, oldest message id first."""

    if TYPE_CHECKING:

        async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

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
            "sqlite",
            topics,
            since=since,
            after=after,
            include_withdrawn=include_withdrawn,
            limit=limit,
        )
        if query is None:
            return []
        sql, args = query
        return await self._call(lambda conn: [ops.sq_record(r) for r in conn.execute(sql, args)])
