"""A fetched batch on its way through the consumer: taken, refused early, opened.

:class:`_Fetched` is one batch between the fetch and the decision; :class:`BatchOpening`
holds the methods of :class:`nodes.consumer.Consumer` that take the fetched records
(as RawRecords, refusing those over ``max_record_bytes`` or in a batch that cannot be
read before any decoding, and dropping any below the consumer's position) and open them:
in worker processes (``open_processes`` > 0, nodes.openpool), or with signatures checked
in a small thread pool, ``OPEN_CHUNK`` records per ZIP-215 batch check (which releases
the GIL), while the event loop's thread opens what already verified. With
``own_messages = "match"`` this node's own records are matched to its outbox first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import TopicPartition

from exchange.fetchguard import UndecodableBatch
from nodes.config import ConsumerConfig, OwnMessages
from nodes.intake import refusal
from nodes.metrics import Metrics
from nodes.openpool import OpenPool
from nodes.pipeline import (
    OpenedRecord,
    Opening,
    PipelineContext,
    RawRecord,
    check_raws,
    open_checked,
    open_own,
    open_raws,
    own_claim,
    own_key_ids,
    refuse_unsent,
)
from nodes.store.base import QuarantineEntry, Store

#: Records per signature-checking task, verified in one batch check: large enough for the
#: batch check's gain (256: ~5x single checks, bench zip215), small enough that the first
#: chunk is ready soon.
OPEN_CHUNK = 256


@dataclass
class _Fetched:
    """A fetched batch on its way: the records to open, those refused before decoding, the
    round's clock, and the task opening them (in the worker processes)."""

    raws: list[RawRecord]
    refused: list[tuple[RawRecord, QuarantineEntry]]
    now: datetime
    opening: asyncio.Future[Sequence[Opening | OpenedRecord]]

    def discard(self) -> None:
        """Drop it undecided (a rewind or a rebalance: its records will be read again)."""
        self.opening.cancel()


def _retrieve(future: asyncio.Future[Sequence[Opening | OpenedRecord]]) -> None:
    """Read a discarded opening's outcome, so its error is not reported as never retrieved."""
    if not future.cancelled():
        future.exception()


class BatchOpening:
    """Taking a fetched batch (:meth:`_take`) and opening it (:meth:`_open_matching_own`)."""

    # Set by Consumer.__init__.
    config: ConsumerConfig
    context: PipelineContext
    store: Store
    metrics: Metrics
    log: Any
    open_pool: OpenPool | None
    _pool: ThreadPoolExecutor | None
    _position: dict[TopicPartition, int]

    def _take(
        self, batch: Mapping[TopicPartition, Sequence[Any]], now: datetime
    ) -> tuple[list[RawRecord], list[tuple[RawRecord, QuarantineEntry]]]:
        """The fetched records as RawRecords to open, and those refused before any decoding
        (a batch that cannot be read, a record over ``max_record_bytes``), minus any below
        this consumer's position.

        None should ever be below it: every seek pauses its partitions until it applies.
        One that is all the same was read before in this life (stored or being stored):
        it is counted in ``exchange_consumer_reread_total`` and not processed twice.
        """
        raws: list[RawRecord] = []
        refused: list[tuple[RawRecord, QuarantineEntry]] = []
        cap = self.config.max_record_bytes
        position = self._position
        for tp, msgs in batch.items():
            if not msgs:
                continue
            start = position.get(tp, 0)
            if msgs[0].offset < start:
                again = [m for m in msgs if m.offset < start]
                self.metrics.reread.inc(len(again), tp.topic)
                self.log.error(
                    "records read again below the consumer's position; dropped",
                    topic=tp.topic,
                    partition=tp.partition,
                    position=start,
                    first=again[0].offset,
                    count=len(again),
                )
                msgs = [m for m in msgs if m.offset >= start]
                if not msgs:
                    continue
            position[tp] = msgs[-1].offset + 1
            for m in msgs:
                raw = RawRecord(
                    m.topic, m.partition, m.offset, m.key, m.value, m.timestamp, m.timestamp_type
                )
                value = m.value
                if value is not None and (len(value) > cap or type(value) is UndecodableBatch):
                    entry = refusal(raw, cap, now)
                    if entry is not None:
                        refused.append((raw, entry))
                        self._log_refused(entry)
                        continue
                raws.append(raw)
        return raws, refused

    def _log_refused(self, entry: QuarantineEntry) -> None:
        self.log.warning(
            "record refused before decoding; quarantined",
            topic=entry.topic,
            partition=entry.partition,
            offset=entry.offset,
            reason=entry.reason,
            detail=entry.detail,
        )

    async def _open_matching_own(
        self, raws: Sequence[RawRecord], now: datetime
    ) -> Sequence[Opening | OpenedRecord]:
        """Open a batch; with ``own_messages = "match"``, this node's own records first.

        A record naming one of this node's keys whose envelope hash is in its outbox is
        opened here without a signature check (the bytes are what it signed); one that is
        not in the outbox is verified like any other and, if it verifies, quarantined as
        ``not_in_own_outbox``: this node's key signed something it never sent.
        """
        if self.config.own_messages is not OwnMessages.MATCH:
            return await self._open(raws, now)
        ctx = self.context
        keys = own_key_ids(ctx)
        claims = {i: h for i, raw in enumerate(raws) if (h := own_claim(raw, keys)) is not None}
        if not claims:
            return await self._open(raws, now)
        sent = await self.store.outbox_envelope_hashes(list(claims.values()))
        result: list[Opening | OpenedRecord | None] = [None] * len(raws)
        rest: list[int] = []
        for i, raw in enumerate(raws):
            mine = open_own(raw, ctx, now, sent) if i in claims else None
            if mine is None:
                rest.append(i)
            else:
                result[i] = mine
        self.metrics.own_matched.inc(len(raws) - len(rest))
        if rest:
            others = await self._open([raws[i] for i in rest], now)
            for i, opening in zip(rest, others, strict=True):
                result[i] = refuse_unsent(raws[i], opening, now) if i in claims else opening
        return [r for r in result if r is not None]

    async def _open(
        self, raws: Sequence[RawRecord], now: datetime
    ) -> Sequence[Opening | OpenedRecord]:
        """Open a batch: in the worker processes when there are; otherwise signatures in the
        thread pool, a chunk per batch check (the native check releases the GIL), while this
        thread opens the chunks whose signatures already held."""
        ctx = self.context
        if self.open_pool is not None:
            return await self.open_pool.open(raws, now)
        if self._pool is None or len(raws) < 2 * OPEN_CHUNK:
            return open_raws(raws, ctx, now)
        chunks = [raws[i : i + OPEN_CHUNK] for i in range(0, len(raws), OPEN_CHUNK)]
        loop = asyncio.get_running_loop()
        pending = [loop.run_in_executor(self._pool, check_raws, c, ctx, now) for c in chunks]
        opened: list[Opening] = []
        for chunk, future in zip(chunks, pending, strict=True):
            checked = await future
            opened.extend(open_checked(r, c, ctx, now) for r, c in zip(chunk, checked, strict=True))
        return opened
