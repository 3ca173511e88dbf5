"""The store contract, run against SQLite and a real PostgreSQL alike."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import timedelta

import pytest

from exchange.errors import ExchangeError
from exchange.uuid7 import uuid7
from nodes.store import migrations
from nodes.store.base import (
    AuditAction,
    ChainHead,
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
    make_event,
    make_quarantine,
    make_record,
    outbox_item,
    retraction,
    signed,
)


# --- migrations ---------------------------------------------------------------------------
async def test_migrations_apply_once_and_reopen_is_idempotent(
    store: Store, backend: Backend
) -> None:
    """Opening applies every migration once; reopening applies nothing and keeps the data."""
    latest = migrations.latest("sqlite")
    assert latest == migrations.latest("postgres")
    assert await store.schema_version() == latest
    await commit(store, records=[make_record()])
    for _ in range(2):
        again = open_store(backend.url)
        await again.open()
        assert await again.schema_version() == latest
        assert await again.count_records() == 1
        await again.close()
    rows = await backend.sql("SELECT version FROM schema_migrations ORDER BY version")
    assert [r[0] for r in rows] == list(range(1, latest + 1))


async def test_newer_schema_refuses_to_open(store: Store, backend: Backend) -> None:
    """A store whose schema is newer than the code refuses to open, saying so."""
    newer = migrations.latest("sqlite") + 1
    await backend.sql(
        "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)",
        newer,
        "from_the_future",
        "0" * 64,
        NOW.isoformat(),
    )
    later = open_store(backend.url)
    with pytest.raises(StoreError, match=f"schema version {newer} is newer"):
        await later.open()


# --- consumer batches ---------------------------------------------------------------------
async def test_commit_batch_stores_records_and_offsets(store: Store) -> None:
    """Records read back exactly as written, and the offsets are the ones committed."""
    records = [make_record(offset=i) for i in range(3)]
    result = await commit(store, records=records, offsets={(TOPIC, 0): 3, (TOPIC, 1): 7})
    assert (result.stored, result.duplicates, result.retractions_applied) == (3, (), 0)
    for record in records:
        assert await store.get_record(record.message_id) == record
    assert await store.load_offsets("g1") == {(TOPIC, 0): 3, (TOPIC, 1): 7}
    assert await store.load_offsets("other-group") == {}
    listed = await store.list_records(topic=TOPIC, sender="FR")
    assert [r.message_id for r in listed] == [r.message_id for r in reversed(records)]
    assert await store.list_records(topic="ncp.other.v1") == []
    assert await store.count_records(TOPIC) == 3


async def test_failed_batch_moves_neither_records_nor_offsets(store: Store) -> None:
    """A batch that fails mid-transaction leaves records, offsets and audit log untouched."""
    await commit(store, records=[make_record(offset=0)], offsets={(TOPIC, 0): 1})
    broken = make_quarantine(offset=-1)  # violates the quarantine's offset >= 0 constraint
    with pytest.raises(StoreError, match="kafka_offset"):
        await commit(
            store,
            records=[make_record(offset=1), make_record(offset=2)],
            quarantined=[broken],
            audit=[make_event()],
            offsets={(TOPIC, 0): 3},
        )
    assert await store.count_records() == 1
    assert await store.load_offsets("g1") == {(TOPIC, 0): 1}
    assert await store.audit_entries() == []
    assert await store.quarantine_counts() == {}


async def test_duplicates_are_reported_not_inserted(store: Store) -> None:
    """Ids already stored, or twice in one batch, are reported as duplicates and stored once."""
    first = make_record(offset=0)
    await commit(store, records=[first])
    fresh = make_record(offset=1)
    replay = make_record(offset=2, message_id=first.message_id)
    twin = make_record(offset=3, message_id=fresh.message_id)
    result = await commit(store, records=[replay, fresh, twin], offsets={(TOPIC, 0): 4})
    assert result.stored == 1
    assert result.duplicates == (first.message_id, fresh.message_id)
    assert await store.count_records() == 2
    assert (await store.get_record(first.message_id)) == first  # the original is kept
    seen = await store.seen_message_ids(
        [("FR", first.message_id), ("FR", uuid7(NOW)), ("NL", first.message_id)]
    )
    assert seen == {("FR", first.message_id)}
    assert await store.load_offsets("g1") == {(TOPIC, 0): 4}


async def test_one_id_from_two_senders_is_two_messages(store: Store) -> None:
    """A message is (sender, message id): NL taking FR's id first does not stop FR's record,
    and each delivery event carries its own sender's record."""
    squat = make_record(sender="NL", offset=0)
    await commit(store, records=[squat])
    genuine = make_record(sender="FR", offset=1, message_id=squat.message_id)
    result = await commit(store, records=[genuine], offsets={(TOPIC, 0): 2})
    assert (result.stored, result.duplicates) == (1, ())
    assert await store.count_records() == 2
    both = await store.seen_message_ids([("FR", squat.message_id), ("NL", squat.message_id)])
    assert both == {("FR", squat.message_id), ("NL", squat.message_id)}
    events = await store.connector_events(0, 10)
    assert [(e.message_id, e.record) for e in events] == [
        (squat.message_id, squat),
        (genuine.message_id, genuine),
    ]


