"""The pseudonym tables on PostgreSQL (see nodes.pseudonyms.repo)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from exchange.pseudonyms.csvfile import IndexEntry
from exchange.pseudonyms.keys import PseudonymKey
from nodes.pseudonyms.repo import Incoming, IndexHit, Request, blinds_for, dump_facts, outbox_row
from nodes.store import postgres_ops as ops
from nodes.store.base import AuditEvent, OutboxItem, StoreError
from nodes.store.postgres import PostgresStore

Conn = Any

_UPSERT = (
    "INSERT INTO pseudonym_index (platform, handle, case_reference, contact_unit, first_seen,"
    " last_seen) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],"
    " $5::timestamptz[], $6::timestamptz[]) ON CONFLICT (platform, handle, case_reference)"
    " DO UPDATE SET contact_unit = excluded.contact_unit,"
    " first_seen = least(pseudonym_index.first_seen, excluded.first_seen),"
    " last_seen = greatest(pseudonym_index.last_seen, excluded.last_seen)"
    " RETURNING id, platform, handle"
)
_BLIND = (
    "INSERT INTO pseudonym_blinds (key_id, blind, index_id) SELECT * FROM"
    " unnest($1::text[], $2::bytea[], $3::bigint[]) ON CONFLICT DO NOTHING"
)
_HIT_COLUMNS = "i.id, i.platform, i.case_reference, i.contact_unit, i.first_seen, i.last_seen"
_REQ_COLUMNS = (
    "sender, message_id, query_id, kind, received_at, status, reason, facts, index_id,"
    " decided_at, actor, justification"
)
_INSERT_OUTBOX = (
    "INSERT INTO outbox (topic, record_key, message_type, payload, handling, recipients,"
    " created_at, message_id, payload_avro, status) VALUES ($1, $2, $3, $4::jsonb, $5::jsonb,"
    " $6::jsonb, $7, $8, $9, 'pending') RETURNING id"
)
_CHUNK = 20_000


def _hit(row: Any) -> IndexHit:
    return IndexHit(row[0], row[1], row[2], row[3], row[4], row[5])


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _request(r: Any) -> Request:
    return Request(
        sender=r[0],
        message_id=r[1],
        query_id=r[2],
        kind=r[3],
        received_at=r[4],
        status=r[5],
        reason=r[6],
        facts=_json(r[7]),
        index_id=r[8],
        decided_at=r[9],
        actor=r[10],
        justification=r[11],
    )


def _blind_arrays(rows: list[tuple[str, bytes, int]]) -> tuple[list[str], list[bytes], list[int]]:
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


class PostgresPseudonyms:
    def __init__(self, store: PostgresStore) -> None:
        self.store = store

    async def import_entries(
        self, entries: Sequence[IndexEntry], keys: Sequence[PseudonymKey]
    ) -> int:
        for start in range(0, len(entries), _CHUNK):
            chunk = entries[start : start + _CHUNK]

            async def work(conn: Conn, chunk: Sequence[IndexEntry] = chunk) -> None:
                made = await conn.fetch(
                    _UPSERT,
                    [e.platform for e in chunk],
                    [e.handle for e in chunk],
                    [e.case_reference for e in chunk],
                    [e.contact_unit for e in chunk],
                    [e.first_seen for e in chunk],
                    [e.last_seen for e in chunk],
                )
                rows = [(int(r[0]), r[1], r[2]) for r in made]
                await conn.execute(_BLIND, *_blind_arrays(blinds_for(rows, keys)))

            await self.store._write(work)
        return len(entries)

    async def ensure_blinds(self, keys: Sequence[PseudonymKey]) -> int:
        ids = [k.key_id for k in keys]
        made = 0

        async def drop(conn: Conn) -> None:
            await conn.execute(
                "DELETE FROM pseudonym_blinds WHERE NOT (key_id = ANY($1::text[]))", ids
            )

        await self.store._write(drop)
        for key in keys:

            async def missing(conn: Conn, key_id: str = key.key_id) -> list[Any]:
                rows: list[Any] = await conn.fetch(
                    # NOT IN, not NOT EXISTS: one pass over the key's blinds (hashed), not one a row
                    "SELECT id, platform, handle FROM pseudonym_index WHERE id NOT IN"
                    " (SELECT index_id FROM pseudonym_blinds WHERE key_id = $1)",
                    key_id,
                )
                return rows

            rows = [(int(r[0]), r[1], r[2]) for r in await self.store._read(missing)]
            for start in range(0, len(rows), _CHUNK):
                part = blinds_for(rows[start : start + _CHUNK], [key])

                async def put(conn: Conn, part: list[tuple[str, bytes, int]] = part) -> None:
                    await conn.execute(_BLIND, *_blind_arrays(part))

                await self.store._write(put)
            made += len(rows)
        return made

    async def count_entries(self) -> int:
        async def work(conn: Conn) -> int:
            return int(await conn.fetchval("SELECT count(*) FROM pseudonym_index"))

        return await self.store._read(work)

    async def lookup(self, key_id: str, blinded: bytes) -> IndexHit | None:
        async def work(conn: Conn) -> IndexHit | None:
            row = await conn.fetchrow(
                f"SELECT {_HIT_COLUMNS} FROM pseudonym_blinds b JOIN pseudonym_index i"  # noqa: S608
                " ON i.id = b.index_id WHERE b.key_id = $1 AND b.blind = $2"
                " ORDER BY i.last_seen DESC LIMIT 1",
                key_id,
                blinded,
            )
            return None if row is None else _hit(row)

        return await self.store._read(work)

    async def entry_for_case(self, case_reference: str) -> IndexHit | None:
        async def work(conn: Conn) -> IndexHit | None:
            row = await conn.fetchrow(
                f"SELECT {_HIT_COLUMNS} FROM pseudonym_index i WHERE case_reference = $1"  # noqa: S608
                " ORDER BY last_seen DESC LIMIT 1",
                case_reference,
            )
            return None if row is None else _hit(row)

        return await self.store._read(work)

    async def hit_case(self, sender: str, query_id: str) -> str | None:
        async def work(conn: Conn) -> str | None:
            value = await conn.fetchval(
                "SELECT i.case_reference FROM pseudonym_requests q JOIN pseudonym_index i"
                " ON i.id = q.index_id WHERE q.sender = $1 AND q.query_id = $2"
                " AND q.status = 'hit' LIMIT 1",
                sender,
                query_id,
            )
            return None if value is None else str(value)

        return await self.store._read(work)

    async def new_queries(self, topic: str, me: str, limit: int) -> list[Incoming]:
        async def work(conn: Conn) -> list[Incoming]:
            rows = await conn.fetch(
                "SELECT r.sender, r.message_id, r.received_at, r.payload FROM records r"
                " WHERE r.topic = $1 AND r.message_type = 'PseudonymQuery' AND r.sender <> $2"
                " AND NOT EXISTS (SELECT 1 FROM pseudonym_requests q"
                " WHERE q.sender = r.sender AND q.message_id = r.message_id)"
                " ORDER BY r.received_at, r.message_id LIMIT $3",
                topic,
                me,
                limit,
            )
            return [Incoming(r[0], r[1], r[2], _json(r[3])) for r in rows]

        return await self.store._read(work)

    async def recent_count(self, sender: str, since: datetime) -> int:
        async def work(conn: Conn) -> int:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FROM pseudonym_requests"
                    " WHERE sender = $1 AND received_at >= $2",
                    sender,
                    since,
                )
            )

        return await self.store._read(work)

    async def settle(
        self,
        request: Request,
        items: Sequence[OutboxItem],
        audit: Sequence[AuditEvent],
        *,
        decide_pending: bool = False,
    ) -> list[int]:
        r = request

        async def work(conn: Conn) -> list[int]:
            if decide_pending:
                status = await conn.execute(
                    "UPDATE pseudonym_requests SET status = $1, reason = $2, decided_at = $3,"
                    " actor = $4, justification = $5 WHERE sender = $6 AND message_id = $7"
                    " AND status = 'pending'",
                    r.status,
                    r.reason,
                    r.decided_at,
                    r.actor,
                    r.justification,
                    r.sender,
                    r.message_id,
                )
                if status != "UPDATE 1":
                    raise StoreError(f"request {r.query_id} from {r.sender} is not pending")
            else:
                await conn.execute(
                    f"INSERT INTO pseudonym_requests ({_REQ_COLUMNS}) VALUES"  # noqa: S608
                    " ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10, $11, $12)",
                    r.sender,
                    r.message_id,
                    r.query_id,
                    r.kind,
                    r.received_at,
                    r.status,
                    r.reason,
                    dump_facts(r.facts),
                    r.index_id,
                    r.decided_at,
                    r.actor,
                    r.justification,
                )
            ids = [int(await conn.fetchval(_INSERT_OUTBOX, *outbox_row(i))) for i in items]
            await ops.append_audit(conn, audit)
            return ids

        return await self.store._write(work)

    async def send(self, items: Sequence[OutboxItem], audit: Sequence[AuditEvent]) -> list[int]:
        async def work(conn: Conn) -> list[int]:
            ids = [int(await conn.fetchval(_INSERT_OUTBOX, *outbox_row(i))) for i in items]
            await ops.append_audit(conn, audit)
            return ids

        return await self.store._write(work)

    async def requests(self, status: str | None = None, limit: int = 100) -> list[Request]:
        async def work(conn: Conn) -> list[Request]:
            if status:
                rows = await conn.fetch(
                    f"SELECT {_REQ_COLUMNS} FROM pseudonym_requests WHERE status = $1"  # noqa: S608
                    " ORDER BY received_at LIMIT $2",
                    status,
                    limit,
                )
            else:
                rows = await conn.fetch(
                    f"SELECT {_REQ_COLUMNS} FROM pseudonym_requests"  # noqa: S608
                    " ORDER BY received_at LIMIT $1",
                    limit,
                )
            return [_request(r) for r in rows]

        return await self.store._read(work)

    async def pending_before(self, before: datetime) -> int:
        async def work(conn: Conn) -> int:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FROM pseudonym_requests WHERE status = 'pending'"
                    " AND received_at < $1",
                    before,
                )
            )

        return await self.store._read(work)

    async def responses(
        self, topic: str, query_id: str
    ) -> list[tuple[str, datetime, Mapping[str, Any]]]:
        async def work(conn: Conn) -> list[tuple[str, datetime, Mapping[str, Any]]]:
            rows = await conn.fetch(
                "SELECT sender, received_at, payload FROM records WHERE topic = $1"
                " AND record_key = $2 AND message_type = 'PseudonymResponse'"
                " ORDER BY received_at, message_id",
                topic,
                query_id,
            )
            return [(r[0], r[1], _json(r[2])) for r in rows]

        return await self.store._read(work)
