"""Fixtures for the store tests: one ``store`` per backend (a real SQLite file, a real
PostgreSQL database), plus raw SQL access to the same database for tampering tests."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from exchange.uuid7 import uuid7
from nodes.store.base import (
    AuditAction,
    AuditEvent,
    OutboxItem,
    OutboxStatus,
    QuarantineEntry,
    RetractionOrder,
    Store,
    StoredRecord,
    open_store,
)
from tests.helpers.postgres import postgres_server, postgres_url, store_url

__all__ = ["postgres_server", "postgres_url", "store_url"]

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
TOPIC = "ncp.alerts.v1"


@dataclass(frozen=True)
class Backend:
    """Where a test's store lives, and raw SQL on it (``?`` placeholders on both)."""

    name: str
    url: str

    async def sql(self, statement: str, *args: Any) -> list[tuple[Any, ...]]:
        """Run one statement outside the store (committed at once); returns its rows."""
        if self.name == "sqlite":
            conn = sqlite3.connect(self.url.removeprefix("sqlite:///"))
            try:
                rows = conn.execute(statement, args).fetchall()
                conn.commit()
            finally:
                conn.close()
            return [tuple(r) for r in rows]
        parts = statement.split("?")
        numbered = parts[0] + "".join(f"${i}{p}" for i, p in enumerate(parts[1:], start=1))
        pg = await asyncpg.connect(self.url)
        try:
            return [tuple(r) for r in await pg.fetch(numbered, *args)]
        finally:
            await pg.close()


@pytest.fixture
def backend(store_url: str) -> Backend:
    """The backend under test: a SQLite file in tmp_path, or a fresh PostgreSQL database."""
    return Backend("sqlite" if store_url.startswith("sqlite:") else "postgres", store_url)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    """An open store on ``backend``, closed after the test."""
    opened = open_store(backend.url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def make_record(
    *,
    sender: str = "FR",
    topic: str = TOPIC,
    partition: int = 0,
    offset: int = 0,
    at: datetime = NOW,
    expires_at: datetime | None = None,
    message_id: UUID | None = None,
) -> StoredRecord:
    """A plausible stored alert."""
    return StoredRecord(
        message_id=message_id or uuid7(at),
        topic=topic,
        partition=partition,
        offset=offset,
        sender=sender,
        message_type="OffenceAlert",
        key=f"alert-{offset}",
        sequence=offset + 1,
        created_at=at,
        received_at=at + timedelta(seconds=1),
        category="identity_fraud",
        tlp="AMBER",
        handling_code="H1",
        recipients=("DE", "NL"),
        payload={"alert_id": f"alert-{offset}", "description": "phishing kit, \u00e9t\u00e9"},
        envelope_hash=bytes([offset % 256]) * 32,
        expires_at=expires_at,
    )


def make_quarantine(
    reason: str = "bad_signature", offset: int = 0, received_at: datetime = NOW
) -> QuarantineEntry:
    raw = b"\xc3\x01garbage"
    return QuarantineEntry(
        topic=TOPIC,
        partition=0,
        offset=offset,
        reason=reason,
        detail="signature does not verify",
        raw=raw,
        received_at=received_at,
        sender="DE",
        size=len(raw) + 5000,
        sha256=hashlib.sha256(raw).digest(),
    )


def make_event(n: int = 0, action: AuditAction = AuditAction.COLLECTION) -> AuditEvent:
    return AuditEvent(
        at=NOW + timedelta(seconds=n),
        action=action,
        actor="node:FR/consumer",
        justification="received from the federation",
        recipients=("FR",),
        subject=f"subject-{n}",
        details={"n": n, "topic": TOPIC},
    )


def retraction(record: StoredRecord, *, by: str | None = None, purge: bool) -> RetractionOrder:
    return RetractionOrder(
        retracted_message_id=record.message_id,
        by_sender=by or record.sender,
        purge=purge,
        retraction_message_id=uuid7(NOW),
        at=NOW + timedelta(minutes=5),
        actor="node:FR/consumer",
    )


def outbox_item(n: int = 0, topic: str = TOPIC) -> OutboxItem:
    return OutboxItem(
        id=0,
        topic=topic,
        key=f"alert-{n}",
        message_type="OffenceAlert",
        payload={"alert_id": f"alert-{n}", "indicators": [{"type": "url", "value": "x"}]},
        handling={"tlp": "AMBER", "code": "H1"},
        recipients=(),
        created_at=NOW + timedelta(seconds=n),
        status=OutboxStatus.PENDING,
    )


def signed(item: OutboxItem, item_id: int, sequence: int) -> OutboxItem:
    return replace(
        item,
        id=item_id,
        status=OutboxStatus.SIGNED,
        message_id=uuid7(NOW),
        sequence=sequence,
        value=b"signed-envelope-%d" % sequence,
        envelope_hash=bytes([sequence]) * 32,
    )


async def commit(
    store: Store,
    *,
    records: list[StoredRecord] | None = None,
    quarantined: list[QuarantineEntry] | None = None,
    retractions: list[RetractionOrder] | None = None,
    audit: list[AuditEvent] | None = None,
    offsets: dict[tuple[str, int], int] | None = None,
    group: str = "g1",
) -> Any:
    """commit_batch with empty defaults."""
    return await store.commit_batch(
        group,
        records=records or [],
        quarantined=quarantined or [],
        retractions=retractions or [],
        audit=audit or [],
        offsets=offsets or {},
    )
