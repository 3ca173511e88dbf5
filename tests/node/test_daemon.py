"""Three real nodes (in-process) exchange alerts over the real broker into real SQLite stores,
and each node's data-sharing rules are honoured."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from nodes.config import load_config
from nodes.daemon import Node
from nodes.inbound import build_item
from nodes.publisher import Publisher
from nodes.store.base import AuditAction, OutboxStatus, StoredRecord, open_store
from tests.helpers.federation import Federation, alert_data
from tests.helpers.nodes import FAST, make_node, retract, running
from tests.node.helpers import wait_for

pytestmark = pytest.mark.integration


async def send_alert(
    node: Node,
    title: str,
    category: str = "FRAUDULENT_SALES",
    *,
    tlp: str = "GREEN",
    code: str = "H0",
    to: tuple[str, ...] = (),
) -> None:
    data = alert_data(title, category, observed_at=datetime.now(UTC))
    handling = {"tlp": tlp, "code": code}
    await node.submit("OffenceAlert", data, handling=handling, recipients=to)


async def records(node: Node, **filters: Any) -> list[StoredRecord]:
    """The alerts (not the retractions) a node stored on the alerts topic."""
    found = await node.store.list_records(topic=node.topics[0], **filters)
    return [r for r in found if r.message_type == "OffenceAlert"]


async def settled(node: Node, count: int) -> None:
    """Wait until ``count`` records were committed: stored, quarantined or skipped."""
    m = node.metrics

    def done() -> bool:
        return m.stored.value() + m.quarantined.value() + m.skipped.value() >= count

    await node.wait_until(done, 30)


def titles(found: list[StoredRecord]) -> set[str]:
    return {str(r.payload["title"]) for r in found}


async def test_three_nodes_exchange_alerts_under_their_rules(live_federation: Federation) -> None:
    """Category and sender filters, minimisation and TLP:RED recipients hold end to end."""
    fed = live_federation
    fr = make_node(fed, "FR")
    de = make_node(
        fed,
        "DE",
        rules={
            "alerts": {
                "accept_senders": ["FR"],
                "categories_kept": ["FRAUDULENT_SALES"],
                "drop_fields": ["description", "indicators.value"],
            }
        },
    )
    nl = make_node(fed, "NL")
    async with running(fr, de, nl):
        await send_alert(fr, "shop")
        await send_alert(fr, "stolen identity", "IDENTITY_THEFT")
        await send_alert(fr, "red for DE", tlp="RED", code="H2", to=("DE",))
        await send_alert(nl, "from NL")
        await asyncio.gather(*(settled(node, 4) for node in (fr, de, nl)))

        de_records = await records(de)
        assert titles(de_records) == {"shop", "red for DE"}
        for record in de_records:
            assert "description" not in record.payload
            assert all("value" not in i for i in record.payload["indicators"])
        refused = {q.detail.split(":")[0] for q in await de.store.list_quarantine()}
        assert refused == {"category_not_kept", "sender_not_accepted"}
        assert de.metrics.quarantined.value("rule_rejected") == 2

        assert titles(await records(nl)) == {"shop", "stolen identity", "from NL"}
        assert nl.metrics.skipped.value("addressed_to_others") == 1
        assert not await nl.store.list_quarantine()
        assert titles(await records(fr)) == {"shop", "stolen identity", "from NL"}
        (nl_record,) = await records(fr, sender="NL")
        assert nl_record.payload["description"]  # FR keeps every field
        # FR's own three came back from the bus and matched its outbox: no signature check.
        assert fr.metrics.own_matched.value() == 3
        assert nl.metrics.own_matched.value() == 1


async def test_a_record_signed_with_a_nodes_key_that_it_never_sent_is_caught_by_it(
    live_federation: Federation,
) -> None:
    """A thief holding FR's signing key writes an alert under FR's name: DE cannot tell it
    from FR's own and stores it, but FR, which reads its own records back against its
    outbox, quarantines it as not_in_own_outbox."""
    fed = live_federation
    fr, de = make_node(fed, "FR"), make_node(fed, "DE")
    async with running(fr, de):
        await send_alert(fr, "genuine")
        await asyncio.gather(fr.wait_stored(1), de.wait_stored(1))
        forged = fed.member("FR").alert(title="forged", now=datetime.now(UTC))
        producer = AIOKafkaProducer(bootstrap_servers=fr.config.kafka.bootstrap_servers)
        await producer.start()
        try:
            await producer.send_and_wait(fr.topics[0], forged.value, key=forged.key)
        finally:
            await producer.stop()
        await asyncio.gather(
            fr.wait_until(lambda: fr.metrics.quarantined.value("not_in_own_outbox") >= 1),
            de.wait_stored(2),
        )
        [entry] = await fr.store.list_quarantine()
        assert entry.reason == "not_in_own_outbox"
        assert entry.message_id == forged.envelope.message_id
        assert titles(await records(fr)) == {"genuine"}
        assert titles(await records(de)) == {"genuine", "forged"}


async def test_retraction_withdraws_or_purges_as_each_node_chose(
    live_federation: Federation,
) -> None:
    """NL keeps a retracted alert marked withdrawn; DE (on_retraction = purge) deletes it."""
    fed = live_federation
    fr = make_node(fed, "FR")
    de = make_node(fed, "DE", rules={"alerts": {"on_retraction": "purge"}})
    nl = make_node(fed, "NL")
    async with running(fr, de, nl):
        await send_alert(fr, "to be withdrawn")
        await send_alert(fr, "stays")
        await asyncio.gather(de.wait_stored(2), nl.wait_stored(2), fr.wait_stored(2))
        (target,) = [r for r in await records(fr) if r.payload["title"] == "to be withdrawn"]
        await retract(fr, target)
        await asyncio.gather(de.wait_stored(3), nl.wait_stored(3))
        assert de.metrics.retractions.value() == 1
        assert nl.metrics.retractions.value() == 1

        assert "to be withdrawn" not in titles(await records(de, include_withdrawn=True))
        assert await de.store.get_record(target.message_id) is None
        erased = [
            e for e in await de.store.audit_entries() if e.event.action is AuditAction.ERASURE
        ]
        assert erased

        visible = await records(nl)
        assert "to be withdrawn" not in titles(visible)
        assert "stays" in titles(visible)
        assert "to be withdrawn" in titles(await records(nl, include_withdrawn=True))


async def test_a_restarted_node_resumes_from_its_stored_offsets(
    live_federation: Federation,
) -> None:
    """After a clean restart nothing is stored twice and nothing is quarantined as replayed."""
    fed = live_federation
    fr = make_node(fed, "FR")
    de = make_node(fed, "DE")
    async with running(fr, de):
        await send_alert(fr, "one")
        await send_alert(fr, "two")
        await de.wait_stored(2)
    again = make_node(fed, "DE")
    async with running(fr := make_node(fed, "FR"), again):
        await send_alert(fr, "three")
        await again.wait_stored(1)
        await again.wait_caught_up()  # any re-read of old records would have landed by now
        assert again.metrics.consumed.value() == 1  # counted when decided, not per fetch
        assert again.metrics.reread.value() == 0
        assert again.metrics.stored.value() == 1
        assert again.metrics.quarantined.value() == 0
        assert titles(await records(again)) == {"one", "two", "three"}
        assert await again.store.count_records() == 3


async def test_a_replayed_copy_of_a_purged_record_is_never_stored_or_delivered_again(
    live_federation: Federation, tmp_path: Path
) -> None:
    """After DE purged a retracted alert, the same signed bytes written to the bus again (a
    replay: anyone who can reach the bus can do it) are quarantined as replayed, neither
    stored nor handed to a connector a second time: DE keeps a tombstone of the id."""
    fed = live_federation
    out = tmp_path / "case-system.jsonl"
    fr = make_node(fed, "FR")
    de = make_node(
        fed,
        "DE",
        rules={"alerts": {"on_retraction": "purge"}},
        connectors=[{"name": "case-system", "plugin": "jsonl", "options": {"path": str(out)}}],
    )
    async with running(fr, de):
        await send_alert(fr, "to be purged")
        await asyncio.gather(de.wait_stored(1), fr.wait_stored(1))
        (target,) = await records(fr)
        await retract(fr, target, "REMOVED_AFTER_REVIEW")
        await de.wait_until(lambda: de.metrics.retractions.value() >= 1)
        assert await de.store.get_record(target.message_id) is None
        [stone] = await de.store.tombstones()
        assert (stone.sender, stone.message_id, stone.reason) == ("FR", target.message_id, "purged")

        db = fed.config_path("FR").parent / "node.db"
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            (value,) = conn.execute(
                "SELECT value FROM outbox WHERE message_id = ?", (target.message_id.bytes,)
            ).fetchone()
        producer = AIOKafkaProducer(bootstrap_servers=de.config.kafka.bootstrap_servers)
        await producer.start()
        try:
            await producer.send_and_wait(de.topics[0], bytes(value), key=target.key.encode())
        finally:
            await producer.stop()
        await de.wait_until(lambda: de.metrics.quarantined.value("replayed") >= 1)
        await de.wait_caught_up()
        assert await de.store.get_record(target.message_id) is None
        await de.wait_until(lambda: de.metrics.disclosed.value() >= 1)
    events = [json.loads(line) for line in out.read_text().splitlines()]
    delivered = [e for e in events if e["event"] == "deliver"]
    assert [e["record"]["message_id"] for e in delivered] == [str(target.message_id)]


async def test_outbound_jsonl_connector_honours_onward_sharing(
    live_federation: Federation, tmp_path: Path
) -> None:
    """Only records whose handling code allows onward sharing reach the connector, audited."""
    fed = live_federation
    out = tmp_path / "shared.jsonl"
    fr = make_node(fed, "FR")
    de = make_node(
        fed,
        "DE",
        rules={"alerts": {"onward_sharing_max_handling_code": "H0"}},
        connectors=[{"name": "case-system", "plugin": "jsonl", "options": {"path": str(out)}}],
    )
    async with running(fr, de):
        await send_alert(fr, "shareable", code="H0")
        await send_alert(fr, "not for onward sharing", code="H2")
        await de.wait_stored(2)
        await de.wait_until(lambda: de.metrics.disclosed.value() >= 1)
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        assert [line["record"]["payload"]["title"] for line in lines] == ["shareable"]
        assert lines[0]["record"]["handling_code"] == "H0"
        disclosures = [
            e.event
            for e in await de.store.audit_entries()
            if e.event.action is AuditAction.DISCLOSURE
        ]
        assert [d.recipients for d in disclosures] == [("connector:case-system",)]
        assert disclosures[0].details["message_ids"] == [lines[0]["record"]["message_id"]]


async def _get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.0\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


async def test_health_and_metrics_endpoints(live_federation: Federation) -> None:
    """/healthz answers 200 while the loops run; /metrics shows the counters in Prometheus text."""
    fed = live_federation
    fr = make_node(fed, "FR", http={"listen": "127.0.0.1:0"})
    async with running(fr):
        await send_alert(fr, "counted")
        await fr.wait_stored(1)
        # its own copy can be stored (read back from Kafka) before the publisher, told of the
        # acknowledgement, marks it sent and counts it
        await fr.wait_published(1)
        assert fr.http is not None
        status, body = await _get(fr.http.port, "/healthz")
        assert (status, body) == (200, "ok\n")
        status, text = await _get(fr.http.port, "/metrics")
        assert status == 200
        metrics = {
            name: float(value)
            for name, value in (
                line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#")
            )
        }
        assert metrics["exchange_published_total"] == 1
        assert metrics[f'exchange_stored_total{{topic="{fr.topics[0]}"}}'] == 1
        assert metrics["exchange_store_commit_seconds_count"] != 0
        assert metrics["exchange_outbox_depth"] == 0
        assert metrics[f'exchange_consumer_lag{{topic="{fr.topics[0]}"}}'] == 0
        # full precision: the exact float the consumer set, not 6 significant digits
        assert metrics["exchange_last_batch_timestamp_seconds"] == fr.metrics.last_batch.value()
        assert abs(metrics["exchange_last_batch_timestamp_seconds"] - time.time()) < 60
        for task in ("publisher", "consumer", "retention"):
            assert metrics[f'exchange_task_up{{task="{task}"}}'] == 1
            assert metrics[f'exchange_task_restarts_total{{task="{task}"}}'] == 0
        assert (await _get(fr.http.port, "/nope"))[0] == 404
    assert await fr.health() != []  # stopped: unhealthy


async def test_signed_items_are_resent_with_their_exact_bytes(live_federation: Federation) -> None:
    """An item signed before a crash goes out later with the very same bytes; a duplicate
    delivery of it is quarantined as replayed, never stored twice."""
    fed = live_federation
    config = load_config(fed.config_path("FR"), **FAST)
    store = open_store(config.store.url)
    await store.open()
    item = build_item(
        "OffenceAlert",
        alert_data("signed before the crash", observed_at=datetime.now(UTC)),
        handling={"tlp": "GREEN", "code": "H0"},
        node=config.node,
        prefix=fed.prefix,
        trust=fed.trust,
        now=datetime.now(UTC),
    )
    await store.enqueue([item])
    publisher = Publisher(
        node=config.node,
        store=store,
        kafka=config.kafka.settings(),
        signer=fed.signer("FR"),
        trust=fed.trust,
        config=config.publisher,
    )
    (signed,) = await publisher.sign_pending()  # ... and the process dies before sending
    (left,) = await store.pending(10)
    assert (left.status, left.value) == (OutboxStatus.SIGNED, signed.value)
    await store.close()

    fr, de = make_node(fed, "FR"), make_node(fed, "DE")
    async with running(fr, de):
        await de.wait_stored(1)
        (record,) = await records(de)
        assert record.message_id == signed.message_id
        assert record.envelope_hash == signed.envelope_hash
        assert signed.value is not None
        producer = AIOKafkaProducer(bootstrap_servers=config.kafka.bootstrap_servers)
        await producer.start()
        try:
            await producer.send_and_wait(signed.topic, signed.value, key=signed.key.encode())
        finally:
            await producer.stop()
        await de.wait_until(lambda: de.metrics.quarantined.value("replayed") == 1)
        assert await de.store.count_records() == 1


async def test_retention_job_erases_expired_records(live_federation: Federation) -> None:
    """Records past retention_days are erased by the periodic job, each with an ERASURE event."""
    fed = live_federation
    shift = timedelta(0)

    def clock() -> datetime:
        return datetime.now(UTC) + shift

    fr = make_node(fed, "FR")
    de = Node(
        load_config(
            fed.config_path("DE"),
            **FAST,
            rules={"alerts": {"retention_days": 1}},
            store={"url": "sqlite:///node.db", "purge_interval_s": 0.1},
        ),
        clock=clock,
    )
    async with running(fr, de):
        await send_alert(fr, "short-lived")
        await de.wait_stored(1)
        (record,) = await records(de)
        assert record.expires_at == record.created_at + timedelta(days=1)
        shift = timedelta(days=1, minutes=1)

        async def erased() -> bool:
            return await de.store.count_records() == 0

        await wait_for(erased, within_s=30, what="the retention job (every 0.1 s) erasing it")
        erasures = [
            e.event for e in await de.store.audit_entries() if e.event.action is AuditAction.ERASURE
        ]
        assert [e.subject for e in erasures] == [str(record.message_id)]


async def test_unreachable_broker_keeps_the_outbox_and_reports_unhealthy(
    federation: Federation, tmp_path: Path
) -> None:
    """With no broker to talk to, a node keeps what it was asked to publish, says why it is
    unhealthy, and still stops promptly."""
    config = load_config(
        federation.config_path("NL"),
        **FAST,
        kafka={"bootstrap_servers": "127.0.0.1:1", "request_timeout_ms": 1000},
        store={"url": f"sqlite:///{tmp_path / 'nl.db'}"},
    )
    node = Node(config)
    await node.start()
    try:
        await send_alert(node, "waits for the broker")
        consumer = node.consumer
        assert consumer is not None
        # Positive proof that the node tried the broker and failed: the error is recorded.
        await node.wait_until(lambda: consumer.last_error is not None, within_s=30)
        problems = await node.health()
        assert "waiting for Kafka to create or confirm the topics" in problems
        assert await node.store.outbox_depth() == 1
        assert node.metrics.published.value() == 0
    finally:
        started = asyncio.get_running_loop().time()
        await node.stop()
    assert asyncio.get_running_loop().time() - started < 5
