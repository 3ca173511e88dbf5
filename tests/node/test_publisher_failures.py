"""The publisher's failure paths, fast: a fake Kafka producer (scripted acknowledgements and
failures) in front of a real SQLite outbox. Nothing is lost, a sequence number is never
burnt or reused, and within one life no item reaches Kafka twice once Kafka acknowledged it.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError

from exchange.bus import KafkaSettings
from exchange.errors import TransientError
from exchange.ids import NodeId
from exchange.seal import open_record
from exchange.topics import MessageType
from nodes.config import PublisherConfig
from nodes.inbound import build_item
from nodes.publisher import Publisher
from nodes.store.base import OutboxStatus
from nodes.store.sqlite import SqliteStore
from tests.helpers.federation import Federation, alert_data


class FakeProducer:
    """Stands in for AIOKafkaProducer: ``send()`` number n (from 0) raises when n is in
    ``raise_on``, returns a failed future when n is in ``fail_on``, else an acknowledged
    one. ``attempts`` holds every value handed over, ``acknowledged`` the ones Kafka took."""

    def __init__(
        self,
        *,
        raise_on: frozenset[int] = frozenset(),
        fail_on: frozenset[int] = frozenset(),
        hang_on: frozenset[int] = frozenset(),
    ) -> None:
        self.raise_on = set(raise_on)
        self.fail_on = set(fail_on)
        self.hang_on = set(hang_on)  # never acknowledged nor failed (the broker went away)
        self.calls = 0
        self.attempts: list[bytes] = []
        self.acknowledged: list[bytes] = []
        self.keys: dict[bytes, bytes | None] = {}  # value -> the record key it was sent with

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future[Any]:
        n, self.calls = self.calls, self.calls + 1
        if n in self.raise_on:
            raise KafkaTimeoutError(f"send {n}: no metadata for {topic}")
        self.attempts.append(value)
        self.keys[value] = key
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if n in self.hang_on:
            return future
        if n in self.fail_on:
            future.set_exception(KafkaTimeoutError(f"send {n}: batch expired"))
        else:
            self.acknowledged.append(value)
            future.set_result(("record metadata", n))
        return future


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """FR's outbox in a real SQLite file (short busy timeout: a locked store fails fast)."""
    outbox = SqliteStore(f"sqlite:///{tmp_path / 'fr.db'}", busy_timeout=0.2)
    await outbox.open()
    try:
        yield outbox
    finally:
        await outbox.close()


async def enqueue(store: SqliteStore, fed: Federation, count: int) -> list[int]:
    now = datetime.now(UTC)
    items = [
        build_item(
            MessageType.OFFENCE_ALERT.value,
            alert_data(f"shop {n}", observed_at=now),
            handling={"tlp": "GREEN", "code": "H0"},
            node=NodeId("FR"),
            prefix=fed.prefix,
            trust=fed.trust,
            now=now,
        )
        for n in range(count)
    ]
    return await store.enqueue(items)


def publisher(
    store: SqliteStore, fed: Federation, producer: FakeProducer, batch_size: int = 100
) -> Publisher:
    return Publisher(
        node=NodeId("FR"),
        store=store,
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"),
        signer=fed.signer("FR"),
        trust=fed.trust,
        config=PublisherConfig(
            batch_size=batch_size, backoff_initial_ms=1, backoff_max_ms=5, poll_interval_ms=10
        ),
        producer_factory=lambda: producer,
    )


def sequences(fed: Federation, producer: FakeProducer) -> list[tuple[int, bytes | None, bytes]]:
    """(sequence, previous hash, own hash) of each acknowledged record, opened and verified
    as a reader would."""
    out = []
    for value in producer.acknowledged:
        opened = open_record(
            value,
            topic=fed.topic(),
            key=producer.keys[value],
            trust=fed.trust,
            now=datetime.now(UTC),
            reader=NodeId("DE"),
            decryption_key=None,
        )
        envelope = opened.verified.envelope
        out.append((envelope.sequence, envelope.previous_hash, opened.verified.envelope_hash))
    return out


def assert_one_chain(fed: Federation, producer: FakeProducer, count: int) -> None:
    """Kafka acknowledged ``count`` distinct records forming FR's chain 1..count."""
    chain = sorted(sequences(fed, producer))
    assert [s for s, _, _ in chain] == list(range(1, count + 1))
    for (_, _, before), (_, previous, _) in itertools.pairwise(chain):
        assert previous == before


