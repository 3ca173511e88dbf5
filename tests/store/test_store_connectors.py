"""Store contract for the connectors (both backends): a purge queues a retraction for the
connectors, and a submission's status is read back by outbox id."""

from __future__ import annotations

from datetime import timedelta

from nodes.store.base import EventKind, OutboxStatus, Store
from tests.store.conftest import NOW, commit, make_record
from tests.store.conftest import outbox_item as make_outbox


async def test_an_expiry_purge_queues_a_retract_event_for_the_connectors(store: Store) -> None:
    """Each record retention erases gets a RETRACT event after its DELIVER one."""
    head = await store.open_cursor("case", NOW)
    kept = make_record(offset=0)
    doomed = make_record(offset=1, expires_at=NOW + timedelta(hours=1))
    await commit(store, records=[kept, doomed])
    assert await store.purge_expired(NOW + timedelta(hours=2), "test") == [doomed.message_id]
    events = await store.connector_events(head, 10)
    assert [(e.kind, e.message_id) for e in events] == [
        (EventKind.DELIVER, kept.message_id),
        (EventKind.DELIVER, doomed.message_id),
        (EventKind.RETRACT, doomed.message_id),
    ]
    assert events[1].record is None  # purged: never delivered after this


async def test_an_outbox_item_is_read_back_by_id_with_its_status(store: Store) -> None:
    """outbox_item answers the item as accepted (pending), and None for an unknown id."""
    (outbox_id,) = await store.enqueue([make_outbox()])
    item = await store.outbox_item(outbox_id)
    assert item is not None
    assert item.status is OutboxStatus.PENDING
    assert await store.outbox_item(outbox_id + 1000) is None
