"""The node's trust list: root pinned by fingerprint, versions only up, followed live.

- :func:`load_pinned` reads the trust-list file named in the config. With
  ``[keys] root_fingerprint`` (what ``exchange federation init`` writes) the root key is
  the one inside the list, accepted only with the pinned fingerprint: no root key file is
  read. A config with only ``root_public_key`` (older configs) still loads that file.
- :func:`accept_at_start` keeps the highest version the node ever accepted in its store
  (``node_status``, key ``trust_list_version``) and refuses a lower one
  (TRUST_LIST_ROLLBACK): the node does not start on a rolled-back list.
- :class:`TrustFollower` reads the compacted topic ``<prefix>.trust.v1`` (no consumer
  group, from its beginning, then as it grows). Each list that verifies against the
  pinned root and is newer than the node's is adopted without a restart: recorded in
  the store, written over the trust-list file (so a restart starts from it) and handed to
  the daemon's callback. Older or unverifiable records are logged and ignored.

The node judges every record against the newest list it holds (a key dropped from the
list no longer verifies anything, whenever it signed); the auditor, which must prove
history, uses the list in force at each record's append time instead.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from exchange.bus import KafkaSettings, consumer_kwargs, kafka_errors, started
from exchange.errors import ExchangeError
from exchange.topics import trust_topic
from exchange.trust import TrustList, check_version, load_trust_list
from nodes.config import NodeConfig
from nodes.store.base import Store
from nodes.store.opened import opened_store

__all__ = [
    "TRUST_VERSION_KEY",
    "TrustFollower",
    "accept_at_start",
    "accept_on_start",
    "load_pinned",
]

TRUST_VERSION_KEY = "trust_list_version"


def load_pinned(config: NodeConfig) -> TrustList:
    """The verified trust list of ``config`` (see the module doc for the root key)."""
    keys = config.keys
    if keys.root_fingerprint is not None:
        return load_trust_list(
            keys.trust_list, keys.root_public_key, root_fingerprint=keys.root_fingerprint
        )
    return load_trust_list(keys.trust_list, config.root_public_key_path)


async def highest_accepted(store: Store) -> int | None:
    """The highest trust-list version this node accepted, if any."""
    value = (await store.get_status()).get(TRUST_VERSION_KEY)
    return None if value is None else int(value)


async def accept_at_start(store: Store, trust: TrustList) -> None:
    """Refuse ``trust`` when older than the highest version accepted; else record it."""
    highest = await highest_accepted(store)
    check_version(trust, highest)
    if highest is None or trust.version > highest:
        await store.set_status(TRUST_VERSION_KEY, str(trust.version))


async def accept_on_start(url: str, trust: TrustList) -> None:
    """:func:`accept_at_start` against the store at ``url`` (opened and closed here), so a
    node refuses a rolled-back list before it opens anything else."""
    async with opened_store(url) as store:
        await accept_at_start(store, trust)


class TrustFollower:
    """Follows ``<prefix>.trust.v1`` and adopts each newer, valid list (see the module doc)."""

    def __init__(
        self,
        *,
        kafka: KafkaSettings,
        prefix: str,
        config: NodeConfig,
        current: TrustList,
        store: Store,
        on_adopt: Callable[[TrustList], None],
        log: Any,
        retry_s: float = 2.0,
    ) -> None:
        self.kafka = kafka
        self.topic = trust_topic(prefix)
        self.fingerprint = config.keys.root_fingerprint
        self.trust_path = config.keys.trust_list
        self.current = current
        self.store = store
        self.on_adopt = on_adopt
        self.log = log
        self.retry_s = retry_s

    def verify(self, data: bytes) -> TrustList:
        """``data`` as a trust list signed by the pinned root (TrustListError otherwise)."""
        if self.fingerprint is not None:
            return TrustList.from_signed_pinned(data, self.fingerprint)
        return TrustList.from_signed(data, self.current.root_public_key)

    async def offer(self, data: bytes) -> TrustList | None:
        """Adopt ``data`` when it is a valid, newer list of this federation; else None."""
        try:
            trust = self.verify(data)
        except ExchangeError as exc:
            self.log.warning("trust list on the topic refused", topic=self.topic, error=str(exc))
            return None
        if trust.federation != self.current.federation:
            self.log.warning(
                "trust list of another federation ignored", federation=trust.federation
            )
            return None
        if trust.version <= self.current.version:
            if trust.version < self.current.version:
                self.log.info(
                    "older trust list on the topic ignored",
                    version=trust.version,
                    current=self.current.version,
                )
            return None
        await accept_at_start(self.store, trust)
        tmp = self.trust_path.with_name(f".{self.trust_path.name}.{os.getpid()}.{id(self)}.tmp")
        await asyncio.to_thread(tmp.write_bytes, data)
        await asyncio.to_thread(os.replace, tmp, self.trust_path)
        previous, self.current = self.current, trust
        self.on_adopt(trust)
        self.log.info("trust list adopted", version=trust.version, previous=previous.version)
        return trust

    async def run(self) -> None:
        """Follow the topic until cancelled; retries while Kafka or the topic is missing."""
        while True:
            try:
                await self._follow()
            except ExchangeError as exc:
                if not exc.retriable:
                    raise
                self.log.debug("trust topic not readable yet", error=str(exc))
            await asyncio.sleep(self.retry_s)

    async def _follow(self) -> None:
        with kafka_errors("following the trust topic"):
            async with started(AIOKafkaConsumer(**consumer_kwargs(self.kafka))) as consumer:
                if self.topic not in await consumer.topics():
                    return  # not published yet: run() retries
                tp = TopicPartition(self.topic, 0)
                consumer.assign([tp])
                await consumer.seek_to_beginning(tp)
                while True:
                    batch = await consumer.getmany(tp, timeout_ms=1000)
                    for record in batch.get(tp, []):
                        if record.value is not None:
                            await self.offer(record.value)
