"""What :mod:`nodes.stats.counting` counts, read from the node's store for one period.

A small repository over the store's own connection (SQLite or PostgreSQL), so the store
interface stays as it is. Windows are half-open UTC ``[start, end)``:

- sent: outbox items SENT (``sent_at`` in the window), by message type;
- received: records stored from OTHER senders (``received_at`` in the window), withdrawn
  ones included (they were received);
- quarantined: quarantine entries (``received_at`` in the window) by reason;
- query categories: the category of every pseudonym query a hit in the window answers,
  from the outbox and the records;
- indicators: every StatisticalIndicator record stored (active), and this node's own
  latest queued indicator per record key (its outbox), for revisions.

``received_at`` of ``records`` is not indexed: a period's count scans the records table,
once a period per check (see the README's cost note).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from exchange.topics import MessageType
from nodes.store import codecs as c
from nodes.store.base import Store, StoreError
from nodes.store.sqlite import SqliteStore

#: The message types counted.
COUNTED = (
    MessageType.OFFENCE_ALERT.value,
    MessageType.BLACKLIST_DELTA.value,
    MessageType.PSEUDONYM_QUERY.value,
    MessageType.PSEUDONYM_RESPONSE.value,
)
INDICATOR = MessageType.STATISTICAL_INDICATOR.value

Payload = dict[str, Any]


@dataclass(slots=True)
class PeriodRows:
    """What the node sent, received and quarantined in one window."""

    sent: dict[str, list[Payload]] = field(default_factory=lambda: defaultdict(list))
    received: dict[str, list[Payload]] = field(default_factory=lambda: defaultdict(list))
    quarantined: dict[str, int] = field(default_factory=dict)
    query_categories: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IndicatorRow:
    """A stored StatisticalIndicator record (payload as stored)."""

    sender: str
    message_id: UUID
    sequence: int
    created_at: datetime
    payload: Payload


_IN = ", ".join("?" for _ in COUNTED)
# Built from constants only (placeholders, never values).
_SQLITE_SENT = (
    "SELECT message_type, payload FROM outbox WHERE status = 'sent' AND sent_at >= ?"  # noqa: S608
    f" AND sent_at < ? AND message_type IN ({_IN})"
)
_SQLITE_RECEIVED = (
    "SELECT message_type, payload FROM records WHERE sender <> ? AND received_at >= ?"  # noqa: S608
    f" AND received_at < ? AND message_type IN ({_IN})"
)
_PG_SENT = (
    "SELECT message_type, payload::text FROM outbox WHERE status = 'sent' AND sent_at >= $1"
    " AND sent_at < $2 AND message_type = ANY($3::text[])"
)
_PG_RECEIVED = (
    "SELECT message_type, payload::text FROM records WHERE sender <> $1 AND received_at >= $2"
    " AND received_at < $3 AND message_type = ANY($4::text[])"
)


def _query_ids(rows: PeriodRows) -> list[str]:
    responses = [
        *rows.sent.get(MessageType.PSEUDONYM_RESPONSE.value, ()),
        *rows.received.get(MessageType.PSEUDONYM_RESPONSE.value, ()),
    ]
    return sorted({str(p.get("query_id")) for p in responses if p.get("hit") is True})


def _category_of(payload_text: str) -> str | None:
    category = c.load_json(payload_text).get("category")
    return category if isinstance(category, str) else None


async def period_rows(store: Store, node: str, start: datetime, end: datetime) -> PeriodRows:
    """The rows of ``[start, end)`` (see the module doc)."""
    rows = PeriodRows()
    if isinstance(store, SqliteStore):
        await store._call(lambda conn: _sqlite_rows(conn, rows, node, start, end))
    else:
        await _read_pg(store)(lambda conn: _pg_rows(conn, rows, node, start, end))
    return rows


def _read_pg(store: Store) -> Any:
    from nodes.store.postgres import PostgresStore

    if not isinstance(store, PostgresStore):
        raise StoreError(f"statistics: no queries for a {type(store).__name__}")
    return store._read


def _sqlite_rows(conn: Any, rows: PeriodRows, node: str, start: datetime, end: datetime) -> None:
    a, b = c.to_micros(start, "start"), c.to_micros(end, "end")
    for mt, text in conn.execute(_SQLITE_SENT, (a, b, *COUNTED)):
        rows.sent[mt].append(c.load_json(text))
    for mt, text in conn.execute(_SQLITE_RECEIVED, (node, a, b, *COUNTED)):
        rows.received[mt].append(c.load_json(text))
    rows.quarantined = dict(
        conn.execute(
            "SELECT reason, count(*) FROM quarantine WHERE received_at >= ? AND received_at < ?"
            " GROUP BY reason",
            (a, b),
        ).fetchall()
    )
    ids = _query_ids(rows)
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        marks = ", ".join("?" for _ in chunk)
        for table in ("outbox", "records"):
            sql = (
                f"SELECT record_key, payload FROM {table} WHERE message_type = ?"  # noqa: S608
                f" AND record_key IN ({marks})"
            )
            for key, text in conn.execute(sql, (MessageType.PSEUDONYM_QUERY.value, *chunk)):
                category = _category_of(text)
                if category is not None:
                    rows.query_categories.setdefault(key, category)


async def _pg_rows(conn: Any, rows: PeriodRows, node: str, start: datetime, end: datetime) -> None:
    for r in await conn.fetch(_PG_SENT, start, end, list(COUNTED)):
        rows.sent[r[0]].append(c.load_json(r[1]))
    for r in await conn.fetch(_PG_RECEIVED, node, start, end, list(COUNTED)):
        rows.received[r[0]].append(c.load_json(r[1]))
    found = await conn.fetch(
        "SELECT reason, count(*) FROM quarantine WHERE received_at >= $1 AND received_at < $2"
        " GROUP BY reason",
        start,
        end,
    )
    rows.quarantined = {r[0]: int(r[1]) for r in found}
    ids = _query_ids(rows)
    if ids:
        for table in ("outbox", "records"):
            sql = (
                f"SELECT record_key, payload::text FROM {table} WHERE message_type = $1"  # noqa: S608
                " AND record_key = ANY($2::text[])"
            )
            for r in await conn.fetch(sql, MessageType.PSEUDONYM_QUERY.value, ids):
                category = _category_of(r[1])
                if category is not None:
                    rows.query_categories.setdefault(r[0], category)


async def stored_indicators(store: Store) -> list[IndicatorRow]:
    """Every active StatisticalIndicator record in the store, oldest first."""
    sql_lite = (
        "SELECT sender, message_id, sequence, created_at, payload FROM records"
        " WHERE message_type = ? AND state = 'active' ORDER BY created_at, sender, sequence"
    )
    if isinstance(store, SqliteStore):
        found: Sequence[Sequence[Any]] = await store._call(
            lambda conn: conn.execute(sql_lite, (INDICATOR,)).fetchall()
        )
        return [
            IndicatorRow(r[0], UUID(bytes=r[1]), r[2], c.from_micros(r[3]), c.load_json(r[4]))
            for r in found
        ]

    async def work(conn: Any) -> list[IndicatorRow]:
        rows = await conn.fetch(
            "SELECT sender, message_id, sequence, created_at, payload::text FROM records"
            " WHERE message_type = $1 AND state = 'active' ORDER BY created_at, sender, sequence",
            INDICATOR,
        )
        return [IndicatorRow(r[0], r[1], r[2], r[3], c.load_json(r[4])) for r in rows]

    result: list[IndicatorRow] = await _read_pg(store)(work)
    return result


async def own_latest(store: Store, key: str) -> Payload | None:
    """The payload of this node's newest outbox indicator under record ``key``, or None."""
    if isinstance(store, SqliteStore):
        row = await store._call(
            lambda conn: conn.execute(
                "SELECT payload FROM outbox WHERE message_type = ? AND record_key = ?"
                " ORDER BY id DESC LIMIT 1",
                (INDICATOR, key),
            ).fetchone()
        )
        return None if row is None else c.load_json(row[0])

    async def work(conn: Any) -> Payload | None:
        text = await conn.fetchval(
            "SELECT payload::text FROM outbox WHERE message_type = $1 AND record_key = $2"
            " ORDER BY id DESC LIMIT 1",
            INDICATOR,
            key,
        )
        return None if text is None else c.load_json(text)

    result: Payload | None = await _read_pg(store)(work)
    return result
