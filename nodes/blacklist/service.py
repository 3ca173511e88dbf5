"""The node's blacklist task: materialize, ask for repairs, answer with snapshots.

Every ``[blacklist] sync_interval_s`` (and after each commit that stored records): apply
new deltas to the joint list (:func:`nodes.blacklist.state.sync`), publish a
REPAIR_REQUEST for each new gap, and publish a snapshot of each list this node owns that
was asked for or is due on schedule (``snapshot_interval_s``). Exports are written by the
``blacklist-export`` outbound connector and by ``exchange blacklist export``.
"""

from __future__ import annotations

from typing import Any

from exchange.errors import ExchangeError, InputError
from exchange.topics import TopicKind, topic_name
from nodes.blacklist.config import BlacklistConfig
from nodes.blacklist.db import BlacklistDB, blacklist_db, micros
from nodes.blacklist.export import applied
from nodes.blacklist.publish import publish_repairs, publish_snapshot, snapshots_due
from nodes.blacklist.rules import list_owned_by_sender
from nodes.blacklist.state import sync
from nodes.logging import get_logger

log = get_logger(component="blacklist")

__all__ = ["list_owned_by_sender", "run", "step"]


def _materialized(node: Any) -> bool:
    """False for ``sqlite:///:memory:`` (tests only): the joint list needs a store file."""
    return not str(node.config.store.url).endswith(":memory:")


def settings(config: Any) -> BlacklistConfig:
    found = getattr(config, "blacklist", None)
    return found if isinstance(found, BlacklistConfig) else BlacklistConfig()


async def step(db: BlacklistDB, node: Any) -> None:
    """One round: sync, repairs, snapshots (``node``: a running ``nodes.daemon.Node``)."""
    config = node.config
    bl = settings(config)
    prefix = config.kafka.topic_prefix
    now = node.clock()
    report = await sync(db, topic_name(TopicKind.BLACKLIST, prefix), config.node, now)
    if report.counts:
        log.info("blacklist_synced", **{k: int(v) for k, v in report.counts.items()})
    sent = await publish_repairs(
        db, node=config.node, prefix=prefix, trust=node._trust, now=now, retry_s=bl.repair_retry_s
    )
    for list_id in await snapshots_due(
        db,
        node=config.node,
        interval_s=bl.snapshot_interval_s,
        now=now,
        min_interval_s=bl.snapshot_min_interval_s,
    ):
        try:
            await publish_snapshot(
                db,
                node=config.node,
                prefix=prefix,
                trust=node._trust,
                list_id=list_id,
                now=now,
                part_entries=bl.snapshot_part_entries,
            )
        except InputError as exc:  # asked for a list this node does not hold: drop the ask
            log.warning("blacklist_snapshot_refused", list_id=list_id, detail=str(exc))
            async with db.transaction() as tx:
                await tx.execute("DELETE FROM bl_snapshot_due WHERE list_id = ?", list_id)
            continue
        sent += 1
    if sent and node.publisher is not None:
        node.publisher.wake()


async def run(node: Any) -> None:
    """Run :func:`step` for the node's life; a failed round is logged and retried."""
    if not _materialized(node):
        log.warning(
            "blacklist_not_materialized", reason="an in-memory store has no second connection"
        )
        return
    db = blacklist_db(node.store, node.config.store.url)
    interval = settings(node.config).sync_interval_s
    try:
        while True:
            # Noted before the round, so a commit during it wakes the next one at once.
            seen = node.commits.count
            try:
                await step(db, node)
            except ExchangeError as exc:
                log.warning("blacklist_round_failed", detail=str(exc))
            await node.commits.wait_after(seen, interval)
    finally:
        await db.close()


async def problems(node: Any) -> list[str]:
    """For /healthz: each export consumer still on an older export ``applied_grace_s``
    after the newer one was written (who lags, by how many serials, on which versions)."""
    grace_us = int(settings(node.config).applied_grace_s * 1_000_000)
    now_us = micros(node.clock())
    if not _materialized(node):
        return []
    db = blacklist_db(node.store, node.config.store.url)
    try:
        rows = await applied(db)
    except ExchangeError as exc:
        return [f"blacklist: applied versions unavailable: {exc}"]
    finally:
        await db.close()
    return [
        f"blacklist: {r['consumer']} applied {r['export']} serial {r['applied_serial']}"
        f" {r['applied_versions']}, current serial {r['current_serial']}"
        f" {r['current_versions']} (lags {r['lag']})"
        for r in rows
        if int(str(r["lag"])) > 0 and now_us - int(str(r["current_since_us"])) > grace_us
    ]