async def test_withdrawal_marks_the_record(store: Store) -> None:
    """A retraction without purge keeps the record, marked withdrawn and hidden by default."""
    record = make_record()
    await commit(store, records=[record])
    result = await commit(store, retractions=[retraction(record, purge=False)])
    assert result.retractions_applied == 1
    stored = await store.get_record(record.message_id)
    assert stored is not None
    assert stored.state is RecordState.WITHDRAWN
    assert await store.list_records() == []
    assert [r.message_id for r in await store.list_records(include_withdrawn=True)] == [
        record.message_id
    ]
    again = await commit(store, retractions=[retraction(record, purge=False)])
    assert again.retractions_applied == 0  # already withdrawn


async def test_purge_deletes_the_record_and_logs_an_erasure(store: Store) -> None:
    """A purging retraction deletes the record and logs one ERASURE by the order's actor."""
    record, other = make_record(offset=0), make_record(offset=1)
    await commit(store, records=[record, other])
    result = await commit(store, retractions=[retraction(record, purge=True)])
    assert result.retractions_applied == 1
    assert await store.get_record(record.message_id) is None
    assert await store.count_records() == 1
    [entry] = await store.audit_entries()
    assert entry.event.action is AuditAction.ERASURE
    assert entry.event.subject == str(record.message_id)
    assert entry.event.actor == "node:FR/consumer"


async def test_retraction_by_another_sender_is_not_applied(store: Store) -> None:
    """Only the original sender may retract: another sender's order changes nothing."""
    record = make_record(sender="FR")
    await commit(store, records=[record])
    result = await commit(
        store,
        retractions=[
            retraction(record, by="DE", purge=True),
            retraction(record, by="DE", purge=False),
        ],
    )
    assert result.retractions_applied == 0
    assert await store.get_record(record.message_id) == record
    assert await store.audit_entries() == []


async def test_retraction_in_the_same_batch_as_its_record(store: Store) -> None:
    """A retraction applies to a record stored earlier in the same batch."""
    record = make_record()
    result = await commit(store, records=[record], retractions=[retraction(record, purge=True)])
    assert (result.stored, result.retractions_applied) == (1, 1)
    assert await store.count_records() == 0


# --- retention ------------------------------------------------------------------------------
async def test_purge_expired_erases_and_logs_each_record(store: Store) -> None:
    """Records expiring at or before now are deleted with one ERASURE entry each."""
    old = make_record(offset=0, expires_at=NOW - timedelta(days=1))
    due = make_record(offset=1, expires_at=NOW)
    later = make_record(offset=2, expires_at=NOW + timedelta(seconds=1))
    forever = make_record(offset=3)
    await commit(store, records=[old, due, later, forever])
    erased = await store.purge_expired(NOW, actor="node:FR/retention")
    assert sorted(erased) == sorted([old.message_id, due.message_id])
    assert await store.count_records() == 2
    entries = await store.audit_entries()
    assert {e.event.subject for e in entries} == {str(old.message_id), str(due.message_id)}
    assert all(e.event.action is AuditAction.ERASURE for e in entries)
    assert all(e.event.actor == "node:FR/retention" for e in entries)
    assert await store.purge_expired(NOW, actor="node:FR/retention") == []
    assert await store.verify_audit_chain() is None


