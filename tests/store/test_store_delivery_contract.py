"""The store contract for outbound delivery (the connector queue and cursors) and for outbox
message ids, run against SQLite and a real PostgreSQL alike."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from exchange.uuid7 import uuid7
from nodes.store.base import (
    AuditAction,
    AuditEvent,
    ChainHead,
    EventKind,
    OutboxStatus,
    RecordState,
    Store,
    StoreError,
    open_store,
)
from tests.store.conftest import (
    NOW,
    TOPIC,
    Backend,
    commit,
    make_quarantine,
    make_record,
    outbox_item,
    retraction,
    signed,
)

OTHER_TOPIC = "ncp.blacklist.v1"


def disclosure(n: int) -> AuditEvent:
    return AuditEvent(
        at=NOW + timedelta(seconds=n),
        action=AuditAction.DISCLOSURE,
        actor="node:FR/outbound",
        justification="onward sharing allowed by the records' handling codes",
        recipients=("connector:case",),
        details={"message_ids": [f"id-{n}"]},
    )


async def kinds_and_ids(store: Store, after: int = 0) -> list[tuple[EventKind, object]]:
    return [(e.kind, e.message_id) for e in await store.connector_events(after, 100)]


# --- the queue ----------------------------------------------------------------------------
async def test_commit_batch_queues_one_delivery_per_stored_record(store: Store) -> None:
    """Each record inserted gets a DELIVER event in batch order carrying the stored record;
    duplicates and quarantine-only batches queue nothing."""
    first = make_record(offset=0)
    await commit(store, records=[first])
    second = make_record(offset=1, topic=OTHER_TOPIC)
    replay = make_record(offset=2, message_id=first.message_id)
    third = make_record(offset=3)
    await commit(store, records=[second, replay, third], quarantined=[make_quarantine(offset=9)])
    await commit(store, quarantined=[make_quarantine(offset=10)])
    events = await store.connector_events(0, 100)
    assert [(e.kind, e.message_id, e.topic) for e in events] == [
        (EventKind.DELIVER, first.message_id, TOPIC),
        (EventKind.DELIVER, second.message_id, OTHER_TOPIC),
        (EventKind.DELIVER, third.message_id, TOPIC),
    ]
    assert [e.record for e in events] == [first, second, third]
    assert events[0].seq < events[1].seq < events[2].seq
    assert [e.message_id for e in await store.connector_events(events[0].seq, 1)] == [
        second.message_id
    ]


async def test_retractions_that_change_a_record_are_queued_after_the_batch(
    store: Store,
) -> None:
    """A withdrawal or purge queues a RETRACT after the batch's deliveries; an order by another
    sender queues nothing; the DELIVER of a changed record shows its state now."""
    kept, purged = make_record(offset=0), make_record(offset=1)
    await commit(store, records=[kept, purged])
    newcomer = make_record(offset=2, sender="DE")
    await commit(
        store,
        records=[newcomer],
        retractions=[
            retraction(kept, purge=False),
            retraction(purged, purge=True),
            retraction(newcomer, by="FR", purge=True),  # not its sender: refused
        ],
    )
    events = await store.connector_events(0, 100)
    assert [(e.kind, e.message_id) for e in events] == [
        (EventKind.DELIVER, kept.message_id),
        (EventKind.DELIVER, purged.message_id),
        (EventKind.DELIVER, newcomer.message_id),
        (EventKind.RETRACT, kept.message_id),
        (EventKind.RETRACT, purged.message_id),
    ]
    assert events[0].record is not None
    assert events[0].record.state is RecordState.WITHDRAWN
    assert events[1].record is None  # purged since
    assert events[3].topic == events[4].topic == TOPIC
    assert events[3].record is None


async def test_a_failed_batch_queues_nothing(store: Store) -> None:
    """The queue is written in the batch's transaction: a batch that fails leaves no event."""
    with pytest.raises(StoreError):
        await commit(store, records=[make_record()], quarantined=[make_quarantine(offset=-1)])
    assert await store.connector_events(0, 10) == []