async def run_until_drained(pub: Publisher, store: SqliteStore, within_s: float = 10) -> None:
    """Run the publisher's loop until the outbox is empty (polled, bounded), then stop it."""
    task = asyncio.create_task(pub.run())
    deadline = time.monotonic() + within_s
    try:
        while time.monotonic() < deadline:
            if await store.outbox_depth() == 0:
                break
            await asyncio.sleep(0.01)
        assert await store.outbox_depth() == 0
    finally:
        pub.stop()
        await asyncio.wait_for(task, 10)


@contextmanager
def locked(store: SqliteStore) -> Iterator[None]:
    """Another process holds the store's write lock (writes fail with "database is locked")."""
    other = sqlite3.connect(store.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


async def test_partial_acknowledgements_keep_the_failed_items_signed_and_resend_them(
    store: SqliteStore, federation: Federation
) -> None:
    """When some delivery futures fail, the acknowledged items are marked SENT (once), the
    failed ones stay SIGNED with the error and are re-sent with their exact bytes."""
    ids = await enqueue(store, federation, 4)
    producer = FakeProducer(fail_on=frozenset({1, 3}))
    pub = publisher(store, federation, producer)
    assert await pub._round() == 4
    with pytest.raises(TransientError, match="2 of 4 sends failed"):
        await pub._flush()
    left = await store.pending(10)
    assert [i.id for i in left] == [ids[1], ids[3]]
    assert {i.status for i in left} == {OutboxStatus.SIGNED}
    assert all(i.attempts == 1 and "batch expired" in (i.last_error or "") for i in left)
    assert pub.metrics.published.value() == 2
    first_bytes = [i.value for i in left]
    await pub._failed("2 of 4 sends failed")
    assert await pub._round() == 2
    assert await pub._flush() == 2
    assert producer.attempts[4:] == first_bytes  # the same bytes, not re-signed
    assert await store.outbox_depth() == 0
    assert pub.metrics.published.value() == 4
    assert len(producer.acknowledged) == len(set(producer.acknowledged)) == 4
    assert_one_chain(federation, producer, 4)


async def test_a_send_raising_mid_batch_never_sends_the_queued_items_twice(
    store: SqliteStore, federation: Federation
) -> None:
    """send() raising part-way through a batch: the items queued before it are delivered
    and marked SENT; only the rest are sent again (found by this test: they all stayed
    SIGNED and the whole batch was sent a second time)."""
    await enqueue(store, federation, 5)
    producer = FakeProducer(raise_on=frozenset({2}))
    await run_until_drained(publisher(store, federation, producer), store)
    assert len(producer.acknowledged) == 5
    assert len(set(producer.acknowledged)) == 5, "an acknowledged item was sent again"
    assert_one_chain(federation, producer, 5)


async def test_a_store_failing_to_mark_sent_does_not_resend_what_kafka_acknowledged(
    store: SqliteStore, federation: Federation
) -> None:
    """Kafka acknowledges a batch but the store cannot mark it SENT (locked by another
    process): the ids are kept and marked first thing next round, never sent again."""
    await enqueue(store, federation, 3)
    producer = FakeProducer()
    pub = publisher(store, federation, producer)
    assert await pub._round() == 3
    with locked(store), pytest.raises(TransientError, match="locked"):
        await pub._flush()
    await pub._failed("database is locked")
    assert await pub._round() == 0
    await pub._flush()
    assert await store.outbox_depth() == 0
    assert len(producer.attempts) == 3, "an acknowledged item was sent again"
    assert pub.metrics.published.value() == 3


async def test_a_failed_round_drops_the_batch_sealed_ahead_without_burning_sequences(
    store: SqliteStore, federation: Federation
) -> None:
    """The batch sealed ahead while a failing batch was in flight is dropped (its items stay
    PENDING, never stored as signed); sealed again later, the chain has no gap or fork."""
    await enqueue(store, federation, 6)
    producer = FakeProducer(fail_on=frozenset({0}))
    pub = publisher(store, federation, producer, batch_size=2)
    assert await pub._round() == 2  # batch A in flight; batch B sealed ahead
    assert pub._early is not None
    with pytest.raises(TransientError):
        await pub._round()  # A's acknowledgement failed: B, sealed ahead, is dropped
    assert pub._early is None
    statuses = [i.status for i in await store.pending(10)]
    assert statuses == [OutboxStatus.SIGNED] + [OutboxStatus.PENDING] * 4
    await pub._failed("A failed")
    await run_until_drained(pub, store)
    assert len(set(producer.acknowledged)) == len(producer.acknowledged) == 6
    assert_one_chain(federation, producer, 6)
    head = await store.chain_head(federation.topic())
    assert head is not None
    assert head.sequence == 6
    assert head.envelope_hash == max(sequences(federation, producer), key=lambda s: s[0])[2]


async def test_drop_early_after_a_send_failure_leaves_the_items_pending(
    store: SqliteStore, federation: Federation
) -> None:
    """A send failure while a batch is sealed ahead drops that batch: its items stay PENDING
    with no signing fields, and the chain continues from the store."""
    await enqueue(store, federation, 4)
    producer = FakeProducer(raise_on=frozenset({0}))
    pub = publisher(store, federation, producer, batch_size=2)
    with pytest.raises(TransientError, match="no metadata"):
        await pub._round()
    assert pub._early is None
    left = await store.pending(10)
    assert [i.status for i in left] == [OutboxStatus.SIGNED] * 2 + [OutboxStatus.PENDING] * 2
    assert all(i.value is None and i.sequence is None for i in left[2:])
    await pub._failed("no metadata")
    await run_until_drained(pub, store)
    assert_one_chain(federation, producer, 4)


async def test_items_held_back_longer_than_the_reseal_time_are_signed_again_in_place(
    store: SqliteStore, federation: Federation
) -> None:
    """Items SIGNED before an outage that outlasts reseal_after_s are signed again with a
    fresh created_at before they are sent (receivers would refuse the old one as
    backdated): same message ids and sequences, and the chain still links through the
    item that had gone out before the outage."""
    now = [datetime.now(UTC)]
    ids = await enqueue(store, federation, 4)
    producer = FakeProducer(fail_on=frozenset({1, 2, 3}))  # the outage starts after one
    pub = publisher(store, federation, producer)
    pub.clock = lambda: now[0]
    assert await pub._round() == 4
    with pytest.raises(TransientError):
        await pub._flush()
    held = {i.id: i for i in await store.pending(10)}
    assert sorted(held) == ids[1:]
    await pub._failed("the broker is away")
    now[0] += timedelta(seconds=pub.config.reseal_after_s + 1)  # the outage goes on
    await run_until_drained(pub, store)
    resent = producer.acknowledged[1:]
    assert len(resent) == 3
    assert not set(resent) & {i.value for i in held.values()}, "sent with the old time"
    opened = [
        open_record(
            v,
            topic=federation.topic(),
            key=producer.keys[v],
            trust=federation.trust,
            now=now[0],
            reader=NodeId("DE"),
            decryption_key=None,
        ).verified.envelope
        for v in resent
    ]
    assert sorted(e.message_id for e in opened) == sorted(i.message_id for i in held.values())
    assert sorted(e.sequence for e in opened) == [2, 3, 4]
    assert {e.created_at for e in opened} == {
        now[0].replace(microsecond=now[0].microsecond // 1000 * 1000)
    }
    assert_one_chain(federation, producer, 4)
    head = await store.chain_head(federation.topic())
    assert head is not None
    assert head.sequence == 4


async def test_items_signed_recently_are_resent_with_their_exact_bytes_after_a_failure(
    store: SqliteStore, federation: Federation
) -> None:
    """A failed round shorter than reseal_after_s re-sends SIGNED items byte for byte (a
    copy that did reach Kafka is then a harmless replay, never a fork)."""
    now = [datetime.now(UTC)]
    await enqueue(store, federation, 2)
    producer = FakeProducer(fail_on=frozenset({0, 1}))
    pub = publisher(store, federation, producer)
    pub.clock = lambda: now[0]
    assert await pub._round() == 2
    with pytest.raises(TransientError):
        await pub._flush()
    first = list(producer.attempts)
    await pub._failed("a short outage")
    now[0] += timedelta(seconds=pub.config.reseal_after_s - 1)
    await run_until_drained(pub, store)
    assert producer.acknowledged == first


async def test_sends_never_acknowledged_stop_the_producer_and_stay_signed(
    store: SqliteStore, federation: Federation
) -> None:
    """Deliveries neither acknowledged nor failed within ack_timeout_s (an idempotent
    producer retries for ever while the broker is away) are given up: the acknowledged ones
    are SENT, the others stay SIGNED for the next round, and the producer is replaced."""
    ids = await enqueue(store, federation, 3)
    producer = FakeProducer(hang_on=frozenset({1}))
    pub = publisher(store, federation, producer)
    pub.config = pub.config.model_copy(update={"ack_timeout_s": 0.05})
    assert await pub._round() == 3
    with pytest.raises(TransientError, match="1 of 3 sends failed"):
        await pub._flush()
    assert pub._producer is None
    left = await store.pending(10)
    assert [(i.id, i.status) for i in left] == [(ids[1], OutboxStatus.SIGNED)]
    assert pub.metrics.published.value() == 2