# --- outbox -----------------------------------------------------------------------------------
async def test_outbox_lifecycle(store: Store) -> None:
    """enqueue -> pending -> signed (resent first) -> sent, with chain heads and error counts."""
    ids = await store.enqueue([outbox_item(0), outbox_item(1)])
    assert len(ids) == 2
    assert ids[0] < ids[1]
    assert await store.outbox_depth() == 2
    assert await store.chain_head(TOPIC) is None
    pending = await store.pending(10)
    assert [(p.id, p.status) for p in pending] == [(i, OutboxStatus.PENDING) for i in ids]
    assert pending[0].payload == outbox_item(0).payload
    assert pending[0].created_at == outbox_item(0).created_at

    second = signed(pending[1], ids[1], sequence=1)
    await store.mark_signed([second], [ChainHead(TOPIC, 1, second.envelope_hash)])
    assert await store.chain_head(TOPIC) == ChainHead(TOPIC, 1, second.envelope_hash)
    first, then = await store.pending(10)
    assert (first.id, first.status, first.value) == (ids[1], OutboxStatus.SIGNED, second.value)
    assert (first.message_id, first.sequence) == (second.message_id, 1)
    assert (then.id, then.status) == (ids[0], OutboxStatus.PENDING)
    assert [p.id for p in await store.pending(1)] == [ids[1]]

    await store.record_publish_error([ids[1]], "broker unavailable")
    [retry] = await store.pending(1)
    assert (retry.attempts, retry.last_error) == (1, "broker unavailable")
    await store.mark_sent([ids[1]], NOW)
    await store.mark_sent([ids[1]], NOW)  # idempotent
    assert await store.outbox_depth() == 1
    assert [p.id for p in await store.pending(10)] == [ids[0]]


async def test_a_sequence_is_never_assigned_twice_on_a_topic(store: Store) -> None:
    """Two items signed with the same (topic, sequence) are refused, and nothing changes."""
    a, b = await store.enqueue([outbox_item(0), outbox_item(1)])
    [item_a, item_b] = await store.pending(10)
    await store.mark_signed([signed(item_a, a, 1)], [ChainHead(TOPIC, 1, bytes(32))])
    with pytest.raises(StoreError, match="sequence"):
        await store.mark_signed([signed(item_b, b, 1)], [ChainHead(TOPIC, 2, bytes(32))])
    assert await store.chain_head(TOPIC) == ChainHead(TOPIC, 1, bytes(32))
    statuses = {p.id: p.status for p in await store.pending(10)}
    assert statuses == {a: OutboxStatus.SIGNED, b: OutboxStatus.PENDING}


async def test_chain_head_only_advances_and_signing_is_once(store: Store) -> None:
    """A chain head that does not advance, or re-signing a signed item, is refused."""
    a, b = await store.enqueue([outbox_item(0), outbox_item(1)])
    item_a, item_b = await store.pending(10)
    await store.mark_signed([signed(item_a, a, 5)], [ChainHead(TOPIC, 5, None)])
    with pytest.raises(StoreError, match="does not advance"):
        await store.mark_signed([signed(item_b, b, 4)], [ChainHead(TOPIC, 4, None)])
    with pytest.raises(StoreError, match="not a pending"):
        await store.mark_signed([signed(item_a, a, 6)], [])
    with pytest.raises(StoreError, match="cannot mark pending item sent"):
        await store.mark_sent([b], NOW)
    unsigned = outbox_item(2)
    with pytest.raises(StoreError, match=r"outbox\[\d+\]\.message_id"):
        await store.mark_signed([unsigned], [])


