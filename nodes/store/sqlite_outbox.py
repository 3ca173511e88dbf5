"""The SQLite outbox on the store's thread: the row codec and the set-based marks.
Only :mod:`nodes.store.sqlite` calls these (inside its transactions)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from functools import cache
from typing import Any, NoReturn
from uuid import UUID

from nodes.store.base import ChainHead, OutboxItem, OutboxStatus, StoreError
from nodes.store.codecs import (
    check_enqueued_id,
    check_head_advances,
    check_unsendable,
    from_micros,
    signed_fields,
)

Conn = sqlite3.Connection
_CHUNK = 500  # ids (rows) per statement

SQ_MARK_SIGNED = (
    "UPDATE outbox SET status = 'signed', message_id = ?, sequence = ?, value = ?,"
    " envelope_hash = ? WHERE id = ? AND status = 'pending'"
    " AND (message_id IS NULL OR message_id = ?)"
)
SQ_UPSERT_HEAD = (
    "INSERT INTO chain_heads (topic, sequence, envelope_hash) VALUES (?, ?, ?)"
    " ON CONFLICT (topic) DO UPDATE SET sequence = excluded.sequence,"
    " envelope_hash = excluded.envelope_hash"
)


def reseal(conn: Conn, items: Sequence[OutboxItem]) -> None:
    """The checks and updates of :meth:`Store.reseal`, inside the caller's transaction."""
    for item in items:
        mid, seq, value, digest = signed_fields(item)
        changed = conn.execute(
            "UPDATE outbox SET value = ?, envelope_hash = ? WHERE id = ? AND status = 'signed'"
            " AND message_id = ? AND sequence = ?",
            (value, digest, item.id, mid.bytes, seq),
        ).rowcount
        if changed != 1:
            raise StoreError(
                f"outbox[{item.id}]: not a signed item with message id {mid} at sequence {seq}"
            )
        conn.execute(
            "UPDATE chain_heads SET envelope_hash = ? WHERE topic = ? AND sequence = ?",
            (digest, item.topic, seq),
        )


_STATUS = {s.value: s for s in OutboxStatus}
_SMALL_JSON: dict[str, Any] = {}  # the few distinct handling / recipients texts of an outbox


def _small_json(text: str) -> Any:
    """``json.loads(text)``, memoised: a publisher reads thousands of rows a second that share
    a handful of handling and recipient lists. Callers must not mutate the result (an
    OutboxItem's ``handling`` is a read-only Mapping)."""
    try:
        return _SMALL_JSON[text]
    except KeyError:
        value = json.loads(text)
    if len(_SMALL_JSON) >= 1024:
        _SMALL_JSON.clear()
    _SMALL_JSON[text] = tuple(value) if isinstance(value, list) else value
    return _SMALL_JSON[text]


def sq_outbox(row: Sequence[Any]) -> OutboxItem:
    """An outbox row (``codecs.OUTBOX_COLUMNS``) as an item; the JSON payload only when the row
    has no Avro bytes (NULL is selected otherwise)."""
    return OutboxItem(
        id=row[0],
        topic=row[1],
        key=row[2],
        message_type=row[3],
        payload={} if row[4] is None else json.loads(row[4]),
        handling=_small_json(row[5]),
        recipients=_small_json(row[6]),
        created_at=from_micros(row[7]),
        status=_STATUS[row[8]],
        message_id=None if row[9] is None else UUID(bytes=row[9]),
        sequence=row[10],
        value=row[11],
        envelope_hash=row[12],
        attempts=row[13],
        last_error=row[14],
        payload_avro=row[15],
    )


