"""The PostgreSQL store's SQL text, row codecs and the steps of a write transaction.
Only :mod:`nodes.store.postgres` calls these."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn
from uuid import UUID

import asyncpg

from nodes.store import audit_chain
from nodes.store import codecs as c
from nodes.store.base import (
    AuditEntry,
    AuditEvent,
    ChainHead,
    ConnectorEvent,
    EventKind,
    OutboxItem,
    OutboxStatus,
    QuarantineEntry,
    RecordState,
    RetractionOrder,
    StoredRecord,
    StoreError,
)

Conn = Any  # asyncpg.Connection (asyncpg ships no type hints)
LOCK_AUDIT = 0x4E43_5002  # advisory lock key serialising appends to the audit log
LOCK_EVENTS = 0x4E43_5003  # ... and appends to the connector queue (seq order = commit order)

INSERT_RECORDS = (
    f"INSERT INTO records ({c.RECORD_COLUMNS})"  # noqa: S608
    " SELECT u.a, u.b, u.c, u.d, u.e, u.f, u.g, u.h, u.i, u.j, u.k, u.l, u.m,"
    " u.n::jsonb, u.o::jsonb, u.p, u.q, u.r FROM unnest($1::uuid[], $2::text[], $3::int[],"
    " $4::bigint[], $5::text[], $6::text[], $7::text[], $8::bigint[], $9::timestamptz[],"
    " $10::timestamptz[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[],"
    " $16::bytea[], $17::timestamptz[], $18::text[])"
    " AS u(a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, q, r)"
    " ON CONFLICT (sender, message_id) DO NOTHING RETURNING sender, message_id"
)
INSERT_QUARANTINE = (
    f"INSERT INTO quarantine ({c.QUARANTINE_COLUMNS})"  # noqa: S608
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
)
BURY = (
    "INSERT INTO tombstones (sender, message_id, at, reason) VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (sender, message_id) DO NOTHING"
)
UPSERT_OFFSET = (
    "INSERT INTO consumer_offsets (group_id, topic, kafka_partition, next_offset)"
    " VALUES ($1, $2, $3, $4) ON CONFLICT (group_id, topic, kafka_partition)"
    " DO UPDATE SET next_offset = excluded.next_offset"
)
INSERT_EVENTS = (
    "INSERT INTO connector_events (kind, message_id, topic, sender)"
    " SELECT u.k, u.m, u.t, u.s FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[])"
    " WITH ORDINALITY AS u(k, m, t, s, n) ORDER BY u.n"
)
SELECT_EVENTS = (
    "SELECT e.seq, e.kind, e.message_id, e.topic, "  # noqa: S608
    + ", ".join(f"r.{col.strip()}" for col in c.RECORD_COLUMNS.split(","))
    + " FROM connector_events e LEFT JOIN records r"
    " ON e.kind = 'deliver' AND r.message_id = e.message_id"
    " AND (e.sender IS NULL OR r.sender = e.sender)"
    " WHERE e.seq > $1 ORDER BY e.seq LIMIT $2"
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
) -> tuple[list[tuple[UUID, str]], list[AuditEvent]]:
    """Apply ``orders``; the (message id, topic) of each record changed, and the erasures."""
    changed: list[tuple[UUID, str]] = []
    erasures: list[AuditEvent] = []
    if orders:
        await conn.executemany(
            BURY,
            [
                (
                    o.by_sender,
                    o.retracted_message_id,
                    c.aware(o.at, "retraction.at"),
                    c.tombstone_reason(o),
                )
                for o in orders
            ],
        )
    for order in orders:
        if order.purge:
            topic = await conn.fetchval(
                "DELETE FROM records WHERE message_id = $1 AND sender = $2 RETURNING topic",
                order.retracted_message_id,
                order.by_sender,
            )
            if topic is not None:
                erasures.append(c.erasure_for(order))
        else:
            topic = await conn.fetchval(
                "UPDATE records SET state = $1, withdrawn_at = $2, retraction_id = $3"
                " WHERE message_id = $4 AND sender = $5 AND state = $6 RETURNING topic",
                RecordState.WITHDRAWN.value,
                c.aware(order.at, "retraction.at"),
                order.retraction_message_id,
                order.retracted_message_id,
                order.by_sender,
                RecordState.ACTIVE.value,
            )
        if topic is not None:
            changed.append((order.retracted_message_id, topic))
    return changed, erasures


async def append_events(
    conn: Conn,
    delivered: Sequence[tuple[UUID, str, str]],
    retracted: Sequence[tuple[UUID, str]],
) -> None:
    """Queue DELIVER events for ``delivered`` (message id, topic, sender) then RETRACT events
    for ``retracted``, under a lock held to commit, so seqs become visible in order."""
    events: list[tuple[str, UUID, str, str | None]] = [
        ("deliver", m, t, s) for m, t, s in delivered
    ]
    events += [("retract", m, t, None) for m, t in retracted]
    if not events:
        return
    await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_EVENTS)
    kinds, mids, topics, senders = (list(col) for col in zip(*events, strict=True))
    await conn.execute(INSERT_EVENTS, kinds, mids, topics, senders)


async def connector_events(conn: Conn, after_seq: int, limit: int) -> list[ConnectorEvent]:
    rows = await conn.fetch(SELECT_EVENTS, after_seq, limit)
    return [
        ConnectorEvent(
            r[0],
            EventKind(r[1]),
            UUID(bytes=r[2].bytes),
            r[3],
            None if r[4] is None else record(r[4:]),
        )
        for r in rows
    ]


MARK_SIGNED = (
    "UPDATE outbox AS o SET status = 'signed', message_id = u.mid, sequence = u.seq,"
    " value = u.val, envelope_hash = u.digest"
    " FROM unnest($1::bigint[], $2::uuid[], $3::bigint[], $4::bytea[], $5::bytea[])"
    " AS u(id, mid, seq, val, digest)"
    " WHERE o.id = u.id AND o.status = 'pending' AND (o.message_id IS NULL OR o.message_id = u.mid)"
)


async def mark_signed(conn: Conn, items: Sequence[OutboxItem], heads: Sequence[ChainHead]) -> None:
    """The checks and updates of :meth:`Store.mark_signed`, inside the caller's transaction:
    one unnest-based UPDATE; the per-item checks run only to name a culprit."""
    columns: tuple[list[Any], ...] = ([], [], [], [], [])
    for item in items:
        for column, value in zip(columns, (item.id, *c.signed_fields(item)), strict=True):
            column.append(value)
    try:
        async with conn.transaction():  # a savepoint: a refused update leaves nothing behind
            status = await conn.execute(MARK_SIGNED, *columns)
            if int(status.rsplit(" ", 1)[1]) != len(items):
                raise _IncompleteError
    except (_IncompleteError, asyncpg.UniqueViolationError):
        await _name_unsignable(conn, items)
    for head in heads:
        current = await conn.fetchval(
            "SELECT sequence FROM chain_heads WHERE topic = $1 FOR UPDATE", head.topic
        )
        c.check_head_advances(head, current)
        await conn.execute(
            "INSERT INTO chain_heads (topic, sequence, envelope_hash) VALUES ($1, $2, $3)"
            " ON CONFLICT (topic) DO UPDATE SET sequence = excluded.sequence,"
            " envelope_hash = excluded.envelope_hash",
            head.topic,
            head.sequence,
            head.envelope_hash,
        )


class _IncompleteError(Exception):
    """The set-based update changed fewer rows than items (rolled back to its savepoint)."""


async def _name_unsignable(conn: Conn, items: Sequence[OutboxItem]) -> NoReturn:
    """Replay a refused :func:`mark_signed` item by item to raise the error naming the first
    offending item (the caller's transaction is rolled back afterwards)."""
    for item in items:
        mid, seq, value, digest = c.signed_fields(item)
        row = await conn.fetchrow(
            "SELECT status, message_id FROM outbox WHERE id = $1 FOR UPDATE", item.id
        )
        if row is None or row[0] != OutboxStatus.PENDING.value:
            raise StoreError(f"outbox[{item.id}]: not a pending outbox item")
        c.check_enqueued_id(item, None if row[1] is None else UUID(bytes=row[1].bytes))
        try:
            await conn.execute(
                "UPDATE outbox SET status = 'signed', message_id = $1, sequence = $2,"
                " value = $3, envelope_hash = $4 WHERE id = $5",
                mid,
                seq,
                value,
                digest,
                item.id,
            )
        except asyncpg.UniqueViolationError as exc:
            raise StoreError(
                f"outbox[{item.id}].sequence: {seq} is already assigned on topic {item.topic}"
            ) from exc
    raise StoreError("outbox: mark_signed could not mark every item signed")


async def mark_sent(conn: Conn, ids: Sequence[int], when: Any) -> None:
    """SIGNED -> SENT for ``ids`` in one UPDATE; only when fewer rows changed than distinct ids
    are the states read, to allow SENT ones (idempotent) and name a PENDING or unknown one."""
    wanted = list(ids)
    status = await conn.execute(
        "UPDATE outbox SET status = 'sent', sent_at = $1"
        " WHERE id = ANY($2::bigint[]) AND status = 'signed'",
        when,
        wanted,
    )
    if int(status.rsplit(" ", 1)[1]) == len(set(wanted)):
        return
    rows = await conn.fetch("SELECT id, status FROM outbox WHERE id = ANY($1::bigint[])", wanted)
    c.check_unsendable(wanted, {r[0]: r[1] for r in rows})


async def open_cursor(conn: Conn, connector: str, at: Any) -> int:
    # the head, once no batch is appending events (a seq taken but not yet committed)
    await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_EVENTS)
    await conn.execute(
        "INSERT INTO connector_cursors (connector, last_seq, updated_at)"
        " SELECT $1, coalesce(max(seq), 0), $2 FROM connector_events"
        " ON CONFLICT (connector) DO NOTHING",
        connector,
        at,
    )
    return await fetch_int(
        conn, "SELECT last_seq FROM connector_cursors WHERE connector = $1", connector
    )


async def prune_connector_events(conn: Conn, up_to_seq: int) -> int:
    status = await conn.execute("DELETE FROM connector_events WHERE seq <= $1", up_to_seq)
    return int(status.split()[-1])


async def advance_cursor(
    conn: Conn, connector: str, last_seq: int, at: Any, audit: Sequence[AuditEvent]
) -> None:
    current = await conn.fetchval(
        "SELECT last_seq FROM connector_cursors WHERE connector = $1 FOR UPDATE", connector
    )
    c.check_cursor_move(connector, current, last_seq)
    await conn.execute(
        "UPDATE connector_cursors SET last_seq = $1, updated_at = $2 WHERE connector = $3",
        last_seq,
        at,
        connector,
    )
    await append_audit(conn, audit)


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
        q.size,
        q.sha256,
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
        size=row[9],
        sha256=None if row[10] is None else bytes(row[10]),
    )


def outbox(row: Any) -> OutboxItem:
    mid = row[9]
    return OutboxItem(
        id=row[0],
        topic=row[1],
        key=row[2],
        message_type=row[3],
        payload={} if row[4] is None else c.load_json(row[4]),
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
        payload_avro=None if row[15] is None else bytes(row[15]),
    )
