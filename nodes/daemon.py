"""The node daemon: one :class:`Node` runs publisher, consumer, retention, connectors and HTTP.

Driving a node from a test (in-process, real broker, real store)::

    config = load_config(path, consumer={"poll_timeout_ms": 100})  # tables override the file
    node = Node(config, clock=...)              # clock: optional, for retention tests
    await node.start()                          # opens stores, starts every loop
    await node.submit("OffenceAlert", payload, handling={"tlp": "GREEN", "code": "H0"},
                      recipients=["DE"])        # validated + enqueued; or store.enqueue(items)
    await node.wait_stored(3, within_s=30)      # until 3 records stored since start (any topic)
    await node.wait_published(3)                # until 3 outbox items acknowledged by Kafka
    await node.wait_until(lambda: node.metrics.consumed.value() >= 4)
    node.metrics.quarantined.value("replayed")  # counters: published, consumed, stored (by
                                                # topic), quarantined / skipped (by reason)
    records = await node.store.list_records(topic=node.topics[0])
    await node.health()                         # [] when healthy, else the problems
    node.supervisor.loops["publisher"].restarts # each loop's state, restarts, last error
    await node.stop()                           # finish the batch, commit, close cleanly

Crash tests run ``exchange node run --config FILE`` as a child process instead (SIGKILL it;
restart it); the stores and offsets it leaves are what the next start resumes from.

``exchange node run`` is :func:`nodes.run.run_node`: SIGTERM/SIGINT stop the node as above, exit 0;
a loop failing fatally (a configuration error: :func:`nodes.supervisor.is_fatal`) stops it
with exit code 1. Every loop (publisher, consumer, each connector's delivery loop, each
inbound connector, the retention purge) runs under :class:`nodes.supervisor.Supervisor`,
which restarts one that fails with the ``[retry]`` backoff.
Each loop holds its own store instance (the store is one-task-per-instance); ``node.store``
is the one for queries, retention and connectors' submissions.
Outbound connectors are fed by their own delivery loops (:mod:`nodes.outbound`) from a
queue the consumer's store transaction writes, so a crash never loses a delivery; a restart
resumes each connector from its cursor.

Beside this module: :mod:`nodes.node_context` (the keys, trust list and pipeline context a
node starts from; re-exported here), :mod:`nodes.node_status` (waiting, health, metrics:
:class:`Node` inherits them) and :mod:`nodes.run` (``exchange node run``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from connectors.api import ConnectorContext, InboundConnector, OutboundConnector, instantiate
from exchange.bus import KafkaSettings, ensure_topics
from exchange.errors import ExchangeError
from exchange.topics import TopicKind, topic_name
from exchange.trust import TrustList
from nodes import trustfeed
from nodes.blacklist import service as blacklist_service
from nodes.clock import Clock, utc_now
from nodes.commits import CommitSignal
from nodes.config import NodeConfig
from nodes.connector_host import connector_context, outbound_of, run_inbound
from nodes.consumer import Consumer
from nodes.http import HttpServer
from nodes.inbound import build_item
from nodes.logging import get_logger
from nodes.metrics import Metrics
from nodes.node_context import load_identity, pipeline_context
from nodes.node_status import NodeStatus
from nodes.outbound import Dispatcher, Outbound
from nodes.pseudonyms.node import PseudonymPart
from nodes.publisher import Publisher
from nodes.retry import Backoff
from nodes.stats.scheduler import run_scheduler
from nodes.store.base import Store, open_store
from nodes.supervisor import Supervisor

__all__ = ["STOP_TIMEOUT_S", "Node", "load_identity", "pipeline_context"]

STOP_TIMEOUT_S = 30.0


class Node(NodeStatus):
    """A running node. Not started by ``__init__``: call :meth:`start`, then :meth:`stop`."""

    def __init__(self, config: NodeConfig, *, clock: Clock = utc_now) -> None:
        self.config = config
        self.clock = clock
        self.metrics = Metrics()
        self.log = get_logger(node=config.node_id)
        self.topics = [topic_name(k, config.kafka.topic_prefix) for k in TopicKind]
        self.store: Store = open_store(config.store.url)
        self._consumer_store: Store = open_store(config.store.url)
        self._publisher_store: Store = open_store(config.store.url)
        self._outbound_store: Store = open_store(config.store.url)
        self.publisher: Publisher | None = None
        self.consumer: Consumer | None = None
        self.dispatcher: Dispatcher | None = None
        self.http: HttpServer | None = None
        self.supervisor = Supervisor(
            node=config.node_id,
            policy=config.retry.policy(),
            unhealthy_after_s=config.retry.unhealthy_after_s,
            metrics=self.metrics,
            clock=clock,
        )
        self._inbound: list[tuple[str, InboundConnector]] = []
        self._contexts: dict[str, ConnectorContext] = {}
        self.connectors: dict[str, object] = {}  # the instances by name (tests, tools)
        self.commits = CommitSignal()
        self._topics_ready = asyncio.Event()
        self._trust: TrustList | None = None
        self._started = False
        self.pseudonyms: PseudonymPart | None = None

    # --- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        config = self.config
        signer, decrypter, trust = await asyncio.to_thread(load_identity, config)
        await trustfeed.accept_on_start(config.store.url, trust)  # versions only go up
        self._trust = trust
        for store in (
            self.store,
            self._consumer_store,
            self._publisher_store,
            self._outbound_store,
        ):
            await store.open()
        kafka = config.kafka.settings()
        outbound, inbound = self._connectors()
        self.dispatcher = Dispatcher(
            node=config.node_id,
            outbound=outbound,
            rules=config.rules,
            prefix=config.kafka.topic_prefix,
            store=self._outbound_store,
            metrics=self.metrics,
            clock=self.clock,
            backoff_initial_s=config.retry.initial_ms / 1000,
            backoff_max_s=config.retry.max_ms / 1000,
        )
        # cursors first: nothing committed from now on is missed
        await self.dispatcher.start(self.supervisor.spawn)
        self.publisher = Publisher(
            node=config.node,
            store=self._publisher_store,
            kafka=kafka,
            signer=signer,
            trust=trust,
            config=config.publisher,
            metrics=self.metrics,
            clock=self.clock,
        )
        self.consumer = Consumer(
            node=config.node_id,
            group=config.consumer_group,
            topics=self.topics,
            store=self._consumer_store,
            kafka=kafka,
            context=pipeline_context(config, trust, decrypter),
            config=config.consumer,
            backoff=config.publisher,
            metrics=self.metrics,
            dispatcher=self.dispatcher,
            clock=self.clock,
            on_commit=self.commits.notify,
        )
        spawn = self.supervisor.spawn
        spawn("publisher", self._publish)
        spawn("consumer", self._consume)
        spawn("retention", self._purge_loop)
        spawn("trust", functools.partial(self._follow_trust, kafka))
        if config.stats.enabled:
            spawn("stats", functools.partial(run_scheduler, self))
        spawn("blacklist", functools.partial(blacklist_service.run, self))
        self.pseudonyms = PseudonymPart(self, decrypter, trust)
        spawn("pseudonyms", self.pseudonyms.run)
        for name, connector in inbound:
            spawn(
                f"inbound:{name}",
                functools.partial(run_inbound, self, self._contexts[name], connector),
            )
        self._inbound = inbound
        listen = config.http.host_port
        if listen is not None:
            self.http = HttpServer(listen[0], listen[1], self.health, self.metrics_text)
            await self.http.start()
        self._started = True
        self.log.info(
            "node started",
            topics=self.topics,
            store=config.store.url.split("://", 1)[0],
            http=f"{self.http.host}:{self.http.port}" if self.http else None,
            connectors=[c.name for c in config.connectors if c.enabled],
        )

    def _trust_follower(self, kafka: KafkaSettings, trust: TrustList) -> trustfeed.TrustFollower:
        return trustfeed.TrustFollower(
            kafka=kafka,
            prefix=self.config.kafka.topic_prefix,
            config=self.config,
            current=trust,
            store=self.store,
            on_adopt=self._adopt_trust,
            log=self.log,
        )

    def _adopt_trust(self, trust: TrustList) -> None:
        """A newer trust list, taken up live (nodes.trustfeed): consumer, open pool, publisher."""
        self._trust = trust
        if self.consumer is not None:
            ctx = self.consumer.context
            own = ctx.skip_key_ids
            if own and self.config.node in trust.members:  # this node's keys may have rotated
                own = frozenset(k.key_id for k in trust.member(self.config.node).signing_keys)
            self.consumer.context = dataclasses.replace(ctx, trust=trust, skip_key_ids=own)
            if self.consumer.open_pool is not None:
                self.consumer.open_pool.reconfigure(self.consumer.context)
        if self.publisher is not None:
            self.publisher.trust = trust
        if self.pseudonyms is not None:
            self.pseudonyms.adopt(trust)

    async def _follow_trust(self, kafka: KafkaSettings) -> None:
        """Follow the trust topic from the list in force now (a restart resumes from it)."""
        assert self._trust is not None
        await self._trust_follower(kafka, self._trust).run()

    async def _consume(self) -> None:
        """Make sure the topics exist (retrying while Kafka is away), then consume."""
        assert self.consumer is not None
        config = self.config
        backoff = Backoff.of(config.retry.policy())
        while True:
            try:
                await ensure_topics(config.kafka.settings(), config.kafka.topic_prefix)
                break
            except ExchangeError as exc:
                if not exc.retriable:
                    raise
                self.consumer.last_error = str(exc)
                if backoff.failures == 0:
                    self.log.warning("cannot create topics yet, will retry", error=str(exc))
                await asyncio.sleep(backoff.next_delay())
        self.consumer.last_error = None
        self._topics_ready.set()
        await self.consumer.run()

    async def _publish(self) -> None:
        """Publish once the topics exist (sending to a missing topic only fails and logs)."""
        assert self.publisher is not None
        await self._topics_ready.wait()
        await self.publisher.run()

    async def stop(self) -> None:
        """Finish the current batch, commit, stop every loop and close the stores."""
        if not self._started:
            return
        self._started = False
        self.supervisor.close()  # a loop failing from now on is not restarted
        if self.publisher is not None:
            self.publisher.stop()
        if self.consumer is not None:
            self.consumer.stop()
        tasks = []
        for name, loop in self.supervisor.loops.items():
            if loop.task is None or name.startswith("outbound:"):
                continue  # the dispatcher finishes its page and stops those, below
            waiting = name in ("publisher", "consumer") and not self._topics_ready.is_set()
            if (
                waiting
                or name in ("retention", "trust", "blacklist", "pseudonyms", "stats")
                or name.startswith("inbound:")
            ):
                loop.task.cancel()  # nothing in flight to finish
            tasks.append(loop.task)
        _done, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S) if tasks else ((), ())
        for task in pending:
            self.log.warning("task did not stop in time; cancelled", task=task.get_name())
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
        for name, connector in self._inbound:
            try:
                await connector.close()
            except Exception as exc:
                self.log.warning("connector close failed", connector=name, error=str(exc))
        if self.dispatcher is not None:  # after the consumer's last commit: deliver it too
            await self.dispatcher.stop()
            await self.dispatcher.close()
        if self.http is not None:
            await self.http.close()
        if self.consumer is not None:
            self.consumer.shutdown_pool()
        for store in (
            self._consumer_store,
            self._publisher_store,
            self._outbound_store,
            self.store,
        ):
            await store.close()
        self.log.info(
            "node stopped",
            stored=int(self.metrics.stored.value()),
            published=int(self.metrics.published.value()),
        )

    # --- connectors ----------------------------------------------------------------------

    def _connectors(self) -> tuple[list[Outbound], list[tuple[str, InboundConnector]]]:
        self._contexts = {}
        outbound: list[Outbound] = []
        inbound: list[tuple[str, InboundConnector]] = []
        base_dir = self.config.keys.signing_key.parent
        for spec in self.config.connectors:
            if not spec.enabled:
                continue
            context = connector_context(self, spec, base_dir)
            self._contexts[spec.name] = context
            connector = self.connectors[spec.name] = instantiate(spec.plugin, context)
            if isinstance(connector, OutboundConnector):
                outbound.append(outbound_of(spec, connector, context))
            if isinstance(connector, InboundConnector):  # a server (TAXII) can be both
                inbound.append((spec.name, connector))
        return outbound, inbound

    async def submit(
        self,
        message_type: str,
        payload: Mapping[str, Any],
        *,
        handling: Mapping[str, Any],
        recipients: Sequence[str] = (),
        topic: str | None = None,
        key: str | None = None,
    ) -> int:
        """Validate and enqueue one message (inbound connectors call this); its outbox id."""
        if self._trust is None:
            raise RuntimeError("node not started")
        item = build_item(
            message_type,
            payload,
            handling=handling,
            recipients=recipients,
            node=self.config.node,
            prefix=self.config.kafka.topic_prefix,
            trust=self._trust,
            now=self.clock(),
            topic=topic,
            key=key,
        )
        ids = await self.store.enqueue([item])
        if self.publisher is not None:
            self.publisher.wake()
        return ids[0]

    async def _purge_loop(self) -> None:
        """Erase expired records, and quarantine entries older than
        ``quarantine_retention_days``, every ``purge_interval_s``. A store error is logged and
        tried again at the next interval; anything else ends the run, and the supervisor
        restarts it (it used to end the loop for good, silently)."""
        interval = self.config.store.purge_interval_s
        keep = timedelta(days=self.config.store.quarantine_retention_days)
        actor = f"node:{self.config.node_id}/retention"
        while True:
            try:
                now = self.clock()
                erased = await self.store.purge_expired(now, actor)
                if erased:
                    self.log.info("retention purge", erased=len(erased))
                pruned = await self.store.purge_quarantine(now - keep, now, actor)
                if pruned:
                    self.log.info("quarantine pruned", erased=pruned)
            except ExchangeError as exc:
                self.log.warning("retention purge failed", error=str(exc))
            await asyncio.sleep(interval)
