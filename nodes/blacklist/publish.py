"""The owner's side: deltas, snapshots and repair requests put in the node's outbox.

A member publishes only its own lists (the list id's first label is its node id). The next
version is one past the highest of what it published (``bl_published``) and what it has
applied (its own deltas read back): versions stay contiguous. Each item is validated like
any message (``nodes.inbound.build_item``) and enqueued; the publisher signs and sends it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict, Unpack
from uuid import UUID

from exchange.blacklist.deltas import (
    Delta,
    DeltaKind,
    Entry,
    EntryKey,
    owner_of,
    to_payload,
)
from exchange.errors import InputError, Reason
from exchange.topics import MessageType
from exchange.trust import TrustList
from nodes.blacklist.db import BlacklistDB, micros
from nodes.blacklist.state import held_version, list_entries
from nodes.inbound import build_item
from nodes.store.base import OutboxItem

HANDLING = {"tlp": "GREEN", "code": "H0"}


def check_owner(node: str, list_id: str) -> None:
    if owner_of(list_id) != node:
        raise InputError(
            [
                (
                    "list",
                    f"{list_id} is owned by {owner_of(list_id)}; {node} may change only its"
                    f" own lists (ids starting '{node.lower()}.')",
                )
            ],
            reason=Reason.BAD_INPUT,
        )


def _item(
    payload: dict[str, Any], node: str, prefix: str, trust: TrustList | None, now: datetime
) -> OutboxItem:
    return build_item(
        MessageType.BLACKLIST_DELTA.value,
        payload,
        handling=HANDLING,
        node=node,  # type: ignore[arg-type]
        prefix=prefix,
        trust=trust,
        now=now,
        key=str(payload["list_id"]),
    )


async def next_version(db: BlacklistDB, list_id: str) -> int:
    async with db.transaction() as tx:
        applied = await held_version(tx, list_id)
        rows = await tx.fetch("SELECT version FROM bl_published WHERE list_id = ?", list_id)
    return max(applied, int(rows[0][0]) if rows else 0)


@dataclass(frozen=True, slots=True)
class Published:
    """A delta put in the outbox: its list, version, outbox id and message id."""

    list_id: str
    version: int
    outbox_id: int
    message_id: UUID


class DeltaChange(TypedDict):
    """What :func:`publish_delta` and :func:`enqueue_delta` take (as keyword arguments):
    ``node``'s change to its own list ``list_id`` at ``now``, with its reason."""

    node: str
    prefix: str
    trust: TrustList | None
    list_id: str
    added: Sequence[Entry]
    removed: Sequence[EntryKey]
    reason: str
    now: datetime


async def publish_delta(db: BlacklistDB, **change: Unpack[DeltaChange]) -> int:
    """Enqueue the next delta of ``list_id``; its version."""
    return (await enqueue_delta(db, **change)).version


async def enqueue_delta(db: BlacklistDB, **change: Unpack[DeltaChange]) -> Published:
    """:func:`publish_delta`, telling the outbox id and message id too."""
    node, list_id, now = change["node"], change["list_id"], change["now"]
    prefix, trust, reason = change["prefix"], change["trust"], change["reason"]
    added, removed = change["added"], change["removed"]
    check_owner(node, list_id)
    base = await next_version(db, list_id)
    delta = Delta(
        node, list_id, DeltaKind.DELTA, base, base + 1, tuple(added), tuple(removed), reason
    )
    item = _item(to_payload(delta), node, prefix, trust, now)
    (outbox_id,) = await _enqueue(db, [item], list_id, base + 1, None)
    return Published(list_id, base + 1, outbox_id, item.message_id or UUID(int=0))


