"""The joint blacklist in the node's store: deltas read from the stored records, applied
in order, held across gaps, replaced by snapshots.

:func:`sync` reads the BlacklistDelta records stored since its cursor (per topic partition;
one partition per list keeps each list's deltas in order) and, in one transaction with the
cursor, applies each (``exchange.blacklist.deltas.verdict``):

- APPLY: additions upserted (a listing keeps its provenance: first version and time),
  removals deleted; then any held delta that now applies is applied in turn;
- HOLD: kept in ``bl_held`` and a repair (a snapshot request to the owner) recorded in
  ``bl_repairs`` for the daemon to publish; a SNAPSHOT newer than the held version repairs;
- STALE (a replay or an already-applied version) and CONFLICT: ignored, counted;
- a delta for a list from a member that does not own it never gets here (the topic's rule
  chain quarantines it, ``list_not_owned``) and is ignored here all the same;
- a REPAIR_REQUEST for a list this node owns is recorded in ``bl_snapshot_due``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from exchange.blacklist.deltas import (
    Delta,
    DeltaKind,
    Entry,
    EntryKey,
    EntryProblem,
    Verdict,
    joint_name,
    next_applicable,
    owner_of,
    parse_delta,
    to_payload,
    verdict,
)
from nodes.blacklist.db import BlacklistDB, Tx, micros
from nodes.logging import get_logger

log = get_logger(component="blacklist")
PAGE = 2000  # records read per round
ENTRY_ROWS = 10_000  # rows per executemany


@dataclass
class SyncReport:
    """What one :func:`sync` did, by verdict (plus ``invalid``, ``not_owned``, ``requests``)."""

    counts: Counter[str] = field(default_factory=Counter)
    changed: bool = False

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] += n


async def sync(db: BlacklistDB, topic: str, node: str, now: datetime) -> SyncReport:
    """Apply every stored delta not yet applied (loops until none is left)."""
    report = SyncReport()
    while True:
        async with db.transaction() as tx:
            rows = await _pending(tx, topic)
            for partition, offset, sender, payload in rows:
                await _one(tx, sender, tx.payload(payload), node, now, report)
                await tx.execute(
                    "INSERT INTO bl_cursor (topic, kafka_partition, next_offset) VALUES (?, ?, ?)"
                    " ON CONFLICT (topic, kafka_partition) DO UPDATE SET next_offset ="
                    " excluded.next_offset",
                    topic,
                    partition,
                    offset + 1,
                )
        if len(rows) < PAGE:
            return report


async def _pending(tx: Tx, topic: str) -> list[tuple[int, int, str, Any]]:
    cursors = dict(
        (int(p), int(o))
        for p, o in await tx.fetch(
            "SELECT kafka_partition, next_offset FROM bl_cursor WHERE topic = ?", topic
        )
    )
    parts = await tx.fetch(
        "SELECT DISTINCT kafka_partition FROM records"
        " WHERE topic = ? AND message_type = 'BlacklistDelta'",
        topic,
    )
    out: list[tuple[int, int, str, Any]] = []
    for (partition,) in sorted(parts):
        rows = await tx.fetch(
            "SELECT kafka_partition, kafka_offset, sender, payload FROM records"
            " WHERE topic = ? AND message_type = 'BlacklistDelta' AND kafka_partition = ?"
            " AND kafka_offset >= ? ORDER BY kafka_offset LIMIT ?",
            topic,
            int(partition),
            cursors.get(int(partition), 0),
            PAGE - len(out),
        )
        out.extend((int(a), int(b), str(c), d) for a, b, c, d in rows)
        if len(out) >= PAGE:
            break
    return out


async def held_version(tx: Tx, list_id: str) -> int:
    rows = await tx.fetch("SELECT version FROM bl_lists WHERE list_id = ?", list_id)
    return int(rows[0][0]) if rows else 0


async def _one(
    tx: Tx, sender: str, payload: dict[str, Any], node: str, now: datetime, report: SyncReport
) -> None:
    try:
        delta = parse_delta(sender, payload)
    except (EntryProblem, KeyError, ValueError) as exc:
        log.warning("blacklist_delta_invalid", sender=sender, detail=str(exc))
        report.add("invalid")
        return
    if delta.kind is DeltaKind.REPAIR_REQUEST:
        if delta.owner == node and sender != node:
            await tx.execute(
                "INSERT INTO bl_snapshot_due (list_id, asked_by, asked_at) VALUES (?, ?, ?)"
                " ON CONFLICT (list_id) DO NOTHING",
                delta.list_id,
                sender,
                micros(now),
            )
            report.add("requests")
        return
    if delta.owner != sender:
        report.add("not_owned")
        return
    await receive(tx, delta, now, report)


async def receive(tx: Tx, delta: Delta, now: datetime, report: SyncReport) -> None:
    """Apply, hold or ignore one delta (an owner's), then drain what it unblocked."""
    held = await held_version(tx, delta.list_id)
    if delta.kind is DeltaKind.SNAPSHOT and delta.parts > 1:
        if delta.version <= held:
            report.add(Verdict.STALE.value)
            return
        await _hold(tx, delta, now)
        parts = await _held(tx, delta.list_id, DeltaKind.SNAPSHOT, delta.version)
        if len(parts) < delta.parts:
            report.add("snapshot_part")
            return
        added = tuple(e for p in sorted(parts, key=lambda d: d.part) for e in p.added)
        delta = Delta(
            delta.sender,
            delta.list_id,
            DeltaKind.SNAPSHOT,
            0,
            delta.version,
            added,
            (),
            delta.reason,
        )
    what = verdict(delta, held)
    report.add(what.value)
    if what is Verdict.HOLD:
        await _hold(tx, delta, now)
        await tx.execute(
            "INSERT INTO bl_repairs (list_id, held_version, requested_at) VALUES (?, ?, ?)"
            " ON CONFLICT (list_id) DO NOTHING",
            delta.list_id,
            held,
            micros(now),
        )
        return
    if what is not Verdict.APPLY:
        return
    await apply(tx, delta, now)
    report.changed = True
    version = delta.version
    pending = await _held(tx, delta.list_id, DeltaKind.DELTA, None)
    while (nxt := next_applicable(pending, version)) is not None:
        await apply(tx, nxt, now)
        report.add("drained")
        version = nxt.version
    await tx.execute(
        "DELETE FROM bl_held WHERE list_id = ? AND version <= ?", delta.list_id, version
    )
    if not [d for d in pending if d.version > version]:
        await tx.execute("DELETE FROM bl_repairs WHERE list_id = ?", delta.list_id)


async def _hold(tx: Tx, delta: Delta, now: datetime) -> None:
    await tx.execute(
        "INSERT INTO bl_held (list_id, kind, version, part, base_version, parts, sender,"
        " payload, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (list_id, kind, version, part) DO NOTHING",
        delta.list_id,
        delta.kind.value,
        delta.version,
        delta.part,
        delta.base_version,
        delta.parts,
        delta.sender,
        json.dumps(to_payload(delta)),
        micros(now),
    )


async def _held(tx: Tx, list_id: str, kind: DeltaKind, version: int | None) -> list[Delta]:
    sql = "SELECT sender, payload FROM bl_held WHERE list_id = ? AND kind = ?"
    args: list[Any] = [list_id, kind.value]
    if version is not None:
        sql += " AND version = ?"
        args.append(version)
    rows = await tx.fetch(sql + " ORDER BY version, part", *args)
    return [parse_delta(str(s), json.loads(p)) for s, p in rows]


def _entry_row(delta: Delta, e: Entry, now_us: int) -> tuple[Any, ...]:
    return (
        delta.list_id,
        e.kind,
        e.value,
        e.algorithm,
        delta.owner,
        delta.joint,
        e.category,
        e.reason,
        micros(e.added_at),
        None if e.expires_at is None else micros(e.expires_at),
        delta.version,
        now_us,
        delta.version,
    )


UPSERT = (
    "INSERT INTO bl_entries (list_id, kind, value, algorithm, owner, joint, category, reason,"
    " added_at, expires_at, version, listed_at, mark)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (list_id, kind, value, algorithm) DO UPDATE SET category = excluded.category,"
    " reason = excluded.reason, expires_at = excluded.expires_at, mark = excluded.mark"
)


async def apply(tx: Tx, delta: Delta, now: datetime) -> None:
    """Apply one delta (or replace the list by a snapshot) and record its version."""
    now_us = micros(now)
    for i in range(0, len(delta.removed), ENTRY_ROWS):
        await tx.executemany(
            "DELETE FROM bl_entries WHERE list_id = ? AND kind = ? AND value = ? AND algorithm = ?",
            [(delta.list_id, k, v, a) for k, v, a in delta.removed[i : i + ENTRY_ROWS]],
        )
    for i in range(0, len(delta.added), ENTRY_ROWS):
        rows = [_entry_row(delta, e, now_us) for e in delta.added[i : i + ENTRY_ROWS]]
        await tx.executemany(UPSERT, rows)
    if delta.kind is DeltaKind.SNAPSHOT:
        await tx.execute(
            "DELETE FROM bl_entries WHERE list_id = ? AND mark <> ?", delta.list_id, delta.version
        )
        await tx.execute(
            "DELETE FROM bl_held WHERE list_id = ? AND version <= ?", delta.list_id, delta.version
        )
    await tx.execute(
        "INSERT INTO bl_lists (list_id, owner, joint, version, updated_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (list_id) DO UPDATE SET version = excluded.version,"
        " updated_at = excluded.updated_at",
        delta.list_id,
        owner_of(delta.list_id),
        joint_name(delta.list_id),
        delta.version,
        now_us,
    )


async def versions(db: BlacklistDB, joint: str | None = None) -> dict[str, int]:
    """The applied version of each member list (of one joint list, or all)."""
    async with db.transaction() as tx:
        if joint is None:
            rows = await tx.fetch("SELECT list_id, version FROM bl_lists")
        else:
            rows = await tx.fetch("SELECT list_id, version FROM bl_lists WHERE joint = ?", joint)
    return {str(k): int(v) for k, v in rows}


async def list_entries(
    tx: Tx, list_id: str, after: EntryKey | None = None, limit: int = 2**62
) -> list[Entry]:
    """The entries of one member list (for a snapshot) in key order: those after ``after``,
    at most ``limit`` (keyset paging, so a large list is read a part at a time)."""
    from nodes.blacklist.db import from_micros

    select = (
        "SELECT kind, value, algorithm, category, reason, added_at, expires_at FROM bl_entries"
        " WHERE list_id = ?"
    )
    order = " ORDER BY kind, value, algorithm LIMIT ?"
    if after is None:
        rows = await tx.fetch(select + order, list_id, limit)
    else:
        rows = await tx.fetch(
            select + " AND (kind, value, algorithm) > (?, ?, ?)" + order, list_id, *after, limit
        )
    out: list[Entry] = []
    for kind, value, algorithm, category, reason, added, expires in rows:
        added_at = from_micros(int(added))
        assert added_at is not None
        out.append(
            Entry(
                str(kind),
                str(value),
                str(algorithm),
                str(category),
                str(reason),
                added_at,
                from_micros(None if expires is None else int(expires)),
            )
        )
    return out


async def state_rows(db: BlacklistDB) -> list[tuple[Any, ...]]:
    """The whole state without provenance versions (what two replicas must agree on)."""
    async with db.transaction() as tx:
        rows = await tx.fetch(
            "SELECT list_id, kind, value, algorithm, category, reason, added_at, expires_at"
            " FROM bl_entries ORDER BY list_id, kind, value, algorithm"
        )
        lists = await tx.fetch("SELECT list_id, version FROM bl_lists ORDER BY list_id")
    return [*rows, *lists]


def summarize(counts: Iterable[tuple[str, int]]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(counts)) or "nothing new"


__all__: Sequence[str] = ["SyncReport", "apply", "list_entries", "receive", "sync", "versions"]