async def test_outbox_chains_are_per_topic(store: Store) -> None:
    """The same sequence number may be used once on each topic."""
    other = "ncp.blacklist.v1"
    a, b = await store.enqueue([outbox_item(0), outbox_item(1, topic=other)])
    item_a, item_b = await store.pending(10)
    await store.mark_signed(
        [signed(item_a, a, 1), signed(item_b, b, 1)],
        [ChainHead(TOPIC, 1, bytes(32)), ChainHead(other, 1, bytes(32))],
    )
    assert (await store.chain_head(other)) == ChainHead(other, 1, bytes(32))


# --- audit log --------------------------------------------------------------------------------
async def test_audit_chain_verifies_and_detects_an_edit(store: Store, backend: Backend) -> None:
    """The hash chain verifies as written; an UPDATE of one field is found at that entry."""
    await store.append_audit([make_event(0), make_event(1)])
    await commit(store, audit=[make_event(2, AuditAction.DISCLOSURE), make_event(3)])
    entries = await store.audit_entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4]
    assert entries[0].previous_hash == bytes(32)
    assert all(b.previous_hash == a.hash for a, b in itertools.pairwise(entries))
    assert entries[2].event == make_event(2, AuditAction.DISCLOSURE)
    assert [e.seq for e in await store.audit_entries(since_seq=2, limit=1)] == [3]
    assert await store.verify_audit_chain() is None
    await backend.sql("UPDATE audit_log SET actor = ? WHERE seq = ?", "cli:mallory", 3)
    assert await store.verify_audit_chain() == 3


async def test_audit_chain_detects_a_removed_entry(store: Store, backend: Backend) -> None:
    """Deleting an entry in the middle breaks the chain at the entry after it."""
    await store.append_audit([make_event(n) for n in range(4)])
    await backend.sql("DELETE FROM audit_log WHERE seq = ?", 2)
    assert await store.verify_audit_chain() == 3


async def test_audit_chain_detects_edited_details(store: Store, backend: Backend) -> None:
    """Rewriting an entry's details (and even its stored hash) is detected."""
    await store.append_audit([make_event(n) for n in range(3)])
    await backend.sql("UPDATE audit_log SET details = ? WHERE seq = ?", '{"n":99}', 1)
    assert await store.verify_audit_chain() == 1


# --- quarantine, status, reopen ------------------------------------------------------------------
async def test_quarantine_counts_by_reason(store: Store) -> None:
    """Quarantined entries are kept with their bytes and counted by reason."""
    entries = [
        make_quarantine("bad_signature", 0),
        make_quarantine("bad_signature", 1),
        make_quarantine("replayed", 2),
    ]
    await commit(store, quarantined=entries, offsets={(TOPIC, 0): 3})
    assert await store.quarantine_counts() == {"bad_signature": 2, "replayed": 1}
    listed = await store.list_quarantine(limit=2)
    assert listed == [entries[2], entries[1]]


async def test_state_survives_reopen(store: Store, backend: Backend) -> None:
    """Records, offsets, outbox, chain heads and status are there after a reopen."""
    record = make_record()
    await commit(store, records=[record], offsets={(TOPIC, 2): 42})
    [item_id] = await store.enqueue([outbox_item()])
    await store.set_status("last_error", "none")
    await store.set_status("last_error", "broker down")
    await store.close()
    reopened = open_store(backend.url)
    await reopened.open()
    try:
        assert await reopened.load_offsets("g1") == {(TOPIC, 2): 42}
        assert await reopened.get_record(record.message_id) == record
        assert [p.id for p in await reopened.pending(5)] == [item_id]
        assert await reopened.get_status() == {"last_error": "broker down"}
    finally:
        await reopened.close()


