"""The publisher's sealing side: outbox items -> signed records, in chain order.

:class:`Sealing` holds the methods of :class:`nodes.publisher.Publisher` that turn
PENDING outbox items into SIGNED ones: give each the next link of this node's chain on
its topic (``exchange.chain``; heads read from the store once, then kept in memory), seal
it (``exchange.seal.seal_encoded`` on the payload's Avro bytes kept since it was
accepted; ``exchange.seal.seal`` on the JSON payload of items enqueued before the store's
schema version 3), and store the bytes and the new chain heads in one transaction
(``store.mark_signed``). Also signing again, with a fresh time, SIGNED items held back
longer than ``reseal_after_s`` (:meth:`Sealing._reseal_stale`). Sealing runs in a worker
thread; only the publisher's task calls the store.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from exchange.chain import ChainState, Link
from exchange.codec import decode_signed
from exchange.envelope import decode_envelope
from exchange.errors import ExchangeError
from exchange.ids import NodeId, Topic
from exchange.keys import SigningKey
from exchange.models import Handling, parse_payload
from exchange.seal import Sealed, seal, seal_encoded
from exchange.topics import MessageType
from exchange.trust import TrustList
from nodes.clock import Clock
from nodes.config import PublisherConfig
from nodes.store.base import ChainHead, OutboxItem, OutboxStatus, Store

#: How many batches one read of the outbox fetches.
BACKLOG_BATCHES = 4
#: Distinct handling objects kept parsed (a node uses a handful).
_HANDLING_CACHE = 256
#: Sealed items, the new chain heads, and the items that could not be sealed (with why).
_Sealing = tuple[list[OutboxItem], list[ChainHead], list[tuple[OutboxItem, str]]]


class Sealing:
    """Sealing PENDING outbox items (and re-sealing stale SIGNED ones) for the publisher."""

    # Set by Publisher.__init__.
    node: NodeId
    store: Store
    signer: SigningKey
    trust: TrustList
    config: PublisherConfig
    clock: Clock
    log: Any
    _chain: ChainState | None
    _check_stale: bool
    _backlog: deque[OutboxItem]
    _handlings: dict[tuple[tuple[str, Any], ...], Handling]

    async def _chain_state(self, topics: Sequence[str]) -> ChainState:
        if self._chain is None:
            self._chain = ChainState()
        known = self._chain.snapshot()
        last: dict[Topic, tuple[int, bytes]] = dict(known)
        for topic in topics:
            if Topic(topic) in known:
                continue
            head = await self.store.chain_head(topic)
            if head is not None and head.sequence > 0 and head.envelope_hash is not None:
                last[Topic(topic)] = (head.sequence, head.envelope_hash)
        if len(last) != len(known):
            self._chain = ChainState(last)
        return self._chain

    async def _reseal_stale(self) -> None:
        """Sign again, with a fresh time, the SIGNED items signed more than
        ``reseal_after_s`` ago: receivers judge ``created_at`` against the broker's append
        time, so items held back by an outage longer than their skew would be refused as
        backdated, and lost to every member. Same message id, sequence and place in the
        chain (each previous hash is its predecessor's, re-signed or not); only SIGNED items,
        never acknowledged, so receivers store each once whichever copy reaches them. Runs
        at start and after a failed round, when nothing is in flight or sealed ahead.
        """
        self._check_stale = False
        now = self.clock()
        cutoff = now - timedelta(seconds=self.config.reseal_after_s)
        fetched = await self.store.pending(self.config.batch_size * BACKLOG_BATCHES)
        stale = sorted(
            (i for i in fetched if i.status is OutboxStatus.SIGNED and _sealed_at(i) < cutoff),
            key=lambda i: (i.topic, i.sequence or 0),
        )
        if not stale:
            return
        places = {(i.topic, i.sequence) for i in stale}
        before: dict[tuple[str, int], bytes | None] = {}
        for item in stale:
            seq = item.sequence or 0
            if seq > 1 and (item.topic, seq - 1) not in places:
                before[(item.topic, seq - 1)] = await self.store.envelope_hash_at(
                    item.topic, seq - 1
                )
        resealed = await asyncio.to_thread(self._reseal_all, stale, before, now)
        await self.store.reseal(resealed)
        self._chain = None  # a head may have a new hash: read the heads again
        self._backlog.clear()
        self.log.warning(
            "items signed before an outage signed again with a fresh time",
            count=len(resealed),
            signed_before=cutoff.isoformat(),
        )

    def _reseal_all(
        self,
        stale: Sequence[OutboxItem],
        before: Mapping[tuple[str, int], bytes | None],
        now: datetime,
    ) -> list[OutboxItem]:
        hashes = dict(before)
        done: list[OutboxItem] = []
        for item in stale:  # by topic, then sequence: each predecessor is ready first
            seq = item.sequence or 0
            link = Link(seq, hashes.get((item.topic, seq - 1)) if seq > 1 else None)
            sealed = self._seal_one(item, Topic(item.topic), link, now)
            hashes[(item.topic, seq)] = sealed.envelope_hash
            done.append(_signed(item, sealed, seq))
        return done

    async def sign_pending(self) -> list[OutboxItem]:
        """Sign the PENDING items without sending them (what a crash before sending leaves)."""
        items = await self.store.pending(self.config.batch_size)
        pending = [i for i in items if i.status is OutboxStatus.PENDING]
        if not pending:
            return []
        chain = await self._chain_state(sorted({i.topic for i in pending}))
        return await self._keep_signed(
            await asyncio.to_thread(self._seal_all, pending, chain, self.clock())
        )

    async def _keep_signed(self, sealing: _Sealing) -> list[OutboxItem]:
        """Store the sealed items and chain heads (SIGNED); log the ones that cannot be sealed."""
        done, heads, refused = sealing
        if refused:
            for item, error in refused:
                self.log.error(
                    "outbox item cannot be sealed; left pending",
                    outbox_id=item.id,
                    topic=item.topic,
                    error=error,
                )
            await self.store.record_publish_error([i.id for i, _ in refused], refused[0][1])
        if done:
            try:
                await self.store.mark_signed(done, heads)
            except BaseException:
                self._chain = None  # reload the heads from the store next round
                raise
        return done

    def _seal_all(
        self, pending: Sequence[OutboxItem], chain: ChainState, now: datetime
    ) -> _Sealing:
        done: list[OutboxItem] = []
        refused: list[tuple[OutboxItem, str]] = []
        touched: dict[str, ChainHead] = {}
        for item in pending:
            topic = Topic(item.topic)
            try:
                sealed = self._seal_one(item, topic, chain.next(topic), now)
            except (ExchangeError, ValueError) as exc:
                refused.append((item, str(exc)))
                continue
            link = chain.advance(topic, sealed.envelope_hash)
            touched[item.topic] = ChainHead(item.topic, link.sequence, sealed.envelope_hash)
            done.append(_signed(item, sealed, link.sequence))
        return done, list(touched.values()), refused

    def _seal_one(self, item: OutboxItem, topic: Topic, link: Link, now: datetime) -> Sealed:
        handling = self._handling(item.handling)
        recipients = [NodeId(r) for r in item.recipients]
        if item.payload_avro is not None:  # validated and encoded when it was accepted
            return seal_encoded(
                item.payload_avro,
                MessageType(item.message_type),
                signer=self.signer,
                sender=self.node,
                topic=topic,
                link=link,
                handling=handling,
                key=item.key,
                recipients=recipients,
                trust=self.trust,
                now=now,
                message_id=item.message_id,
            )
        # enqueued before the outbox kept Avro bytes (schema version < 3): validate the JSON
        payload = parse_payload(MessageType(item.message_type), item.payload, now=now)
        return seal(
            payload,
            signer=self.signer,
            sender=self.node,
            topic=topic,
            link=link,
            handling=handling,
            recipients=recipients,
            trust=self.trust,
            now=now,
            message_id=item.message_id,
            key=item.key,
        )

    def _handling(self, data: Mapping[str, Any]) -> Handling:
        """``data`` as a Handling, parsed once per distinct value (ValueError when invalid)."""
        try:
            key = tuple(data.items())
            return self._handlings[key]
        except KeyError:
            pass
        except TypeError:  # an unhashable value: not cacheable, validated below
            return Handling.model_validate(dict(data))
        handling = Handling.model_validate(dict(data))
        if len(self._handlings) >= _HANDLING_CACHE:
            self._handlings.clear()
        self._handlings[key] = handling
        return handling


def _sealed_at(item: OutboxItem) -> datetime:
    """The ``created_at`` a SIGNED item was sealed with (read from its envelope)."""
    assert item.value is not None
    return decode_envelope(decode_signed(item.value)[0]).created_at


def _signed(item: OutboxItem, sealed: Sealed, sequence: int) -> OutboxItem:
    """``item`` SIGNED as ``sealed`` (built directly: dataclasses.replace costs several times
    more, once per item on the hot path)."""
    return OutboxItem(
        id=item.id,
        topic=item.topic,
        key=item.key,
        message_type=item.message_type,
        payload=item.payload,
        handling=item.handling,
        recipients=item.recipients,
        created_at=item.created_at,
        status=OutboxStatus.SIGNED,
        message_id=sealed.envelope.message_id,
        sequence=sequence,
        value=sealed.value,
        envelope_hash=sealed.envelope_hash,
        attempts=item.attempts,
        last_error=item.last_error,
        payload_avro=item.payload_avro,
    )