# --- cursors ------------------------------------------------------------------------------
async def test_a_new_cursor_starts_at_the_head_and_survives_reopen(
    store: Store, backend: Backend
) -> None:
    """A connector seen for the first time starts after what is queued; its cursor is kept."""
    assert await store.open_cursor("case", NOW) == 0
    await commit(store, records=[make_record(offset=0), make_record(offset=1)])
    head = (await store.connector_events(0, 10))[-1].seq
    assert await store.open_cursor("late", NOW) == head
    assert await store.open_cursor("case", NOW) == 0  # existing cursors are not moved
    later = make_record(offset=2)
    await commit(store, records=[later])
    assert await kinds_and_ids(store, head) == [(EventKind.DELIVER, later.message_id)]
    await store.close()
    reopened = open_store(backend.url)
    await reopened.open()
    try:
        assert await reopened.open_cursor("late", NOW) == head
        assert await reopened.open_cursor("case", NOW) == 0
    finally:
        await reopened.close()


async def test_advancing_a_cursor_logs_its_audit_in_the_same_transaction(store: Store) -> None:
    """The cursor moves with its DISCLOSURE entry; backwards or unknown: refused, no change."""
    await store.open_cursor("case", NOW)
    await commit(store, records=[make_record(offset=i) for i in range(3)])
    seqs = [e.seq for e in await store.connector_events(0, 10)]
    await store.advance_cursor("case", seqs[1], NOW, [disclosure(0)])
    assert await store.open_cursor("case", NOW) == seqs[1]
    [entry] = await store.audit_entries()
    assert entry.event == disclosure(0)
    with pytest.raises(StoreError, match=r"connector_cursors\[case\]\.last_seq: .* move back"):
        await store.advance_cursor("case", seqs[0], NOW, [disclosure(1)])
    with pytest.raises(StoreError, match=r"connector_cursors\[nobody\]: no cursor"):
        await store.advance_cursor("nobody", seqs[2], NOW, [disclosure(2)])
    assert await store.open_cursor("case", NOW) == seqs[1]
    assert len(await store.audit_entries()) == 1
    await store.advance_cursor("case", seqs[1], NOW)  # standing still is allowed
    assert await store.verify_audit_chain() is None


async def test_pruned_events_are_gone_and_their_seqs_never_reused(store: Store) -> None:
    """Pruning deletes events up to a seq; later events still get larger seqs."""
    await commit(store, records=[make_record(offset=0), make_record(offset=1)])
    old = [e.seq for e in await store.connector_events(0, 10)]
    assert await store.prune_connector_events(old[0]) == 1
    assert [e.seq for e in await store.connector_events(0, 10)] == old[1:]
    assert await store.prune_connector_events(old[-1]) == 1
    assert await store.prune_connector_events(old[-1]) == 0
    assert await store.connector_events(0, 10) == []
    newest = make_record(offset=2)
    await commit(store, records=[newest])
    [event] = await store.connector_events(0, 10)
    assert event.seq > old[-1]
    assert await store.open_cursor("fresh", NOW) == event.seq


async def test_connector_events_refuse_a_bad_limit(store: Store) -> None:
    """A limit below 1 is refused naming the field."""
    with pytest.raises(StoreError, match="limit"):
        await store.connector_events(0, 0)


# --- outbox message ids -------------------------------------------------------------------
async def test_enqueue_keeps_the_message_id_it_is_given(store: Store) -> None:
    """An id given at enqueue is stored, signing keeps it, and signing under another id fails."""
    mid = uuid7(NOW)
    first, second = await store.enqueue([replace(outbox_item(0), message_id=mid), outbox_item(1)])
    pending = {p.id: p for p in await store.pending(10)}
    assert pending[first].message_id == mid
    assert pending[second].message_id is None
    other = replace(signed(pending[first], first, 1), message_id=uuid7(NOW))
    with pytest.raises(StoreError, match=rf"outbox\[{first}\]\.message_id: .*enqueued with"):
        await store.mark_signed([other], [ChainHead(TOPIC, 1, bytes(32))])
    assert (await store.pending(10))[0].status is OutboxStatus.PENDING
    assert await store.chain_head(TOPIC) is None
    same = replace(signed(pending[first], first, 1), message_id=mid)
    await store.mark_signed([same], [ChainHead(TOPIC, 1, bytes(32))])
    [signed_item, _] = await store.pending(10)
    assert (signed_item.id, signed_item.status, signed_item.message_id) == (
        first,
        OutboxStatus.SIGNED,
        mid,
    )