# --- bad input ---------------------------------------------------------------------------------
async def test_bad_input_is_refused_naming_the_field(store: Store) -> None:
    """A naive time or a payload that is not JSON-able is refused with the field named."""
    naive = replace(make_record(), created_at=NOW.replace(tzinfo=None))
    with pytest.raises(StoreError, match=r"record\.created_at: must be a timezone-aware"):
        await commit(store, records=[naive])
    bad = replace(make_record(), payload={"x": object()})
    with pytest.raises(StoreError, match=r"record\.payload: not JSON-serialisable"):
        await commit(store, records=[bad])
    with pytest.raises(StoreError, match="limit"):
        await store.list_records(limit=0)
    assert await store.count_records() == 0


async def test_errors_are_exchange_errors(store: Store, backend: Backend) -> None:
    """A driver failure surfaces as an ExchangeError with a reason, never a driver exception."""
    await backend.sql("DROP TABLE node_status")
    with pytest.raises(ExchangeError) as caught:
        await store.get_status()
    assert isinstance(caught.value, StoreError)
    assert "node_status" in str(caught.value)


# --- tombstones and the quarantine's own retention --------------------------------------------


async def test_a_retracted_or_erased_record_leaves_a_tombstone_that_counts_as_seen(
    store: Store,
) -> None:
    """Withdrawn, purged and expired records leave tombstones naming sender, id, time and
    why; their ids stay seen, so a re-published copy is refused as a replay."""
    withdrawn, purged = make_record(offset=0), make_record(offset=1)
    expired = make_record(offset=2, expires_at=NOW - timedelta(days=1))
    await commit(store, records=[withdrawn, purged, expired])
    await commit(
        store,
        retractions=[retraction(withdrawn, purge=False), retraction(purged, purge=True)],
    )
    await store.purge_expired(NOW, actor="node:FR/retention")
    stones = {t.message_id: t for t in await store.tombstones()}
    assert {m: t.reason for m, t in stones.items()} == {
        withdrawn.message_id: "withdrawn",
        purged.message_id: "purged",
        expired.message_id: "expired",
    }
    assert {t.sender for t in stones.values()} == {"FR"}
    keys = [(r.sender, r.message_id) for r in (withdrawn, purged, expired)]
    assert await store.seen_message_ids(keys) == set(keys)
    assert await store.seen_message_ids([("DE", purged.message_id)]) == set()


async def test_a_retraction_that_arrives_before_its_record_still_buries_it(store: Store) -> None:
    """A retraction of a record not stored yet leaves a tombstone: the record, arriving
    later, is already seen (and so refused) rather than stored."""
    record = make_record()
    await commit(store, retractions=[retraction(record, purge=True)])
    assert await store.seen_message_ids([(record.sender, record.message_id)]) == {
        (record.sender, record.message_id)
    }


async def test_quarantine_keeps_size_and_hash_and_is_pruned_by_age_with_an_erasure(
    store: Store,
) -> None:
    """Entries keep the size and SHA-256 of what was refused; pruning deletes the entries
    received before the cut-off and logs one ERASURE saying how many of which reason."""
    old = [
        make_quarantine("bad_signature", 0, NOW - timedelta(days=91)),
        make_quarantine("malformed", 1, NOW - timedelta(days=100)),
    ]
    young = make_quarantine("replayed", 2, NOW - timedelta(days=1))
    await commit(store, quarantined=[*old, young], offsets={(TOPIC, 0): 3})
    listed = await store.list_quarantine()
    assert listed[0].size == young.size
    assert listed[0].sha256 == young.sha256
    pruned = await store.purge_quarantine(NOW - timedelta(days=90), NOW, "node:FR/retention")
    assert pruned == 2
    assert await store.list_quarantine() == [young]
    [entry] = await store.audit_entries()
    assert entry.event.action is AuditAction.ERASURE
    assert entry.event.details["quarantine_entries"] == 2
    assert entry.event.details["by_reason"] == {"bad_signature": 1, "malformed": 1}
    assert await store.purge_quarantine(NOW - timedelta(days=90), NOW, "x") == 0
    assert len(await store.audit_entries()) == 1
    assert await store.verify_audit_chain() is None
