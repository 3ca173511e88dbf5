"""The SQLite store: one file, WAL journal, synchronous=NORMAL.

Every call runs on ONE dedicated thread that owns the connection, so the event loop
never blocks and sqlite3 releases the GIL while SQLite works (the node's signature
verification runs meanwhile). Write transactions start with ``BEGIN IMMEDIATE`` and
wait up to ``busy_timeout`` seconds for the file's write lock, so the consumer, the
publisher and the CLI can each hold their own instance on the same file. SQLite's wait
is not fair: on a loaded machine a busy daemon can keep retaking the lock, so the wait
is long (:data:`BUSY_TIMEOUT_S`); an operator's CLI command waiting is better than one
refused (seen: ``alert publish`` beside a daemon and a CPU hog, refused after 10 s).
Times are stored as integer microseconds since the epoch (UTC), ids as 16-byte blobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TypeVar
from uuid import UUID

from exchange.errors import ExchangeError, TransientError
from nodes.files import secure_sqlite
from nodes.store import audit_chain
from nodes.store import codecs as c
from nodes.store import sqlite_ops as ops
from nodes.store import sqlite_outbox as outbox_ops
from nodes.store.base import (
    AuditEntry,
    AuditEvent,
    BatchResult,
    ChainHead,
    ConnectorEvent,
    MessageKey,
    OutboxItem,
    QuarantineEntry,
    RetractionOrder,
    StoredRecord,
    StoreError,
    Tombstone,
    TopicPartition,
)
from nodes.store.sqlite_pages import SqlitePages

T = TypeVar("T")
Conn = sqlite3.Connection
#: How long a write waits for the file's write lock before it is refused as unavailable.
BUSY_TIMEOUT_S = 60.0

# Primary result codes that mean "not now" rather than "never": busy, locked, I/O error,
# disk full, cannot open, lock protocol.
_TRANSIENT_CODES = frozenset({5, 6, 10, 13, 14, 15})


def parse_sqlite_url(url: str) -> str:
    """``sqlite:///relative/path`` (relative to the working directory), ``sqlite:////abs``,
    or ``sqlite:///:memory:``."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise StoreError(f"store url: expected sqlite:///path/to/file.db, got {url!r}")
    return url[len(prefix) :]


