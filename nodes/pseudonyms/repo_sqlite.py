"""The pseudonym tables on SQLite (see nodes.pseudonyms.repo). Times: integer microseconds."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any
from uuid import UUID

from exchange.pseudonyms.csvfile import IndexEntry
from exchange.pseudonyms.keys import PseudonymKey
from nodes.pseudonyms.repo import Incoming, IndexHit, Request, blinds_for, dump_facts
from nodes.store import codecs as c
from nodes.store import sqlite_ops as ops
from nodes.store.base import AuditEvent, OutboxItem, StoreError
from nodes.store.sqlite import SqliteStore

Conn = sqlite3.Connection

_UPSERT = (
    "INSERT INTO pseudonym_index (platform, handle, case_reference, contact_unit, first_seen,"
    " last_seen) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (platform, handle, case_reference)"
    " DO UPDATE SET contact_unit = excluded.contact_unit,"
    " first_seen = min(first_seen, excluded.first_seen),"
    " last_seen = max(last_seen, excluded.last_seen)"
)
_BLIND = "INSERT OR IGNORE INTO pseudonym_blinds (key_id, blind, index_id) VALUES (?, ?, ?)"
_HIT_COLUMNS = "i.id, i.platform, i.case_reference, i.contact_unit, i.first_seen, i.last_seen"
_REQ_COLUMNS = (
    "sender, message_id, query_id, kind, received_at, status, reason, facts, index_id,"
    " decided_at, actor, justification"
)
_CHUNK = 20_000


def _hit(row: Sequence[Any]) -> IndexHit:
    return IndexHit(row[0], row[1], row[2], row[3], c.from_micros(row[4]), c.from_micros(row[5]))


def _request(r: Sequence[Any]) -> Request:
    return Request(
        sender=r[0],
        message_id=UUID(bytes=r[1]),
        query_id=r[2],
        kind=r[3],
        received_at=c.from_micros(r[4]),
        status=r[5],
        reason=r[6],
        facts=json.loads(r[7]),
        index_id=r[8],
        decided_at=None if r[9] is None else c.from_micros(r[9]),
        actor=r[10],
        justification=r[11],
    )


class SqlitePseudonyms:
    def __init__(self, store: SqliteStore) -> None:
        self.store = store

    async def import_entries(
        self, entries: Sequence[IndexEntry], keys: Sequence[PseudonymKey]
    ) -> int:
        """Upsert ``entries`` and blind the new ones under ``keys``, a chunk a transaction
        (an entry already indexed keeps its blinds: its platform and handle are its key)."""

        def chunk_work(chunk: Sequence[IndexEntry], cn: Conn) -> None:
            before = ops.scalar(cn, "SELECT coalesce(max(id), 0) FROM pseudonym_index")
            cn.executemany(
                _UPSERT,
                [
                    (
                        e.platform,
                        e.handle,
                        e.case_reference,
                        e.contact_unit,
                        c.to_micros(e.first_seen, "first_seen"),
                        c.to_micros(e.last_seen, "last_seen"),
                    )
                    for e in chunk
                ],
            )
            made = cn.execute(
                "SELECT id, platform, handle FROM pseudonym_index WHERE id > ?", (before,)
            ).fetchall()
            cn.executemany(_BLIND, blinds_for(made, keys))

        def work(conn: Conn) -> int:
            for start in range(0, len(entries), _CHUNK):
                ops.in_transaction(partial(chunk_work, entries[start : start + _CHUNK]), conn)
            return len(entries)

        return await self.store._call(work)

    async def ensure_blinds(self, keys: Sequence[PseudonymKey]) -> int:
        """Blinds for every entry under each of ``keys``; those of other keys deleted."""

        def work(conn: Conn) -> int:
            made = 0
            ids = [k.key_id for k in keys]
            marks = ",".join("?" * len(ids)) or "''"
            conn.execute(f"DELETE FROM pseudonym_blinds WHERE key_id NOT IN ({marks})", ids)  # noqa: S608
            for key in keys:
                rows = conn.execute(
                    # NOT IN, not NOT EXISTS: one pass over the key's blinds (hashed), not one a row
                    "SELECT id, platform, handle FROM pseudonym_index WHERE id NOT IN"
                    " (SELECT index_id FROM pseudonym_blinds WHERE key_id = ?)",
                    (key.key_id,),
                ).fetchall()
                for start in range(0, len(rows), _CHUNK):
                    made_blinds = blinds_for(rows[start : start + _CHUNK], [key])
                    ops.in_transaction(partial(_put_blinds, made_blinds), conn)
                made += len(rows)
            return made

        return await self.store._call(work)

    async def count_entries(self) -> int:
        return await self.store._call(
            lambda cn: ops.scalar(cn, "SELECT count(*) FROM pseudonym_index")
        )

    async def lookup(self, key_id: str, blinded: bytes) -> IndexHit | None:
        def work(conn: Conn) -> IndexHit | None:
            row = conn.execute(
                f"SELECT {_HIT_COLUMNS} FROM pseudonym_blinds b JOIN pseudonym_index i"  # noqa: S608
                " ON i.id = b.index_id WHERE b.key_id = ? AND b.blind = ?"
                " ORDER BY i.last_seen DESC LIMIT 1",
                (key_id, blinded),
            ).fetchone()
            return None if row is None else _hit(row)

        return await self.store._call(work)

    async def entry_for_case(self, case_reference: str) -> IndexHit | None:
        def work(conn: Conn) -> IndexHit | None:
            row = conn.execute(
                f"SELECT {_HIT_COLUMNS} FROM pseudonym_index i WHERE case_reference = ?"  # noqa: S608
                " ORDER BY last_seen DESC LIMIT 1",
                (case_reference,),
            ).fetchone()
            return None if row is None else _hit(row)

        return await self.store._call(work)

    async def hit_case(self, sender: str, query_id: str) -> str | None:
        def work(conn: Conn) -> str | None:
            row = conn.execute(
                "SELECT i.case_reference FROM pseudonym_requests q JOIN pseudonym_index i"
                " ON i.id = q.index_id WHERE q.sender = ? AND q.query_id = ?"
                " AND q.status = 'hit' LIMIT 1",
                (sender, query_id),
            ).fetchone()
            return None if row is None else str(row[0])

        return await self.store._call(work)

    async def new_queries(self, topic: str, me: str, limit: int) -> list[Incoming]:
        def work(conn: Conn) -> list[Incoming]:
            rows = conn.execute(
                "SELECT r.sender, r.message_id, r.received_at, r.payload FROM records r"
                " WHERE r.message_type = 'PseudonymQuery' AND r.topic = ? AND r.sender <> ?"
                " AND NOT EXISTS (SELECT 1 FROM pseudonym_requests q"
                " WHERE q.sender = r.sender AND q.message_id = r.message_id)"
                " ORDER BY r.rowid LIMIT ?",
                (topic, me, limit),
            ).fetchall()
            return [
                Incoming(s, UUID(bytes=m), c.from_micros(t), json.loads(p)) for s, m, t, p in rows
            ]

        return await self.store._call(work)

    async def recent_count(self, sender: str, since: datetime) -> int:
        return await self.store._call(
            lambda cn: ops.scalar(
                cn,
                "SELECT count(*) FROM pseudonym_requests WHERE sender = ? AND received_at >= ?",
                sender,
                c.to_micros(since, "since"),
            )
        )

    async def settle(
        self,
        request: Request,
        items: Sequence[OutboxItem],
        audit: Sequence[AuditEvent],
        *,
        decide_pending: bool = False,
    ) -> list[int]:
        """Insert the request (or, ``decide_pending``, move it from pending to its status),
        enqueue ``items`` and append ``audit``: one transaction. StoreError when a pending
        request to decide is not pending any more (decided by someone else meanwhile)."""
        r = request

        def work(conn: Conn) -> list[int]:
            if decide_pending:
                changed = conn.execute(
                    "UPDATE pseudonym_requests SET status = ?, reason = ?, decided_at = ?,"
                    " actor = ?, justification = ? WHERE sender = ? AND message_id = ?"
                    " AND status = 'pending'",
                    (
                        r.status,
                        r.reason,
                        c.opt_micros(r.decided_at, "decided_at"),
                        r.actor,
                        r.justification,
                        r.sender,
                        r.message_id.bytes,
                    ),
                ).rowcount
                if changed != 1:
                    raise StoreError(f"request {r.query_id} from {r.sender} is not pending")
            else:
                conn.execute(
                    f"INSERT INTO pseudonym_requests ({_REQ_COLUMNS}) VALUES"  # noqa: S608
                    " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        r.sender,
                        r.message_id.bytes,
                        r.query_id,
                        r.kind,
                        c.to_micros(r.received_at, "received_at"),
                        r.status,
                        r.reason,
                        dump_facts(r.facts),
                        r.index_id,
                        c.opt_micros(r.decided_at, "decided_at"),
                        r.actor,
                        r.justification,
                    ),
                )
            ids = _enqueue(conn, items)
            ops.append_audit(conn, audit)
            return ids

        return await self.store._write(work)

    async def send(self, items: Sequence[OutboxItem], audit: Sequence[AuditEvent]) -> list[int]:
        def work(conn: Conn) -> list[int]:
            ids = _enqueue(conn, items)
            ops.append_audit(conn, audit)
            return ids

        return await self.store._write(work)

    async def requests(self, status: str | None = None, limit: int = 100) -> list[Request]:
        def work(conn: Conn) -> list[Request]:
            where, args = ("WHERE status = ?", [status]) if status else ("", [])
            rows = conn.execute(
                f"SELECT {_REQ_COLUMNS} FROM pseudonym_requests {where}"  # noqa: S608
                " ORDER BY received_at LIMIT ?",
                (*args, c.positive_limit(limit)),
            ).fetchall()
            return [_request(r) for r in rows]

        return await self.store._call(work)

    async def pending_before(self, before: datetime) -> int:
        return await self.store._call(
            lambda cn: ops.scalar(
                cn,
                "SELECT count(*) FROM pseudonym_requests WHERE status = 'pending'"
                " AND received_at < ?",
                c.to_micros(before, "before"),
            )
        )

    async def responses(
        self, topic: str, query_id: str
    ) -> list[tuple[str, datetime, Mapping[str, Any]]]:
        def work(conn: Conn) -> list[tuple[str, datetime, Mapping[str, Any]]]:
            rows = conn.execute(
                "SELECT sender, received_at, payload FROM records WHERE topic = ?"
                " AND record_key = ? AND message_type = 'PseudonymResponse' ORDER BY rowid",
                (topic, query_id),
            ).fetchall()
            return [(s, c.from_micros(t), json.loads(p)) for s, t, p in rows]

        return await self.store._call(work)


def _put_blinds(rows: list[tuple[str, bytes, int]], conn: Conn) -> None:
    conn.executemany(_BLIND, rows)


def _enqueue(conn: Conn, items: Sequence[OutboxItem]) -> list[int]:
    ids = []
    for i in items:
        row = (
            i.topic,
            i.key,
            i.message_type,
            c.dump_json(i.payload, "outbox.payload"),
            c.dump_json(i.handling, "outbox.handling"),
            c.dump_names(i.recipients, "outbox.recipients"),
            c.to_micros(i.created_at, "outbox.created_at"),
            None if i.message_id is None else i.message_id.bytes,
            i.payload_avro,
        )
        ids.append(int(conn.execute(ops.SQ_INSERT_OUTBOX, row).fetchone()[0]))
    return ids
