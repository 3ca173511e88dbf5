"""The TAXII connector's own index of STIX objects: one SQLite file in the config's folder.

A connector never sees the node's store: the objects here are those the node handed over
(``deliver``), as :mod:`connectors.stix` made them. Each row is one object version in one
collection, with the markings that decide who may read it (TLP rank, handling-code rank,
offence category; shared objects such as identities and marking definitions are readable by
every reader). ``seq`` orders the rows; ``added_us`` (date added, microseconds since the
epoch) strictly increases with ``seq``, so ``added_after`` and ``next`` pages never skip or
repeat an object. Adding a message twice changes nothing (unique collection, id, version);
a retraction deletes the message's own objects.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from connectors.tokens import HANDLING_ORDER, TLP_ORDER, Grant
from exchange.models.common import HandlingCode, Tlp

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
  seq        INTEGER PRIMARY KEY,
  collection TEXT NOT NULL,
  stix_id    TEXT NOT NULL,
  version    TEXT NOT NULL,
  type       TEXT NOT NULL,
  message_id TEXT,
  added_us   INTEGER NOT NULL,
  tlp_rank   INTEGER NOT NULL,
  code_rank  INTEGER NOT NULL,
  category   TEXT,
  body       TEXT NOT NULL,
  UNIQUE (collection, stix_id, version)
);
CREATE INDEX IF NOT EXISTS objects_message ON objects (message_id);
CREATE INDEX IF NOT EXISTS objects_stix_id ON objects (collection, stix_id);
"""


@dataclass(frozen=True, slots=True)
class Row:
    seq: int
    stix_id: str
    version: str
    type: str
    added_us: int
    body: str


@dataclass(frozen=True, slots=True)
class NewObject:
    stix_id: str
    version: str
    type: str
    body: str
    shared: bool  # identities, marking definitions: not the message's own, never retracted


def timestamp(added_us: int) -> str:
    """A date-added value as TAXII writes it (RFC 3339, microseconds, Z)."""
    return datetime.fromtimestamp(added_us / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(value: str) -> int:
    """``added_after`` (RFC 3339) in microseconds since the epoch; ValueError otherwise."""
    at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if at.tzinfo is None:
        raise ValueError("a timestamp needs its time zone (Z)")
    return int(at.timestamp() * 1_000_000)


class Index:
    """The SQLite index (thread-safe: calls are serialised; run them in a worker thread)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Created 0600 before SQLite opens it: its WAL and SHM files take the same mode.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        path.chmod(0o600)
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        row = self._db.execute("SELECT COALESCE(MAX(added_us), 0) FROM objects").fetchone()
        self._last_added = int(row[0])

    @property
    def _db(self) -> sqlite3.Connection:
        """The connection, opened again if :meth:`close` came before a last delivery (the
        node closes inbound sides before its delivery loops finish their page)."""
        if self._conn is None:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(SCHEMA)
            self._conn = db
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def add(
        self,
        collection: str,
        message_id: str,
        objects: Sequence[NewObject],
        *,
        tlp: str,
        code: str,
        category: str | None,
        now: datetime,
    ) -> int:
        """Index one message's objects; how many were new."""
        tlp_rank = TLP_ORDER.index(Tlp(tlp))
        code_rank = HANDLING_ORDER.index(HandlingCode(code))
        now_us = int(now.timestamp() * 1_000_000)
        added = 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for obj in objects:
                    candidate = max(now_us, self._last_added + 1)
                    cur = self._db.execute(
                        "INSERT OR IGNORE INTO objects (collection, stix_id, version, type,"
                        " message_id, added_us, tlp_rank, code_rank, category, body)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            collection,
                            obj.stix_id,
                            obj.version,
                            obj.type,
                            None if obj.shared else message_id,
                            candidate,
                            0 if obj.shared else tlp_rank,
                            0 if obj.shared else code_rank,
                            None if obj.shared else category,
                            obj.body,
                        ),
                    )
                    if cur.rowcount:
                        added += 1
                        self._last_added = candidate
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return added

    def remove(self, message_id: str) -> int:
        """Delete a message's own objects; how many."""
        with self._lock:
            cur = self._db.execute("DELETE FROM objects WHERE message_id = ?", (message_id,))
            return cur.rowcount

    def page(
        self,
        collection: str,
        grant: Grant,
        *,
        after_seq: int,
        added_after_us: int | None,
        limit: int,
        ids: Sequence[str] = (),
        types: Sequence[str] = (),
    ) -> tuple[list[Row], bool]:
        """Up to ``limit`` rows the grant may read, after ``after_seq``; and whether more."""
        sql = [
            "SELECT seq, stix_id, version, type, added_us, body FROM objects",
            "WHERE collection = ? AND seq > ? AND tlp_rank <= ? AND code_rank <= ?",
        ]
        args: list[object] = [
            collection,
            after_seq,
            TLP_ORDER.index(grant.max_tlp),
            HANDLING_ORDER.index(grant.max_handling_code),
        ]
        if "*" not in grant.categories:
            marks = ",".join("?" * len(grant.categories))
            sql.append(f"AND (category IS NULL OR category IN ({marks}))")
            args.extend(sorted(grant.categories))
        if added_after_us is not None:
            sql.append("AND added_us > ?")
            args.append(added_after_us)
        for column, values in (("stix_id", ids), ("type", types)):
            if values:
                sql.append(f"AND {column} IN ({','.join('?' * len(values))})")
                args.extend(values)
        sql.append("ORDER BY seq LIMIT ?")
        args.append(limit + 1)
        with self._lock:
            rows = [Row(*r) for r in self._db.execute(" ".join(sql), args)]
        return rows[:limit], len(rows) > limit
