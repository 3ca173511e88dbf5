"""Keyset pages of stored records (:meth:`nodes.store.base.Store.page_records`): the one
query both dialects run, built here, and its arguments checked.

Order: message id ascending (a UUIDv7, so the senders' creation time, oldest first), then
sender: wire v2 lets two senders use one id, so the id alone is no total order. Both
dialects compare ids as 16 big-endian bytes (SQLite BLOB, PostgreSQL uuid: memcmp, as
Python's UUID does) and senders bytewise (SQLite BINARY; PostgreSQL ``COLLATE "C"``, which
the cluster's locale could otherwise change).

The cursor is the (sender, message id) of the last record of the previous page. A page
walks the existing ``records_message_id`` index from the cursor on (``message_id >= id``),
so each page costs its own rows whatever the depth, with no new index (an index costs every
insert on the consumer's hot path) and no OFFSET (which re-reads every page before it).
Topic, state and ``since`` (on ``received_at``) filter the rows the walk meets; PostgreSQL
sorts the senders of one id (an incremental sort of a handful of rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from nodes.store import codecs as c
from nodes.store.base import MessageKey, StoreError

#: (sql, arguments) for one page, or None when no topic is asked for (an empty page).
Query = tuple[str, list[Any]] | None


def _topics(topics: Sequence[str]) -> list[str]:
    if isinstance(topics, str) or not all(isinstance(t, str) for t in topics):
        raise StoreError(f"topics: must be a sequence of topic names, got {topics!r}")
    return sorted(set(topics))


def _after(after: MessageKey | None) -> MessageKey | None:
    if after is None:
        return None
    if (
        not isinstance(after, tuple)
        or len(after) != 2
        or not isinstance(after[0], str)
        or not isinstance(after[1], UUID)
    ):
        raise StoreError(f"after: must be a (sender, message id) pair, got {after!r}")
    return after


class _Params:
    """Numbered placeholders (SQLite ``?n``, PostgreSQL ``$n``; one may be used twice) and
    the arguments they stand for."""

    def __init__(self, mark: str) -> None:
        self.mark = mark
        self.args: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.args.append(value)
        return f"{self.mark}{len(self.args)}"


def page_query(
    dialect: Literal["sqlite", "postgres"],
    topics: Sequence[str],
    *,
    since: datetime | None,
    after: MessageKey | None,
    include_withdrawn: bool,
    limit: int,
) -> Query:
    """The page after ``after`` for ``dialect`` ("sqlite" or "postgres"); StoreError naming
    the argument that is wrong."""
    names = _topics(topics)
    cursor = _after(after)
    size = c.positive_limit(limit)
    if since is not None:
        c.aware(since, "since")
    if not names:
        return None
    sqlite = dialect == "sqlite"
    param = _Params("?" if sqlite else "$")
    sender = "sender" if sqlite else 'sender COLLATE "C"'
    where = [f"topic IN ({', '.join(param(t) for t in names)})"]
    if not include_withdrawn:
        where.append("state = 'active'")
    if since is not None:
        where.append(f"received_at >= {param(c.to_micros(since, 'since') if sqlite else since)}")
    if cursor is not None:
        at = param(cursor[1].bytes if sqlite else cursor[1])
        where.append(f"message_id >= {at}")
        where.append(f"(message_id > {at} OR {sender} > {param(cursor[0])})")
    sql = (
        f"SELECT {c.RECORD_COLUMNS} FROM records WHERE {' AND '.join(where)}"  # noqa: S608
        f" ORDER BY message_id, {sender} LIMIT {param(size)}"
    )
    return sql, param.args
