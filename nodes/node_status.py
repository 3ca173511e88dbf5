"""What a running node tells about itself: waiting for what it stored, published or caught
up with (tests and tools drive a node by these), its health (``/healthz``) and its metrics
(``/metrics``). :class:`NodeStatus` is a part of :class:`nodes.daemon.Node`, which sets
the attributes declared here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from nodes.blacklist import service as blacklist_service
from nodes.clock import Clock
from nodes.commits import CommitSignal
from nodes.config import NodeConfig
from nodes.consumer import Consumer, end_offsets
from nodes.metrics import Metrics
from nodes.outbound import Dispatcher
from nodes.pseudonyms.node import PseudonymPart
from nodes.publisher import Publisher
from nodes.store.base import Store
from nodes.supervisor import Supervisor


class NodeStatus:
    """Waiting on, and reporting the health and metrics of, a :class:`~nodes.daemon.Node`."""

    config: NodeConfig
    clock: Clock
    metrics: Metrics
    log: Any  # a bound structlog logger (nodes.logging.get_logger)
    topics: list[str]
    store: Store
    publisher: Publisher | None
    consumer: Consumer | None
    dispatcher: Dispatcher | None
    supervisor: Supervisor
    pseudonyms: PseudonymPart | None
    commits: CommitSignal
    _topics_ready: asyncio.Event
    _started: bool

    # --- waiting, health, metrics --------------------------------------------------------

    async def wait_until(self, predicate: Callable[[], bool], within_s: float = 30.0) -> None:
        """Wait until ``predicate()`` holds after a commit (or now); TimeoutError otherwise."""
        async with asyncio.timeout(within_s):
            while True:
                seen = self.commits.count
                if predicate():
                    return
                # a commit wakes it at once; the poll serves predicates that no commit moves
                await self.commits.wait_after(seen, 0.1)

    async def wait_stored(
        self, count: int, within_s: float = 30.0, topic: str | None = None
    ) -> None:
        """Wait until this node has stored ``count`` records since it started (TimeoutError)."""
        await self.wait_until(lambda: self.metrics.stored.value(topic) >= count, within_s)

    async def wait_published(self, count: int, within_s: float = 30.0) -> None:
        """Wait until this node's publisher has had ``count`` items acknowledged (TimeoutError)."""
        await self.wait_until(lambda: self.metrics.published.value() >= count, within_s)

    async def wait_caught_up(self, within_s: float = 30.0) -> None:
        """Wait until this node has committed every record on its topics as of now: the
        positive proof that nothing more is on its way (TimeoutError otherwise)."""
        assert self.consumer is not None, "node not started"
        consumer = self.consumer
        async with asyncio.timeout(within_s):
            while True:  # every topic's partitions, or the proof would be vacuous
                ends = await end_offsets(self.config.kafka.settings(), self.topics)
                if {topic for topic, _ in ends} >= set(self.topics):
                    break
                await asyncio.sleep(0.1)

        def done() -> bool:
            committed = consumer.committed()
            return all(committed.get(tp, 0) >= end for tp, end in ends.items())

        await self.wait_until(done, within_s)

    async def health(self) -> list[str]:
        """[] when healthy, else each problem: the node not running, a loop failed or down
        for longer than ``[retry] unhealthy_after_s`` (named), Kafka or the store failing."""
        problems = []
        if not self._started:
            problems.append("node is not running")
        if not self._topics_ready.is_set():
            problems.append("waiting for Kafka to create or confirm the topics")
        problems.extend(self.supervisor.problems(self.clock()))
        if self.consumer is not None and self.consumer.last_error:
            problems.append(f"consumer: {self.consumer.last_error}")
        if self.publisher is not None and self.publisher.last_error:
            problems.append(f"publisher: {self.publisher.last_error}")
        if self.dispatcher is not None:
            problems.extend(self.dispatcher.problems())
        problems.extend(await blacklist_service.problems(self))
        if self.pseudonyms is not None:
            problems.extend(await self.pseudonyms.problems(self.clock()))
        try:
            await asyncio.wait_for(self.store.schema_version(), 2.0)
        except Exception as exc:
            problems.append(f"store does not answer: {type(exc).__name__}: {exc}")
        return problems

    async def metrics_text(self) -> bytes:
        try:
            self.metrics.outbox_depth.set(await asyncio.wait_for(self.store.outbox_depth(), 2.0))
        except Exception as exc:
            self.log.debug("outbox depth unavailable", error=str(exc))
        return self.metrics.render()
