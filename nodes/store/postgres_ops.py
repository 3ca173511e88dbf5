"""The PostgreSQL store's SQL text, row codecs and the steps of a write transaction.
Only :mod:`nodes.store.postgres` calls these."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from nodes.store import audit_chain
from nodes.store import codecs as c
from nodes.store.base import (
    AuditEntry,
    AuditEvent,
    OutboxItem,
    OutboxStatus,
    QuarantineEntry,
    RecordState,
    RetractionOrder,
    StoredRecord,
)

Conn = Any  # asyncpg.Connection (asyncpg ships no type hints)
LOCK_AUDIT = 0x4E43_5002  # advisory lock key serialising appends to the audit log

INSERT_RECORDS = (
    f"INSERT INTO records ({c.RECORD_COLUMNS})"  # noqa: S608
    " SELECT u.a, u.b, u.c, u.d, u.e, u.f, u.g, u.h, u.i, u.j, u.k, u.l, u.m,"
    " u.n::jsonb, u.o::jsonb, u.p, u.q, u.r FROM unnest($1::uuid[], $2::text[], $3::int[],"
    " $4::bigint[], $5::text[], $6::text[], $7::text[], $8::bigint[], $9::timestamptz[],"
    " $10::timestamptz[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[],"
    " $16::bytea[], $17::timestamptz[], $18::text[])"
    " AS u(a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, q, r)"
    " ON CONFLICT (message_id) DO NOTHING RETURNING message_id"
)
INSERT_QUARANTINE = (
    f"INSERT INTO quarantine ({c.QUARANTINE_COLUMNS})"  # noqa: S608
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
)
UPSERT_OFFSET = (
    "INSERT INTO consumer_offsets (group_id, topic, kafka_partition, next_offset)"
    " VALUES ($1, $2, $3, $4) ON CONFLICT (group_id, topic, kafka_partition)"
    " DO UPDATE SET next_offset = excluded.next_offset"
)
INSERT_AUDIT = (
    f"INSERT INTO audit_log ({c.AUDIT_COLUMNS})"  # noqa: S608
    " VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8::json, $9, $10)"
)


# --- helpers -------------------------------------------------------------------------------------
async def fetch_int(conn: Conn, sql: str, *args: Any) -> int:
    return int(await conn.fetchval(sql, *args))


async def schema_version(conn: Conn) -> int:
    return await fetch_int(conn, "SELECT coalesce(max(version), 0) FROM schema_migrations")


async def apply_retractions(
    conn: Conn, orders: Sequence[RetractionOrder]
) -> tuple[int, list[AuditEvent]]:
    applied, erasures = 0, []
    for order in orders:
        if order.purge:
            done = await conn.fetchval(
                "DELETE FROM records WHERE message_id = $1 AND sender = $2 RETURNING 1",
                order.retracted_message_id,
                order.by_sender,
            )
            if done:
                erasures.append(c.erasure_for(order))
        else:
            done = await conn.fetchval(
                "UPDATE records SET state = $1, withdrawn_at = $2, retraction_id = $3"
                " WHERE message_id = $4 AND sender = $5 AND state = $6 RETURNING 1",
                RecordState.WITHDRAWN.value,
                c.aware(order.at, "retraction.at"),
                order.retraction_message_id,
                order.retracted_message_id,
                order.by_sender,
                RecordState.ACTIVE.value,
            )
        applied += 1 if done else 0
    return applied, erasures


async def append_audit(conn: Conn, events: Sequence[AuditEvent]) -> None:
    if not events:
        return
    await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_AUDIT)
    last = await conn.fetchrow("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
    seq, previous = (0, audit_chain.GENESIS) if last is None else (last[0], bytes(last[1]))
    rows = [
        (
            e.seq,
            c.aware(e.event.at, "audit.at"),
            str(e.event.action),
            e.event.actor,
            e.event.justification,
            c.dump_names(e.event.recipients, "audit.recipients"),
            e.event.subject,
            e.details_json,
            e.previous_hash,
            e.hash,
        )
        for e in audit_chain.extend(seq, previous, events)
    ]
    await conn.executemany(INSERT_AUDIT, rows)


async def audit_page(conn: Conn, since_seq: int, limit: int) -> list[AuditEntry]:
    rows = await conn.fetch(
        f"SELECT {c.AUDIT_COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",  # noqa: S608
        since_seq,
        limit,
    )
    return [
        AuditEntry(
            r[0],
            AuditEvent(
                at=r[1],
                action=c.audit_action(r[2]),
                actor=r[3],
                justification=r[4],
                recipients=c.load_names(r[5]),
                subject=r[6],
                details=c.audit_details(r[7]),
            ),
            bytes(r[8]),
            bytes(r[9]),
        )
        for r in rows
    ]


def record_row(r: StoredRecord) -> tuple[Any, ...]:
    return (
        r.message_id,
        r.topic,
        r.partition,
        r.offset,
        r.sender,
        r.message_type,
        r.key,
        r.sequence,
        c.aware(r.created_at, "record.created_at"),
        c.aware(r.received_at, "record.received_at"),
        r.category,
        r.tlp,
        r.handling_code,
        c.dump_names(r.recipients, "record.recipients"),
        c.dump_json(r.payload, "record.payload"),
        r.envelope_hash,
        None if r.expires_at is None else c.aware(r.expires_at, "record.expires_at"),
        r.state.value,
    )


def record(row: Any) -> StoredRecord:
    return StoredRecord(
        message_id=UUID(bytes=row[0].bytes),
        topic=row[1],
        partition=row[2],
        offset=row[3],
        sender=row[4],
        message_type=row[5],
        key=row[6],
        sequence=row[7],
        created_at=row[8],
        received_at=row[9],
        category=row[10],
        tlp=row[11],
        handling_code=row[12],
        recipients=c.load_names(row[13]),
        payload=c.load_json(row[14]),
        envelope_hash=bytes(row[15]),
        expires_at=row[16],
        state=RecordState(row[17]),
    )


def quarantine_row(q: QuarantineEntry) -> tuple[Any, ...]:
    return (
        q.topic,
        q.partition,
        q.offset,
        q.reason,
        q.detail,
        q.raw,
        c.aware(q.received_at, "quarantine.received_at"),
        q.message_id,
        q.sender,
    )


def quarantine(row: Any) -> QuarantineEntry:
    mid = row[7]
    return QuarantineEntry(
        topic=row[0],
        partition=row[1],
        offset=row[2],
        reason=row[3],
        detail=row[4],
        raw=bytes(row[5]),
        received_at=row[6],
        message_id=None if mid is None else UUID(bytes=mid.bytes),
        sender=row[8],
    )


def outbox(row: Any) -> OutboxItem:
    mid = row[9]
    return OutboxItem(
        id=row[0],
        topic=row[1],
        key=row[2],
        message_type=row[3],
        payload=c.load_json(row[4]),
        handling=c.load_json(row[5]),
        recipients=c.load_names(row[6]),
        created_at=row[7],
        status=OutboxStatus(row[8]),
        message_id=None if mid is None else UUID(bytes=mid.bytes),
        sequence=row[10],
        value=None if row[11] is None else bytes(row[11]),
        envelope_hash=None if row[12] is None else bytes(row[12]),
        attempts=row[13],
        last_error=row[14],
    )
