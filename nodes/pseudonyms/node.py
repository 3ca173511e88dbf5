"""The pseudonym service inside a running node: its loop, keys, health and metrics.

:class:`PseudonymPart` is made by the daemon (one line in ``Node.start``); it holds its own
store instance (stores are one task per instance), keeps the keyring in step with the
trust list (``adopt``: the blinds of a new key are computed, those of a key past its grace
dropped), answers stored queries every ``interval_s`` (sooner after a consumer commit),
and reports requests for details undecided past ``[rules.pseudonyms]
details_decision_timeout_h`` in ``/healthz``, the metric
``exchange_pseudonym_requests_overdue`` and ``node status``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from exchange.errors import ExchangeError
from exchange.ids import NodeId
from exchange.keys import EncryptionKey
from exchange.pseudonyms.decide import ResponderPolicy
from exchange.pseudonyms.keys import Keyring, keyring_for
from exchange.topics import TopicKind, topic_name
from exchange.trust import TrustList
from nodes.metrics import Gauge
from nodes.pseudonyms.repo import repo_for
from nodes.pseudonyms.service import PseudonymService
from nodes.store.base import Store, open_store

if TYPE_CHECKING:
    from nodes.config import NodeConfig
    from nodes.daemon import Node

__all__ = ["PseudonymPart", "service_for"]

INTERVAL_S = 0.2


def policy_of(config: NodeConfig) -> ResponderPolicy:
    rules = config.rules.pseudonyms
    return ResponderPolicy(frozenset(rules.query_allowed_from), rules.max_queries_per_hour)


def service_for(
    config: NodeConfig,
    store: Store,
    keyring: Callable[[], Keyring],
    trust: Callable[[], TrustList | None],
) -> PseudonymService:
    """The service on ``store`` (opened) for the node ``config`` describes."""
    prefix = config.kafka.topic_prefix
    return PseudonymService(
        node=config.node,
        prefix=prefix,
        topic=topic_name(TopicKind.PSEUDONYMS, prefix),
        repo=repo_for(store),
        policy=policy_of(config),
        keyring=keyring,
        trust=trust,
        decision_timeout=timedelta(hours=config.rules.pseudonyms.details_decision_timeout_h),
    )


class PseudonymPart:
    def __init__(self, node: Node, decrypter: EncryptionKey, trust: TrustList) -> None:
        self.node = node
        self.config = node.config
        self.decrypter = decrypter
        self.trust = trust
        self.ring = keyring_for(trust.pseudonym_keys, NodeId(self.config.node), decrypter)
        self._keys_changed = True
        self.store: Store = open_store(self.config.store.url)
        self.service: PseudonymService | None = None
        self.wake = asyncio.Event()
        self.overdue = Gauge(
            node.metrics.registry,
            "exchange_pseudonym_requests_overdue",
            "Requests for pseudonym details undecided past the decision timeout.",
        )
        self.answered = 0

    def adopt(self, trust: TrustList) -> None:
        """A newer trust list: its pseudonym keys replace the keyring."""
        self.trust = trust
        self.ring = keyring_for(trust.pseudonym_keys, NodeId(self.config.node), self.decrypter)
        self._keys_changed = True
        self.wake.set()

    async def run(self) -> None:
        """The responder loop (under the supervisor as ``pseudonyms``)."""
        await self.store.open()
        try:
            self.service = service_for(
                self.config, self.store, lambda: self.ring, lambda: self.trust
            )
            while True:
                now = self.node.clock()
                if self._keys_changed:
                    self._keys_changed = False
                    await self.service.repo.ensure_blinds(self.ring.usable(now))
                done = await self.service.respond_once(now)
                self.answered += done
                if done:
                    if self.node.publisher is not None:
                        self.node.publisher.wake()
                    continue
                self.overdue.set(await self.service.overdue(now))
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), INTERVAL_S)
        finally:
            await self.store.close()

    async def problems(self, now: datetime) -> list[str]:
        """Health: requests for details undecided past the timeout."""
        if self.service is None:
            return []
        try:
            late = await asyncio.wait_for(self.service.overdue(now), 2.0)
        except (ExchangeError, TimeoutError) as exc:
            return [f"pseudonyms: {exc}"]
        self.overdue.set(late)
        if not late:
            return []
        hours = self.config.rules.pseudonyms.details_decision_timeout_h
        return [f"pseudonyms: {late} request(s) for details undecided for more than {hours:g} h"]


async def overdue_count(config: NodeConfig, store: Store, now: datetime) -> int:
    """For ``node status``: requests for details undecided past the timeout."""
    hours = config.rules.pseudonyms.details_decision_timeout_h
    return await repo_for(store).pending_before(now - timedelta(hours=hours))
