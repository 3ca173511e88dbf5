"""The owner's side: snapshots cut into parts and reassembled by readers, repair requests
answered at most once per interval, gaps asked about again while open, versions never
reused."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from exchange.blacklist.deltas import parse_delta
from nodes.blacklist.db import BlacklistDB, micros, opened
from nodes.blacklist.publish import (
    next_version,
    publish_delta,
    publish_repairs,
    publish_snapshot,
    snapshots_due,
)
from nodes.blacklist.state import SyncReport, receive, state_rows, versions
from tests.blacklist.conftest import delta
from tests.helpers.federation import NOW


async def outbox(db: BlacklistDB) -> list[dict[str, object]]:
    async with db.transaction() as tx:
        rows = await tx.fetch("SELECT payload FROM outbox ORDER BY id")
        return [tx.payload(r[0]) for r in rows]


async def test_a_large_snapshot_goes_in_parts_and_a_new_node_rebuilds_the_list(
    db: BlacklistDB, tmp_path: Path
) -> None:
    names = [f"d{i}.example" for i in range(5)]
    async with db.transaction() as tx:
        await receive(
            tx, delta("FR", "fr.csam", 0, 1, [("DOMAIN", d) for d in names]), NOW, SyncReport()
        )
        await receive(
            tx, delta("FR", "fr.csam", 1, 2, removed=[("DOMAIN", "d0.example")]), NOW, SyncReport()
        )
    version = await publish_snapshot(
        db, node="FR", prefix="ncp", trust=None, list_id="fr.csam", now=NOW, part_entries=2
    )
    parts = await outbox(db)
    assert version == 2
    assert [(p["part"], p["parts"]) for p in parts] == [(1, 2), (2, 2)]
    async with opened(f"sqlite:///{tmp_path / 'new.db'}") as newcomer:
        for payload in reversed(parts):  # parts may come in any order
            async with newcomer.transaction() as tx:
                await receive(tx, parse_delta("FR", payload), NOW, SyncReport())
        assert await versions(newcomer) == {"fr.csam": 2}
        assert await state_rows(newcomer) == await state_rows(db)


async def test_repair_requests_get_at_most_one_snapshot_per_interval(db: BlacklistDB) -> None:
    async with db.transaction() as tx:
        await receive(
            tx, delta("FR", "fr.csam", 0, 1, [("DOMAIN", "a.example")]), NOW, SyncReport()
        )
        await tx.execute(
            "INSERT INTO bl_snapshot_due (list_id, asked_by, asked_at) VALUES (?, ?, ?)",
            "fr.csam",
            "NL",
            micros(NOW),
        )
    due = await snapshots_due(db, node="FR", interval_s=86400, now=NOW)
    assert due == ["fr.csam"]
    await publish_snapshot(db, node="FR", prefix="ncp", trust=None, list_id="fr.csam", now=NOW)
    async with db.transaction() as tx:  # a flood of requests right after
        await tx.execute(
            "INSERT INTO bl_snapshot_due (list_id, asked_by, asked_at) VALUES (?, ?, ?)",
            "fr.csam",
            "NL",
            micros(NOW),
        )
    assert await snapshots_due(db, node="FR", interval_s=86400, now=NOW) == []
    later = NOW + timedelta(seconds=61)
    assert await snapshots_due(db, node="FR", interval_s=86400, now=later) == ["fr.csam"]


async def test_an_open_gap_is_asked_about_again_after_the_retry_interval(db: BlacklistDB) -> None:
    async with db.transaction() as tx:
        await receive(
            tx, delta("FR", "fr.csam", 3, 4, [("DOMAIN", "a.example")]), NOW, SyncReport()
        )
    assert await publish_repairs(db, node="DE", prefix="ncp", trust=None, now=NOW) == 1
    assert await publish_repairs(db, node="DE", prefix="ncp", trust=None, now=NOW) == 0
    later = NOW + timedelta(seconds=301)
    assert await publish_repairs(db, node="DE", prefix="ncp", trust=None, now=later) == 1
    (first, _again) = await outbox(db)
    assert (first["kind"], first["list_id"], first["base_version"]) == (
        "REPAIR_REQUEST",
        "fr.csam",
        0,
    )


async def test_a_snapshot_never_lowers_the_next_version_to_publish(db: BlacklistDB) -> None:
    async with db.transaction() as tx:
        await receive(
            tx, delta("FR", "fr.csam", 0, 1, [("DOMAIN", "a.example")]), NOW, SyncReport()
        )
    added = [
        parse_delta(
            "FR",
            {
                "list_id": "fr.csam",
                "base_version": 0,
                "version": 1,
                "reason": "r",
                "added": [
                    {
                        "kind": "DOMAIN",
                        "value": "b.example",
                        "category": "OTHER",
                        "added_at": NOW.isoformat(),
                    }
                ],
                "removed": [],
            },
        ).added[0]
    ]
    assert (
        await publish_delta(
            db,
            node="FR",
            prefix="ncp",
            trust=None,
            list_id="fr.csam",
            added=added,
            removed=[],
            reason="r",
            now=NOW,
        )
        == 2
    )
    await publish_snapshot(db, node="FR", prefix="ncp", trust=None, list_id="fr.csam", now=NOW)
    assert await next_version(db, "fr.csam") == 2


async def test_an_owned_list_is_due_a_scheduled_snapshot_after_the_interval(
    db: BlacklistDB,
) -> None:
    async with db.transaction() as tx:
        await receive(
            tx, delta("FR", "fr.csam", 0, 1, [("DOMAIN", "a.example")]), NOW, SyncReport()
        )
        await receive(
            tx, delta("NL", "nl.csam", 0, 1, [("DOMAIN", "a.example")]), NOW, SyncReport()
        )
    day = 86400
    assert await snapshots_due(db, node="FR", interval_s=day, now=NOW) == []
    later = NOW + timedelta(seconds=day + 1)
    assert await snapshots_due(db, node="FR", interval_s=day, now=later) == ["fr.csam"]
    await publish_snapshot(db, node="FR", prefix="ncp", trust=None, list_id="fr.csam", now=later)
    assert await snapshots_due(db, node="FR", interval_s=day, now=later) == []
