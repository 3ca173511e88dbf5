"""The joint list is materialized from the records the consumer stored (SQLite and
PostgreSQL): each delta once, in partition order, whatever the number of sync rounds, and a
non-owner's delta that got into the store anyway is ignored."""

from __future__ import annotations

import os
from typing import Any

import pytest

from exchange.uuid7 import uuid7
from nodes.blacklist import state
from nodes.blacklist.db import BlacklistDB
from nodes.blacklist.state import sync, versions
from nodes.store.base import StoredRecord
from tests.helpers.federation import NOW

TOPIC = "ncp.blacklist.v1"


def record(offset: int, sender: str, payload: dict[str, Any]) -> StoredRecord:
    return StoredRecord(
        message_id=uuid7(NOW),
        topic=TOPIC,
        partition=0,
        offset=offset,
        sender=sender,
        message_type="BlacklistDelta",
        key=payload["list_id"],
        sequence=offset + 1,
        created_at=NOW,
        received_at=NOW,
        category=None,
        tlp="GREEN",
        handling_code="H0",
        recipients=(),
        payload=payload,
        envelope_hash=os.urandom(32),
        expires_at=None,
    )


def payload(list_id: str, base: int, version: int, added: list[str]) -> dict[str, Any]:
    at = NOW.isoformat()
    return {
        "list_id": list_id,
        "base_version": base,
        "version": version,
        "reason": "t",
        "kind": "DELTA",
        "removed": [],
        "added": [
            {"kind": "DOMAIN", "value": v, "category": "OTHER", "added_at": at} for v in added
        ],
    }


async def store_records(db: BlacklistDB, records: list[StoredRecord], end: int) -> None:
    await db.store.commit_batch(
        "g", records=records, quarantined=[], retractions=[], audit=[], offsets={(TOPIC, 0): end}
    )


async def test_stored_deltas_are_applied_once_across_rounds(
    db: BlacklistDB, monkeypatch: Any
) -> None:
    monkeypatch.setattr(state, "PAGE", 2)  # several rounds for four records
    await store_records(
        db,
        [
            record(0, "FR", payload("fr.csam", 0, 1, ["a.example"])),
            record(1, "NL", payload("fr.csam", 1, 2, ["forged.example"])),  # not NL's list
            record(2, "FR", payload("fr.csam", 1, 2, ["b.example"])),
            record(3, "NL", payload("nl.csam", 0, 1, ["a.example"])),
        ],
        4,
    )
    report = await sync(db, TOPIC, "DE", NOW)
    assert report.counts["apply"] == 3
    assert report.counts["not_owned"] == 1
    assert await versions(db) == {"fr.csam": 2, "nl.csam": 1}
    again = await sync(db, TOPIC, "DE", NOW)
    assert not again.counts
    await store_records(db, [record(4, "FR", payload("fr.csam", 2, 3, ["c.example"]))], 5)
    assert (await sync(db, TOPIC, "DE", NOW)).counts["apply"] == 1
    async with db.transaction() as tx:
        rows = await tx.fetch("SELECT value FROM bl_entries WHERE list_id = 'fr.csam'")
    assert sorted(r[0] for r in rows) == ["a.example", "b.example", "c.example"]


async def test_a_sync_that_fails_midway_keeps_nothing_and_the_next_one_applies_all(
    db: BlacklistDB, monkeypatch: Any
) -> None:
    await store_records(
        db,
        [
            record(0, "FR", payload("fr.csam", 0, 1, ["a.example"])),
            record(1, "FR", payload("fr.csam", 1, 2, ["b.example"])),
        ],
        2,
    )
    real_apply = state.apply
    calls = 0

    async def crash_on_second(*args: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("power cut")
        await real_apply(*args)

    monkeypatch.setattr(state, "apply", crash_on_second)
    with pytest.raises(RuntimeError, match="power cut"):
        await sync(db, TOPIC, "DE", NOW)
    assert await versions(db) == {}
    async with db.transaction() as tx:
        assert await tx.fetch("SELECT * FROM bl_cursor") == []
    monkeypatch.setattr(state, "apply", real_apply)
    assert (await sync(db, TOPIC, "DE", NOW)).counts["apply"] == 2
    assert await versions(db) == {"fr.csam": 2}
