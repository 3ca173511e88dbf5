"""The daemon's statistics loop: publish each closed period, then corrections when it changes.

Every ``[stats] check_interval_s`` (the first time ``first_check_after_s`` after start, so
a node restarting does not publish at once) it counts the last ``recheck_periods`` closed
periods and queues an indicator for each that has none yet or whose counts changed since
(late records, a purge): :func:`nodes.stats.publish.publish_period`. A store error is
logged and tried at the next check; anything else ends the loop and the supervisor
restarts it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from exchange.errors import ExchangeError
from exchange.stats.period import Period, period_containing
from nodes.config import NodeConfig
from nodes.logging import get_logger
from nodes.stats.publish import publish_period
from nodes.store.base import Store
from nodes.store.opened import opened_store

if TYPE_CHECKING:
    from nodes.daemon import Node


def periods_to_check(now: datetime, config: NodeConfig) -> list[Period]:
    """The closed periods a check at ``now`` looks at, oldest first."""
    p = period_containing(now.date(), config.stats.period)
    found = []
    for _ in range(config.stats.recheck_periods):
        p = p.previous()
        found.append(p)
    return found[::-1]


async def check_once(
    store: Store, config: NodeConfig, now: datetime, wake: Callable[[], None]
) -> int:
    """One check: how many indicators were queued."""
    queued = 0
    log = get_logger(node=config.node_id)
    for period in periods_to_check(now, config):
        outcome = await publish_period(
            store,
            node=config.node,
            prefix=config.kafka.topic_prefix,
            stats=config.stats,
            period=period,
            now=now,
            actor=f"node:{config.node_id}/stats",
        )
        if outcome.queued:
            queued += 1
            log.info(
                "statistical indicator queued",
                period=period.label,
                revision=outcome.indicator.revision,
                replaces_revision=outcome.replaces_revision,
            )
    if queued:
        wake()
    return queued


async def run_scheduler(node: Node) -> None:
    """The loop of ``node`` (runs until cancelled); queued indicators wake its publisher."""
    config, clock = node.config, node.clock

    def wake() -> None:
        if node.publisher is not None:
            node.publisher.wake()

    log = get_logger(node=config.node_id)
    async with opened_store(config.store.url) as store:
        await asyncio.sleep(config.stats.first_check_after_s)
        while True:
            try:
                await check_once(store, config, clock(), wake)
            except ExchangeError as exc:
                log.warning("statistics check failed", error=str(exc))
            await asyncio.sleep(config.stats.check_interval_s)
