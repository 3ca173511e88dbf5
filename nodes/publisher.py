"""The publisher: outbox -> sign -> Kafka, never losing or re-signing an item.

Each round takes ``store.pending()`` (SIGNED items first, then PENDING, oldest first):

1. PENDING items get the next links of this node's chain per topic (``exchange.chain``),
   are sealed (signed; encrypted when they name recipients) with ``now`` = the clock, and
   ``store.mark_signed`` fixes their bytes and the new chain heads in one transaction -
   so a sequence number is never given twice, even across a crash. An item carries its
   payload's Avro bytes from the moment it was accepted (``payload_avro``): sealing only
   wraps and signs them (``exchange.seal.seal_encoded``). Items enqueued before the store's
   schema version 3 lack them and are sealed from their JSON payload, validated again.
2. All of them are sent with the idempotent producer (``acks=all``): every ``send()`` first,
   then one ``gather`` of the delivery futures; acknowledged ids are ``mark_sent``.

Within one life an item Kafka acknowledged is never sent again: when ``send()`` fails
part-way through a batch, the items queued before it are waited for and marked SENT (only
the rest stays SIGNED); when the store cannot mark acknowledged ids SENT, they are kept in
memory and marked before the next round reads or sends anything.

After a crash between 1 and 2 the SIGNED items are re-sent with their exact stored bytes.
If the first attempt did reach Kafka, receivers get the same message id twice: the first
is stored, the second quarantined as ``replayed`` (harmless, and visible to auditors).
When Kafka is down, rounds fail with TransientError and the loop retries with the node's
retry policy (:mod:`nodes.retry`, ``[retry]``: capped exponential backoff, full jitter),
logging once per state change. The node wakes the loop when it enqueues; other processes'
enqueues (the CLI) are found by polling every ``poll_interval_ms``.

This module holds the sending side (the loop, rounds, the producer, acknowledgements);
the sealing side (step 1, chain links, re-sealing stale items) is in
nodes.publisher_sealing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError

from exchange.bus import KafkaSettings, kafka_errors, producer_kwargs, start_or_close, stop_quietly
from exchange.chain import ChainState
from exchange.errors import AuthenticationError, ExchangeError, TransientError
from exchange.ids import NodeId
from exchange.keys import SigningKey
from exchange.models import Handling
from exchange.trust import TrustList

# Clock, utc_now and Backoff moved to nodes.clock / nodes.retry; re-exported (``X as X``)
# so that ``from nodes.publisher import Backoff, Clock, utc_now`` still works.
from nodes.clock import Clock as Clock
from nodes.clock import utc_now as utc_now
from nodes.config import PublisherConfig
from nodes.logging import get_logger
from nodes.metrics import Metrics
from nodes.publisher_sealing import BACKLOG_BATCHES, Sealing, _Sealing
from nodes.retry import Backoff as Backoff
from nodes.store.base import OutboxItem, OutboxStatus, Store

__all__ = ["BACKLOG_BATCHES", "Backoff", "Clock", "Publisher", "utc_now"]

#: A batch: its items, those already SIGNED, and the sealing of its PENDING ones.
_Batch = tuple[list[OutboxItem], list[OutboxItem], asyncio.Future[_Sealing] | None]


class Publisher(Sealing):
    """Drains the outbox to Kafka. ``run()`` until cancelled or :meth:`stop`."""

    def __init__(
        self,
        *,
        node: NodeId,
        store: Store,
        kafka: KafkaSettings,
        signer: SigningKey,
        trust: TrustList,
        config: PublisherConfig,
        metrics: Metrics | None = None,
        clock: Clock = utc_now,
        producer_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.node = node
        self.store = store
        self.kafka = kafka
        self.signer = signer
        self.trust = trust
        self.config = config
        self.metrics = metrics or Metrics()
        self.clock = clock
        #: Builds the Kafka producer (an AIOKafkaProducer; unit tests hand in a fake one).
        self.producer_factory = producer_factory or (
            lambda: AIOKafkaProducer(**producer_kwargs(self.kafka))
        )
        self.log = get_logger(node=node, component="publisher")
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._stopping = False
        self._producer: Any = None  # an AIOKafkaProducer, or what producer_factory built
        self._chain: ChainState | None = None
        self._in_flight: tuple[list[OutboxItem], list[asyncio.Future[Any]]] | None = None
        #: Ids Kafka acknowledged that the store could not mark SENT yet: marked before
        #: anything else is read or sent, so they are never sent again in this life.
        self._acknowledged: list[int] = []
        self._backlog: deque[OutboxItem] = deque()  # fetched, not yet handled, in outbox order
        self._early: _Batch | None = None  # the next batch, sealing ahead while one is sent
        #: Look for SIGNED items too old to send (at start, and after each failed round).
        self._check_stale = True
        self._handlings: dict[tuple[tuple[str, Any], ...], Handling] = {}
        self.alive = False
        self.last_error: str | None = None

    def wake(self) -> None:
        """Publish now rather than at the next poll (something was enqueued)."""
        self._wake.set()

    def stop(self) -> None:
        """Finish the current round, then return from :meth:`run`."""
        self._stopping = True
        self._stop.set()
        self._wake.set()

    async def run(self) -> None:
        backoff = Backoff(self.config.backoff_initial_ms / 1000, self.config.backoff_max_ms / 1000)
        poll_s = self.config.poll_interval_ms / 1000
        self.alive = True
        try:
            while not self._stopping:
                self._wake.clear()  # an enqueue from now on wakes the pause below
                try:
                    count = await self._round()
                    if count < self.config.batch_size:
                        await self._flush()  # nothing more waiting: finish before pausing
                except AuthenticationError:
                    raise  # refused credentials: no retry fixes them (fatal to the supervisor)
                except Exception as exc:  # ExchangeError, or a bug: log, back off, retry
                    if not isinstance(exc, ExchangeError):
                        self.log.exception("publish round failed unexpectedly")
                    elif not exc.retriable:
                        self.log.error("publish failed", error=str(exc))
                    await self._failed(str(exc))
                    await self._sleep(backoff.next_delay(), self._stop)  # enqueues do not cut it
                    continue
                if backoff.failures:
                    self.log.info("publishing again", after_failures=backoff.failures)
                    backoff.reset()
                    self.last_error = None
                if count >= self.config.batch_size:
                    continue  # more waiting: no pause
                await self._sleep(poll_s, self._wake)
            with contextlib.suppress(ExchangeError):
                await self._mark_acknowledged()
                await self._flush()  # stopping: what was sent gets marked SENT
        finally:
            self.alive = False
            self._in_flight = None  # unacknowledged items stay SIGNED: re-sent next start
            await self._drop_early()  # sealed ahead, never stored: stays PENDING
            await self._close_producer()

    async def _sleep(self, seconds: float, until: asyncio.Event) -> None:
        if self._stopping:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(until.wait(), seconds)

    async def _failed(self, error: str) -> None:
        self.metrics.publish_errors.inc()
        self._check_stale = True
        await self._drop_early()
        self._backlog.clear()  # the store says again what is left, after the pause
        if error != self.last_error:  # once per state change, not once per retry
            self.log.warning("publishing paused, will retry", error=error)
            with contextlib.suppress(Exception):  # the store may be what failed
                await self.store.set_status(
                    "last_error", f"{self.clock().isoformat()} publisher: {error}"
                )
        self.last_error = error
        await self._close_producer()

    async def _ensure_producer(self) -> Any:
        if self._producer is None:
            producer = self.producer_factory()
            with kafka_errors("starting the producer"):  # kept across rounds: closed if not started
                await start_or_close(producer)
            self._producer = producer
        return self._producer

    async def _abandon_producer(self, late: int) -> None:
        """Stop a producer whose sends are not acknowledged within ``ack_timeout_s`` (the
        broker is away), failing them: an idempotent producer retries until it succeeds,
        and an item appended only after the outage would carry a time its receivers refuse
        (backdated). Its items stay SIGNED and are signed again if they wait too long
        (:meth:`_reseal_stale`)."""
        producer, self._producer = self._producer, None
        self.log.warning(
            "sends not acknowledged in time; producer stopped",
            late=late,
            ack_timeout_s=self.config.ack_timeout_s,
        )
        if producer is None:
            return
        # aiokafka's internals, as narrowly as can be: cancel its background sender (so none
        # of its batches goes out later), then fail the batches it held (a cancelled sender
        # leaves them pending), then close it.
        sender = getattr(producer, "_sender", None)
        if sender is not None:
            with contextlib.suppress(Exception):
                await sender.close()
        accumulator = getattr(producer, "_message_accumulator", None)
        if accumulator is not None:
            accumulator.fail_all(
                KafkaTimeoutError(f"not acknowledged within {self.config.ack_timeout_s} s")
            )
        await stop_quietly(producer)

    async def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await stop_quietly(producer)  # closes it even when this task is cancelled
            except Exception as exc:  # closing a broken producer must not mask the real error
                self.log.debug("producer stop failed", error=str(exc))

    async def _round(self) -> int:
        """Sign the next batch while the previous batch's acknowledgements arrive, then send it.

        Only this task calls the store, one call at a time; sealing runs in a worker thread
        meanwhile. When more is already fetched, the batch after this one starts sealing as
        soon as this one is sealed, so it overlaps storing and sending this one; its links
        continue the chain in memory and are only stored after this batch's, and a failure
        drops it (its items stay PENDING, the chain is reloaded from the store). Returns how
        many items this round sent (now in flight).
        """
        await self._mark_acknowledged()  # before reading the outbox: those are not pending
        if self._check_stale and self._in_flight is None and self._early is None:
            await self._reseal_stale()
        early, self._early = self._early, None
        items, ready, sealing = early if early is not None else await self._next_batch()
        try:
            await self._flush()
        except BaseException:
            await self._drop(sealing)
            raise
        if sealing is not None:
            sealed = await sealing
            if self._backlog and not self._stopping:
                self._early = await self._next_batch()
            try:
                ready.extend(await self._keep_signed(sealed))
            except BaseException:
                await self._drop_early()
                raise
        if not items:
            self.metrics.outbox_depth.set(0)
        if not ready:
            return 0
        producer = await self._ensure_producer()
        futures: list[asyncio.Future[Any]] = []
        try:
            with kafka_errors("publishing"):
                for item in ready:
                    futures.append(
                        await producer.send(item.topic, value=item.value, key=item.key.encode())
                    )
        except Exception as exc:
            # What was queued before the failing send() still goes out (the producer's
            # sender, or its flush on close): wait for those acknowledgements and mark them
            # SENT, or the next round sends them again. Only the rest stays SIGNED.
            await self._drop_early()
            queued = len(futures)
            if queued:
                self._in_flight = (ready[:queued], futures)
                with contextlib.suppress(TransientError):  # their failures are recorded
                    await self._flush()
            if isinstance(exc, ExchangeError):
                await self.store.record_publish_error([i.id for i in ready[queued:]], str(exc))
            raise
        self._in_flight = (ready, futures)
        return len(ready)

    async def _mark_acknowledged(self) -> None:
        """Mark SENT the ids Kafka acknowledged whose marking failed (see :meth:`_flush`)."""
        if not self._acknowledged:
            return
        await self.store.mark_sent(self._acknowledged, self.clock())
        self.metrics.published.inc(len(self._acknowledged))
        self._acknowledged = []

    async def _next_batch(self) -> _Batch:
        """The next batch from the backlog (read from the store when empty), its SIGNED items,
        and its PENDING items being sealed in a worker thread."""
        if not self._backlog:
            # Several batches at once: fewer reads, and none re-reads the batch in flight (all
            # SIGNED, the newest of them when this fetch is needed: the backlog is empty).
            in_flight = (
                max((i.id for i in self._in_flight[0]), default=None) if self._in_flight else None
            )
            self._backlog.extend(
                await self.store.pending(
                    self.config.batch_size * BACKLOG_BATCHES, signed_after=in_flight
                )
            )
        items = [
            self._backlog.popleft() for _ in range(min(self.config.batch_size, len(self._backlog)))
        ]
        ready = [i for i in items if i.status is OutboxStatus.SIGNED]
        pending = [i for i in items if i.status is OutboxStatus.PENDING]
        if not pending:
            return items, ready, None
        chain = await self._chain_state(sorted({i.topic for i in pending}))
        sealing = asyncio.ensure_future(
            asyncio.to_thread(self._seal_all, pending, chain, self.clock())
        )
        return items, ready, sealing

    async def _drop(self, sealing: asyncio.Future[_Sealing] | None) -> None:
        """Forget a sealing whose links were never stored (after its thread finished), and
        the batch sealed ahead of it: the chain and the backlog are read again from the store,
        so the dropped items are still sealed first."""
        if sealing is not None:
            await asyncio.wait([sealing])
            self._chain = None
            self._backlog.clear()
        await self._drop_early()

    async def _drop_early(self) -> None:
        """Forget the batch sealed ahead (never stored: its items stay PENDING)."""
        early, self._early = self._early, None
        if early is None:
            return
        self._backlog.clear()  # read again from the store, oldest first
        if early[2] is not None:
            await asyncio.wait([early[2]])
        self._chain = None

    async def _flush(self) -> int:
        """Wait for the in-flight batch's acknowledgements and mark those items SENT."""
        flight, self._in_flight = self._in_flight, None
        if flight is None:
            return 0
        items, futures = flight
        try:
            with kafka_errors("publishing"):
                late: set[asyncio.Future[Any]] = set()
                if futures:
                    _, late = await asyncio.wait(futures, timeout=self.config.ack_timeout_s)
                    if late:  # the idempotent producer would retry them for ever
                        await self._abandon_producer(len(late))
                results = (
                    [_outcome(f) for f in futures]
                    if late
                    else await asyncio.gather(*futures, return_exceptions=True)
                )
        except TransientError as exc:
            await self.store.record_publish_error([i.id for i in items], str(exc))
            raise
        sent = [
            i.id for i, r in zip(items, results, strict=True) if not isinstance(r, BaseException)
        ]
        failed = [
            (i, r) for i, r in zip(items, results, strict=True) if isinstance(r, BaseException)
        ]
        if sent:
            try:
                await self.store.mark_sent(sent, self.clock())
            except BaseException:
                self._acknowledged.extend(sent)  # on Kafka: never send them again
                raise
            self.metrics.published.inc(len(sent))
        if failed:
            error = f"{type(failed[0][1]).__name__}: {failed[0][1]}"
            await self.store.record_publish_error([i.id for i, _ in failed], error)
            raise TransientError(f"{len(failed)} of {len(items)} sends failed: {error}")
        self.log.debug("published", count=len(sent))
        return len(sent)


def _outcome(future: asyncio.Future[Any]) -> Any:
    """A delivery future's result or exception; one still pending counts as a timeout."""
    if not future.done():
        return TimeoutError("not acknowledged in time")
    if future.cancelled():
        return asyncio.CancelledError()
    return future.exception() or future.result()