async def publish_snapshot(
    db: BlacklistDB,
    *,
    node: str,
    prefix: str,
    trust: TrustList | None,
    list_id: str,
    now: datetime,
    part_entries: int = 50_000,
) -> int:
    """Enqueue a full snapshot of ``list_id`` at its current version, in parts of
    ``part_entries`` (read and enqueued a part at a time: a large list never sits whole in
    memory); its version."""
    check_owner(node, list_id)
    async with db.transaction() as tx:
        version = await held_version(tx, list_id)
        rows = await tx.fetch("SELECT COUNT(*) FROM bl_entries WHERE list_id = ?", list_id)
    if version == 0:
        raise InputError([("list", f"{list_id} has no applied version to snapshot yet")])
    total = int(rows[0][0])
    parts = max(1, -(-total // part_entries))
    after: EntryKey | None = None
    for number in range(1, parts + 1):
        async with db.transaction() as tx:
            entries = await list_entries(tx, list_id, after, part_entries)
        if entries:
            after = entries[-1].key
        snap = Delta(
            node, list_id, DeltaKind.SNAPSHOT, 0, version, tuple(entries), (), "snapshot",
            number, parts,
        )  # fmt: skip
        await db.store.enqueue([_item(to_payload(snap), node, prefix, trust, now)])
    await _published(db, list_id, version, micros(now))
    return version


async def _published(db: BlacklistDB, list_id: str, version: int, snapshot_at: int | None) -> None:
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO bl_published (list_id, version, snapshot_at) VALUES (?, ?, ?)"
            " ON CONFLICT (list_id) DO UPDATE SET version = CASE WHEN excluded.version >"
            " bl_published.version THEN excluded.version ELSE bl_published.version END,"
            " snapshot_at = COALESCE(excluded.snapshot_at, bl_published.snapshot_at)",
            list_id,
            version,
            snapshot_at,
        )
        if snapshot_at is not None:
            await tx.execute("DELETE FROM bl_snapshot_due WHERE list_id = ?", list_id)


async def _enqueue(
    db: BlacklistDB, items: list[OutboxItem], list_id: str, version: int, snapshot_at: int | None
) -> list[int]:
    ids = await db.store.enqueue(items)
    await _published(db, list_id, version, snapshot_at)
    return ids


async def publish_repairs(
    db: BlacklistDB,
    *,
    node: str,
    prefix: str,
    trust: TrustList | None,
    now: datetime,
    retry_s: float = 300.0,
) -> int:
    """Enqueue a REPAIR_REQUEST for each gap not yet asked about, or asked about more than
    ``retry_s`` ago and still open; how many."""
    async with db.transaction() as tx:
        rows = await tx.fetch(
            "SELECT list_id, held_version FROM bl_repairs WHERE sent_at IS NULL OR sent_at < ?",
            micros(now) - int(retry_s * 1_000_000),
        )
    items = [
        _item(
            {
                "list_id": str(lst),
                "kind": DeltaKind.REPAIR_REQUEST.value,
                "base_version": int(held),
                "version": int(held) + 1,
                "added": [],
                "removed": [],
                "reason": f"gap after version {int(held)}",
            },
            node,
            prefix,
            trust,
            now,
        )
        for lst, held in rows
    ]
    if items:
        await db.store.enqueue(items)
        async with db.transaction() as tx:
            await tx.executemany(
                "UPDATE bl_repairs SET sent_at = ? WHERE list_id = ?",
                [(micros(now), str(lst)) for lst, _ in rows],
            )
    return len(items)


async def snapshots_due(
    db: BlacklistDB, *, node: str, interval_s: float, now: datetime, min_interval_s: float = 60.0
) -> list[str]:
    """Own lists that owe a snapshot: asked for (but at most one snapshot of a list per
    ``min_interval_s``, so a flood of repair requests costs one snapshot), or none
    published for ``interval_s``."""
    cutoff = micros(now) - int(interval_s * 1_000_000)
    recent = micros(now) - int(min_interval_s * 1_000_000)
    async with db.transaction() as tx:
        asked = await tx.fetch(
            "SELECT d.list_id FROM bl_snapshot_due d"
            " LEFT JOIN bl_published p ON p.list_id = d.list_id"
            " WHERE COALESCE(p.snapshot_at, 0) < ?",
            recent,
        )
        stale = await tx.fetch(
            "SELECT l.list_id FROM bl_lists l LEFT JOIN bl_published p ON p.list_id = l.list_id"
            " WHERE l.owner = ? AND COALESCE(p.snapshot_at, l.updated_at) < ?",
            node,
            cutoff,
        )
    return sorted({str(r[0]) for r in asked} | {str(r[0]) for r in stale})