# --- outbox marks: set-based UPDATEs; the per-item checks run only to name a culprit ------
# One statement per chunk of ids, not one per id: sqlite3 releases the GIL around every
# statement step, and re-taking it behind the publisher's sealing thread costs up to a
# switch interval each time (measured: executemany of 1,000 marks ~45-60 us an item).
@cache
def _mark_signed_sql(rows: int) -> str:
    values = ",".join(["(?, ?, ?, ?, ?)"] * rows)
    return (  # only placeholders are formatted in
        "UPDATE outbox AS o SET status = 'signed', message_id = u.column2,"  # noqa: S608
        " sequence = u.column3, value = u.column4, envelope_hash = u.column5"
        f" FROM (VALUES {values}) AS u WHERE o.id = u.column1 AND o.status = 'pending'"
        " AND (o.message_id IS NULL OR o.message_id = u.column2)"
    )


@cache
def _mark_sent_sql(ids: int) -> str:
    marks = ",".join("?" * ids)
    where = f"status = 'signed' AND id IN ({marks})"
    return f"UPDATE outbox SET status = 'sent', sent_at = ? WHERE {where}"  # noqa: S608


def mark_signed(conn: Conn, items: Sequence[OutboxItem], heads: Sequence[ChainHead]) -> None:
    """The checks and updates of :meth:`Store.mark_signed`, inside the caller's transaction."""
    params: list[Any] = []
    for item in items:
        mid, seq, value, digest = signed_fields(item)
        params += (item.id, mid.bytes, seq, value, digest)
    conn.execute("SAVEPOINT mark_signed")
    before = conn.total_changes
    try:
        for start in range(0, len(items), _CHUNK):
            part = params[start * 5 : (start + _CHUNK) * 5]
            conn.execute(_mark_signed_sql(len(part) // 5), part)
        complete = conn.total_changes - before == len(items)
    except sqlite3.IntegrityError:  # a (topic, sequence) taken: named below
        complete = False
    if not complete:
        conn.execute("ROLLBACK TO mark_signed")
        _name_unsignable(conn, items)
    conn.execute("RELEASE mark_signed")
    for head in heads:
        row = conn.execute(
            "SELECT sequence FROM chain_heads WHERE topic = ?", (head.topic,)
        ).fetchone()
        check_head_advances(head, None if row is None else row[0])
        conn.execute(SQ_UPSERT_HEAD, (head.topic, head.sequence, head.envelope_hash))


def _name_unsignable(conn: Conn, items: Sequence[OutboxItem]) -> NoReturn:
    """Replay a refused :func:`mark_signed` item by item to raise the error naming the first
    offending item (the caller's transaction is rolled back afterwards)."""
    for item in items:
        mid, seq, value, digest = signed_fields(item)
        row = conn.execute("SELECT status, message_id FROM outbox WHERE id = ?", (item.id,))
        found = row.fetchone()
        if found is None or found[0] != "pending":
            raise StoreError(f"outbox[{item.id}]: not a pending outbox item")
        check_enqueued_id(item, None if found[1] is None else UUID(bytes=found[1]))
        try:
            conn.execute(SQ_MARK_SIGNED, (mid.bytes, seq, value, digest, item.id, mid.bytes))
        except sqlite3.IntegrityError as exc:
            raise StoreError(
                f"outbox[{item.id}].sequence: {seq} is already assigned on topic"
                f" {item.topic} ({exc})"
            ) from exc
    raise StoreError("outbox: mark_signed could not mark every item signed")


def mark_sent(conn: Conn, ids: Sequence[int], when: int) -> None:
    """SIGNED -> SENT for ``ids``, a statement per chunk; only when fewer rows changed than
    distinct ids are the states read, to allow SENT ones (idempotent) and name a PENDING or
    unknown one."""
    before = conn.total_changes
    for start in range(0, len(ids), _CHUNK):
        part = ids[start : start + _CHUNK]
        conn.execute(_mark_sent_sql(len(part)), (when, *part))
    if conn.total_changes - before == len(set(ids)):
        return
    states: dict[int, str] = {}
    for start in range(0, len(ids), _CHUNK):
        part = list(ids[start : start + _CHUNK])
        marks = ",".join("?" * len(part))
        query = f"SELECT id, status FROM outbox WHERE id IN ({marks})"  # noqa: S608
        states.update(conn.execute(query, part).fetchall())
    check_unsendable(ids, states)