class SqliteStore(SqlitePages):
    """:class:`nodes.store.base.Store` on a SQLite file."""

    def __init__(self, url: str, *, busy_timeout: float = BUSY_TIMEOUT_S) -> None:
        self.path = parse_sqlite_url(url)
        self.busy_timeout = busy_timeout
        self._executor: ThreadPoolExecutor | None = None
        self._conn: Conn | None = None

    # --- plumbing ----------------------------------------------------------
    def _translate(self, exc: sqlite3.Error) -> ExchangeError:
        code = getattr(exc, "sqlite_errorcode", None)
        text = f"sqlite store {self.path}: {exc}"
        if (code is not None and code & 0xFF in _TRANSIENT_CODES) or "locked" in str(exc):
            return TransientError(text)
        return StoreError(text)

    def _guarded(self, fn: Callable[[Conn], T]) -> T:
        conn = self._conn
        if conn is None:
            raise StoreError(f"sqlite store {self.path}: not open")
        try:
            return fn(conn)
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc

    async def _call(self, fn: Callable[[Conn], T]) -> T:
        if self._executor is None:
            raise StoreError(f"sqlite store {self.path}: not open (call open() first)")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._guarded, fn)

    async def _write(self, fn: Callable[[Conn], T]) -> T:
        """Run ``fn`` inside one write transaction (all or nothing)."""
        return await self._call(partial(ops.in_transaction, fn))

    # --- lifecycle ---------------------------------------------------------
    async def open(self) -> None:
        if self._executor is not None:
            return
        if self.path != ":memory:":
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"store url: cannot create folder for {self.path}: {exc}") from exc
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._connect)
        except BaseException:
            await self.close()
            raise

    def _connect(self) -> None:
        try:
            if self.path != ":memory:":
                secure_sqlite(self.path)  # decrypted payloads: 0600, and so WAL and SHM
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        except OSError as exc:
            raise StoreError(f"sqlite store {self.path}: {exc}") from exc
        self._conn = conn
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA cache_size=-32768")
            conn.execute("PRAGMA temp_store=MEMORY")
            ops.migrate(conn)
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        await asyncio.get_running_loop().run_in_executor(executor, self._disconnect)
        executor.shutdown(wait=True)

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):  # only a hint; closing anyway
                conn.execute("PRAGMA optimize")
            conn.close()

    async def schema_version(self) -> int:
        return await self._call(ops.schema_version)

    # --- consumer ----------------------------------------------------------
    async def load_offsets(self, group: str) -> dict[TopicPartition, int]:
        def work(conn: Conn) -> dict[TopicPartition, int]:
            rows = conn.execute(
                "SELECT topic, kafka_partition, next_offset FROM consumer_offsets"
                " WHERE group_id = ?",
                (group,),
            )
            return {(t, p): o for t, p, o in rows}

        return await self._call(work)

    async def commit_batch(
        self,
        group: str,
        *,
        records: Sequence[StoredRecord],
        quarantined: Sequence[QuarantineEntry],
        retractions: Sequence[RetractionOrder],
        audit: Sequence[AuditEvent],
        offsets: Mapping[TopicPartition, int],
    ) -> BatchResult:
        def work(conn: Conn) -> BatchResult:
            # Serialise before taking the write lock, so the lock is held briefly.
            rows = [ops.sq_record_row(r) for r in c.first_occurrences(records)]
            q_rows = [ops.sq_quarantine_row(q) for q in quarantined]
            o_rows = [(group, t, p, o) for (t, p), o in offsets.items()]
            conn.execute("BEGIN IMMEDIATE")
            try:
                last_rowid = ops.scalar(conn, "SELECT coalesce(max(rowid), 0) FROM records")
                existing = ops.insert_records(conn, rows)
                if q_rows:
                    conn.executemany(ops.SQ_INSERT_QUARANTINE, q_rows)
                changed, erasures = ops.apply_retractions(conn, retractions)
                if audit or erasures:
                    ops.append_audit(conn, [*audit, *erasures])
                if o_rows:
                    conn.executemany(ops.SQ_UPSERT_OFFSET, o_rows)
                ops.append_events(conn, last_rowid if len(existing) < len(rows) else None, changed)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.rollback()
                raise
            stored = len(rows) - len(existing)
            duplicates = c.batch_duplicates(
                records, stored, lambda k: (k[0], k[1].bytes) in existing
            )
            return BatchResult(stored, duplicates, len(changed))

        return await self._call(work)

    async def seen_message_ids(self, ids: Sequence[MessageKey]) -> set[MessageKey]:
        def work(conn: Conn) -> set[MessageKey]:
            keys = [(sender, mid.bytes) for sender, mid in ids]
            return {(s, UUID(bytes=b)) for s, b in ops.existing_ids(conn, keys)}

        return await self._call(work)

    # --- queries -------------------------------------------------------------
    async def list_records(
        self,
        *,
        topic: str | None = None,
        sender: str | None = None,
        include_withdrawn: bool = False,
        limit: int = 100,
    ) -> list[StoredRecord]:
        where, args = ["1"], []
        if topic is not None:
            where.append("topic = ?")
            args.append(topic)
        if sender is not None:
            where.append("sender = ?")
            args.append(sender)
        if not include_withdrawn:
            where.append("state = 'active'")
        sql = (
            f"SELECT {c.RECORD_COLUMNS} FROM records WHERE {' AND '.join(where)}"  # noqa: S608
            " ORDER BY message_id DESC LIMIT ?"
        )
        args_t = (*args, c.positive_limit(limit))
        return await self._call(lambda conn: [ops.sq_record(r) for r in conn.execute(sql, args_t)])

    async def get_record(self, message_id: UUID) -> StoredRecord | None:
        sql = f"SELECT {c.RECORD_COLUMNS} FROM records WHERE message_id = ?"  # noqa: S608

        def work(conn: Conn) -> StoredRecord | None:
            row = conn.execute(sql, (message_id.bytes,)).fetchone()
            return None if row is None else ops.sq_record(row)

        return await self._call(work)

    async def count_records(self, topic: str | None = None) -> int:
        if topic is None:
            return await self._call(lambda conn: ops.scalar(conn, "SELECT count(*) FROM records"))
        return await self._call(
            lambda conn: ops.scalar(conn, "SELECT count(*) FROM records WHERE topic = ?", topic)
        )

    async def quarantine_counts(self) -> dict[str, int]:
        sql = "SELECT reason, count(*) FROM quarantine GROUP BY reason"
        return await self._call(lambda conn: dict(conn.execute(sql).fetchall()))

    async def list_quarantine(self, limit: int = 100) -> list[QuarantineEntry]:
        sql = f"SELECT {c.QUARANTINE_COLUMNS} FROM quarantine ORDER BY id DESC LIMIT ?"  # noqa: S608
        lim = c.positive_limit(limit)
        return await self._call(
            lambda conn: [ops.sq_quarantine(r) for r in conn.execute(sql, (lim,))]
        )

    # --- retention -------------------------------------------------------------
    async def purge_expired(self, now: datetime, actor: str) -> list[UUID]:
        cutoff = c.to_micros(now, "now")

        def work(conn: Conn) -> list[UUID]:
            rows = conn.execute(
                "DELETE FROM records WHERE expires_at <= ?"
                " RETURNING message_id, topic, expires_at, sender",
                (cutoff,),
            ).fetchall()
            erased = sorted((UUID(bytes=m), t, c.from_micros(e)) for m, t, e, _ in rows)
            ops.bury(conn, [(s, m, cutoff, c.TOMBSTONE_EXPIRED) for m, _, _, s in rows])
            ops.append_audit(conn, [c.expiry_erasure(now, actor, *e) for e in erased])
            conn.executemany(ops.SQ_INSERT_RETRACT, [(m.bytes, t) for m, t, _ in erased])
            return [mid for mid, _, _ in erased]

        return await self._write(work)

    async def purge_quarantine(self, before: datetime, now: datetime, actor: str) -> int:
        cutoff = c.to_micros(before, "before")

        def work(conn: Conn) -> int:
            rows = conn.execute(
                "DELETE FROM quarantine WHERE received_at < ? RETURNING reason", (cutoff,)
            ).fetchall()
            if rows:
                by_reason = Counter(r[0] for r in rows)
                ops.append_audit(conn, [c.quarantine_erasure(now, actor, before, by_reason)])
            return len(rows)

        return await self._write(work)

    async def outbox_envelope_hashes(self, hashes: Sequence[bytes]) -> set[bytes]:
        wanted = list(set(hashes))

        def work(conn: Conn) -> set[bytes]:
            found: set[bytes] = set()
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT envelope_hash FROM outbox WHERE envelope_hash IN ({marks})"  # noqa: S608
                found.update(bytes(row[0]) for row in conn.execute(sql, chunk))
            return found

        return await self._call(work) if wanted else set()

    async def tombstones(self, limit: int = 100) -> list[Tombstone]:
        lim = c.positive_limit(limit)
        sql = "SELECT sender, message_id, at, reason FROM tombstones ORDER BY at DESC LIMIT ?"
        return await self._call(
            lambda conn: [
                Tombstone(s, UUID(bytes=m), c.from_micros(at), r)
                for s, m, at, r in conn.execute(sql, (lim,))
            ]
        )

    # --- outbox ------------------------------------------------------------------
    async def enqueue(self, items: Sequence[OutboxItem]) -> list[int]:
        def work(conn: Conn) -> list[int]:
            rows = [
                (
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
                for i in items
            ]
            return ops.in_transaction(
                lambda cn: [
                    int(cn.execute(ops.SQ_INSERT_OUTBOX, row).fetchone()[0]) for row in rows
                ],
                conn,
            )

        return await self._call(work)

    async def pending(self, limit: int, *, signed_after: int | None = None) -> list[OutboxItem]:
        lim = c.positive_limit(limit)
        select = f"SELECT {c.OUTBOX_COLUMNS} FROM outbox WHERE status <> 'sent'"  # noqa: S608
        signed_sql = f"{select} AND status = 'signed' AND id > ? ORDER BY id LIMIT ?"
        pending_sql = f"{select} AND status = 'pending' ORDER BY id LIMIT ?"
        after = -1 if signed_after is None else signed_after

        def work(conn: Conn) -> list[OutboxItem]:
            out = [outbox_ops.sq_outbox(r) for r in conn.execute(signed_sql, (after, lim))]
            if len(out) < lim:
                out.extend(
                    outbox_ops.sq_outbox(r) for r in conn.execute(pending_sql, (lim - len(out),))
                )
            return out

        return await self._call(work)

    async def chain_head(self, topic: str) -> ChainHead | None:
        def work(conn: Conn) -> ChainHead | None:
            row = conn.execute(
                "SELECT sequence, envelope_hash FROM chain_heads WHERE topic = ?", (topic,)
            ).fetchone()
            return None if row is None else ChainHead(topic, row[0], row[1])

        return await self._call(work)

    async def mark_signed(self, items: Sequence[OutboxItem], heads: Sequence[ChainHead]) -> None:
        await self._write(lambda conn: outbox_ops.mark_signed(conn, items, heads))

    async def reseal(self, items: Sequence[OutboxItem]) -> None:
        await self._write(lambda conn: outbox_ops.reseal(conn, items))

    async def envelope_hash_at(self, topic: str, sequence: int) -> bytes | None:
        def work(conn: Conn) -> bytes | None:
            row = conn.execute(
                "SELECT envelope_hash FROM outbox WHERE topic = ? AND sequence = ?",
                (topic, sequence),
            ).fetchone()
            return None if row is None or row[0] is None else bytes(row[0])

        return await self._call(work)

    async def mark_sent(self, ids: Sequence[int], at: datetime) -> None:
        when = c.to_micros(at, "at")
        await self._write(lambda conn: outbox_ops.mark_sent(conn, ids, when))

    async def record_publish_error(self, ids: Sequence[int], error: str) -> None:
        rows = [(error, i) for i in ids]
        await self._write(
            lambda conn: conn.executemany(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?", rows
            )
        )

    async def outbox_depth(self) -> int:
        return await self._call(
            lambda conn: ops.scalar(conn, "SELECT count(*) FROM outbox WHERE status <> 'sent'")
        )

    async def outbox_item(self, outbox_id: int) -> OutboxItem | None:
        sql = f"SELECT {c.OUTBOX_COLUMNS} FROM outbox WHERE id = ?"  # noqa: S608

        def work(conn: Conn) -> OutboxItem | None:
            row = conn.execute(sql, (outbox_id,)).fetchone()
            return None if row is None else outbox_ops.sq_outbox(row)

        return await self._call(work)

    # --- outbound connectors ---------------------------------------------------------
    async def open_cursor(self, connector: str, at: datetime) -> int:
        when = c.to_micros(at, "at")

        def work(conn: Conn) -> int:
            conn.execute(
                "INSERT INTO connector_cursors (connector, last_seq, updated_at)"
                " SELECT ?, coalesce(max(seq), 0), ? FROM connector_events"
                " WHERE true ON CONFLICT (connector) DO NOTHING",
                (connector, when),
            )
            return ops.scalar(
                conn, "SELECT last_seq FROM connector_cursors WHERE connector = ?", connector
            )

        return await self._write(work)

    async def connector_events(self, after_seq: int, limit: int) -> list[ConnectorEvent]:
        lim = c.positive_limit(limit)
        return await self._call(lambda conn: ops.connector_events(conn, after_seq, lim))

    async def advance_cursor(
        self, connector: str, last_seq: int, at: datetime, audit: Sequence[AuditEvent] = ()
    ) -> None:
        when = c.to_micros(at, "at")
        await self._write(lambda conn: ops.advance_cursor(conn, connector, last_seq, when, audit))

    async def prune_connector_events(self, up_to_seq: int) -> int:
        return await self._write(
            lambda conn: (
                conn.execute("DELETE FROM connector_events WHERE seq <= ?", (up_to_seq,)).rowcount
            )
        )

    # --- audit log -----------------------------------------------------------------
    async def append_audit(self, events: Sequence[AuditEvent]) -> None:
        await self._write(lambda conn: ops.append_audit(conn, events))

    async def audit_entries(self, since_seq: int = 0, limit: int = 1000) -> list[AuditEntry]:
        lim = c.positive_limit(limit)
        return await self._call(lambda conn: ops.audit_page(conn, since_seq, lim))

    async def verify_audit_chain(self) -> int | None:
        def work(conn: Conn) -> int | None:
            verifier = audit_chain.ChainVerifier()
            since = 0
            while page := ops.audit_page(conn, since, 5000):
                bad = verifier.feed(page)
                if bad is not None:
                    return bad
                since = page[-1].seq
            return None

        # A read transaction, so a long log is checked against one snapshot.
        return await self._call(partial(ops.in_transaction, work, begin="BEGIN"))

    # --- status ----------------------------------------------------------------------
    async def set_status(self, key: str, value: str) -> None:
        await self._write(
            lambda conn: conn.execute(
                "INSERT INTO node_status (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
        )

    async def get_status(self) -> dict[str, str]:
        return await self._call(
            lambda conn: dict(conn.execute("SELECT key, value FROM node_status").fetchall())
        )
