"""The outbox part of the store contract added with schema version 3 (the payload's Avro
bytes, set-based marks, ``pending(signed_after=)``), on SQLite and a real PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace

import asyncpg
import pytest

from exchange.uuid7 import uuid7
from nodes.store import migrations
from nodes.store.base import ChainHead, OutboxItem, OutboxStatus, Store, StoreError, open_store
from tests.store.conftest import NOW, TOPIC, Backend, outbox_item, signed

AVRO = b"\xc3\x01" + bytes(range(8)) + b"avro body"


def with_avro(n: int) -> OutboxItem:
    return replace(outbox_item(n), payload_avro=AVRO + bytes([n]))


async def statuses(store: Store) -> dict[int, OutboxStatus]:
    return {p.id: p.status for p in await store.pending(100)}


async def create_version_2(backend: Backend) -> None:
    """The schema an older node left: migrations 1 and 2 only, applied outside the store."""
    dialect = "sqlite" if backend.name == "sqlite" else "postgres"
    old = migrations.load(dialect)[:2]
    if backend.name == "sqlite":
        conn = sqlite3.connect(backend.url.removeprefix("sqlite:///"))
        try:
            conn.executescript(
                ";\n".join([migrations.SCHEMA_MIGRATIONS_DDL, *(m.sql for m in old)])
            )
        finally:
            conn.close()
    else:
        pg = await asyncpg.connect(backend.url)
        try:
            await pg.execute(migrations.SCHEMA_MIGRATIONS_DDL)
            for m in old:
                await pg.execute(m.sql)
        finally:
            await pg.close()
    for m in old:
        await backend.sql(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at)"
            " VALUES (?, ?, ?, ?)",
            m.version,
            m.name,
            m.checksum,
            NOW.isoformat(),
        )


async def test_migration_3_upgrades_a_version_2_store(backend: Backend) -> None:
    """A version-2 store opens at the latest version, keeping its outbox rows, which come
    back without Avro bytes and with their JSON payload decoded."""
    await create_version_2(backend)
    created = int(NOW.timestamp() * 1_000_000) if backend.name == "sqlite" else NOW
    await backend.sql(
        "INSERT INTO outbox (topic, record_key, message_type, payload, handling, recipients,"
        " created_at, status) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending')",
        TOPIC,
        "alert-0",
        "OffenceAlert",
        json.dumps(outbox_item(0).payload),
        json.dumps(outbox_item(0).handling),
        "[]",
        created,
    )
    store = open_store(backend.url)
    await store.open()
    try:
        assert await store.schema_version() == migrations.latest("sqlite") >= 3
        [new_id] = await store.enqueue([with_avro(1)])
        old, new = await store.pending(10)
        assert (old.payload, old.handling, old.payload_avro) == (
            outbox_item(0).payload,
            outbox_item(0).handling,
            None,
        )
        assert (new.id, new.payload_avro) == (new_id, with_avro(1).payload_avro)
    finally:
        await store.close()
    rows = await backend.sql("SELECT version FROM schema_migrations ORDER BY version")
    assert [r[0] for r in rows] == list(range(1, migrations.latest("sqlite") + 1))


async def test_payload_avro_round_trips_and_json_stays_for_operators(
    store: Store, backend: Backend
) -> None:
    """The Avro bytes come back as enqueued; such items skip the JSON decode (payload {})
    while the JSON column still holds the payload; items without bytes decode it."""
    a, b = await store.enqueue([with_avro(0), outbox_item(1)])
    first, second = await store.pending(10)
    assert (first.id, first.payload_avro, first.payload) == (a, with_avro(0).payload_avro, {})
    assert first.handling == outbox_item(0).handling
    assert (second.id, second.payload_avro, second.payload) == (b, None, outbox_item(1).payload)
    [(text,)] = await backend.sql("SELECT payload FROM outbox WHERE id = ?", a)
    assert json.loads(text) == outbox_item(0).payload


async def test_pending_leaves_out_signed_items_up_to_signed_after(store: Store) -> None:
    """``signed_after`` drops SIGNED items with an id up to it (the batch in flight), never
    a PENDING one; SIGNED items still come first."""
    a, b, c, d = await store.enqueue([with_avro(n) for n in range(4)])
    items = await store.pending(10)
    await store.mark_signed(
        [signed(items[0], a, 1), signed(items[1], b, 2)], [ChainHead(TOPIC, 2, None)]
    )
    assert [p.id for p in await store.pending(10)] == [a, b, c, d]
    assert [p.id for p in await store.pending(10, signed_after=a)] == [b, c, d]
    assert [p.id for p in await store.pending(10, signed_after=b)] == [c, d]
    assert [p.id for p in await store.pending(10, signed_after=d)] == [c, d]
    assert [p.id for p in await store.pending(2, signed_after=a)] == [b, c]


async def test_mark_signed_names_the_first_offending_item_and_changes_nothing(
    store: Store,
) -> None:
    """Each refusal of a batch names the offending outbox id and leaves every item and the
    chain head as they were."""
    mid = uuid7(NOW)
    a, b, c = await store.enqueue(
        [outbox_item(0), outbox_item(1), replace(with_avro(2), message_id=mid)]
    )
    item_a, item_b, item_c = await store.pending(10)
    await store.mark_signed([signed(item_b, b, 10)], [ChainHead(TOPIC, 10, None)])
    c_11 = replace(signed(item_c, c, 11), message_id=mid)
    refusals = [
        ([signed(item_a, a, 11), signed(item_b, b, 12)], rf"outbox\[{b}\]: not a pending"),
        ([signed(item_a, a, 11), signed(item_a, a, 12)], rf"outbox\[{a}\]: not a pending"),
        ([signed(item_a, a, 10)], rf"outbox\[{a}\]\.sequence: 10 is already assigned"),
        ([signed(item_a, a, 11), c_11], rf"outbox\[{c}\]\.sequence: 11 is already assigned"),
        ([signed(item_a, a, 11), signed(item_c, c, 12)], rf"outbox\[{c}\]\.message_id: .* differs"),
        ([replace(signed(item_a, a, 11), value=None)], rf"outbox\[{a}\]\.value: required"),
    ]
    for batch, error in refusals:
        with pytest.raises(StoreError, match=error):
            await store.mark_signed(batch, [ChainHead(TOPIC, 12, None)])
        assert await statuses(store) == {
            a: OutboxStatus.PENDING,
            b: OutboxStatus.SIGNED,
            c: OutboxStatus.PENDING,
        }
        assert await store.chain_head(TOPIC) == ChainHead(TOPIC, 10, None)
    c_12 = replace(signed(item_c, c, 12), message_id=mid)
    await store.mark_signed([signed(item_a, a, 11), c_12], [ChainHead(TOPIC, 12, None)])
    assert set((await statuses(store)).values()) == {OutboxStatus.SIGNED}


async def test_mark_sent_is_idempotent_and_names_the_first_bad_id(store: Store) -> None:
    """Marking SENT accepts SENT ids (and repeats) but refuses a PENDING or unknown id,
    naming it, and then changes nothing."""
    a, b, c, d = await store.enqueue([with_avro(n) for n in range(4)])
    items = await store.pending(10)
    await store.mark_signed(
        [
            signed(item, i, n)
            for n, (item, i) in enumerate(zip(items[:3], (a, b, c), strict=True), start=1)
        ],
        [ChainHead(TOPIC, 3, None)],
    )
    await store.mark_sent([a], NOW)
    with pytest.raises(StoreError, match=rf"outbox\[{d}\]: cannot mark pending item sent"):
        await store.mark_sent([a, b, d, c], NOW)
    unknown = d + 1000
    with pytest.raises(StoreError, match=rf"outbox\[{unknown}\]: cannot mark unknown item sent"):
        await store.mark_sent([b, unknown], NOW)
    assert await statuses(store) == {
        b: OutboxStatus.SIGNED,
        c: OutboxStatus.SIGNED,
        d: OutboxStatus.PENDING,
    }
    await store.mark_sent([a, b, b, c], NOW)
    assert await statuses(store) == {d: OutboxStatus.PENDING}
    assert await store.outbox_depth() == 1


async def test_reseal_replaces_a_signed_items_bytes_and_the_head_at_its_sequence(
    store: Store,
) -> None:
    """Re-sealing keeps an item SIGNED with its message id and sequence and replaces its
    bytes and hash (and the chain head's, when it sits there); an item that is not SIGNED,
    or one moved to another sequence, is refused and nothing changes."""
    a, b, c = await store.enqueue([with_avro(n) for n in range(3)])
    item_a, item_b, item_c = await store.pending(10)
    first_a, first_b = signed(item_a, a, 1), signed(item_b, b, 2)
    await store.mark_signed([first_a, first_b], [ChainHead(TOPIC, 2, first_b.envelope_hash)])
    assert await store.envelope_hash_at(TOPIC, 1) == first_a.envelope_hash
    assert await store.envelope_hash_at(TOPIC, 3) is None
    again_b = replace(first_b, value=b"signed-again", envelope_hash=b"\x09" * 32)
    for bad, error in (
        ([replace(signed(item_c, c, 3), value=b"x")], rf"outbox\[{c}\]: not a signed item"),
        ([again_b, replace(first_a, sequence=5)], rf"outbox\[{a}\]: not a signed item"),
    ):
        with pytest.raises(StoreError, match=error):
            await store.reseal(bad)
        assert await store.envelope_hash_at(TOPIC, 2) == first_b.envelope_hash
    await store.reseal([again_b])
    by_id = {i.id: i for i in await store.pending(10)}
    assert (by_id[b].status, by_id[b].value, by_id[b].sequence) == (
        OutboxStatus.SIGNED,
        b"signed-again",
        2,
    )
    assert by_id[b].message_id == first_b.message_id
    assert await store.envelope_hash_at(TOPIC, 2) == b"\x09" * 32
    assert await store.chain_head(TOPIC) == ChainHead(TOPIC, 2, b"\x09" * 32)
    assert by_id[a].value == first_a.value
