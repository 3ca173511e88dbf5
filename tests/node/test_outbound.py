"""Outbound delivery survives crashes: the dispatcher feeds connectors from the store's queue,
at least once, and the JSONL connector turns that into exactly once. Real SQLite stores;
a "crash" is a store left without delivery (or without its cursor moved), then a fresh
store instance and dispatcher resuming from the file."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from connectors.api import ConnectorContext, RecordRejected, SharedRecord
from connectors.jsonl import JsonlConnector
from exchange.ids import NodeId
from exchange.topics import TopicKind
from nodes.config import RulesConfig
from nodes.logging import get_logger
from nodes.metrics import Metrics
from nodes.outbound import ConnectorDown, Dispatcher, Outbound
from nodes.store.base import AuditAction, StoredRecord
from nodes.store.sqlite import SqliteStore
from tests.helpers.federation import Federation, alert_data
from tests.helpers.nodes import make_node
from tests.store.conftest import NOW, commit, make_record, retraction

EVERY_TOPIC = frozenset(TopicKind)


def context(tmp_path: Path, name: str = "case") -> ConnectorContext:
    return ConnectorContext(
        node_id=NodeId("DE"),
        name=name,
        options={"path": "shared.jsonl"},
        log=get_logger(connector=name),
        base_dir=tmp_path,
    )


class Harness:
    """A node's store file and what a (re)started outbound side builds on it."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.url = f"sqlite:///{tmp_path / 'node.db'}"
        self.opened: list[SqliteStore] = []

    async def store(self, cls: type[SqliteStore] = SqliteStore) -> SqliteStore:
        store = cls(self.url)
        await store.open()
        self.opened.append(store)
        return store

    async def dispatcher(
        self,
        connector: Any = None,
        *,
        store: SqliteStore | None = None,
        rules: RulesConfig | None = None,
    ) -> Dispatcher:
        """A freshly started outbound side: new store instance, new connector, cursors open."""
        ctx = context(self.tmp_path)
        dispatcher = Dispatcher(
            node="DE",
            outbound=[Outbound("case", EVERY_TOPIC, connector or JsonlConnector(ctx), ctx)],
            rules=rules or RulesConfig(),
            prefix="ncp",
            store=store or await self.store(),
            metrics=Metrics(),
            backoff_initial_s=0.01,
            backoff_max_s=0.05,
            poll_s=0.05,
        )
        await dispatcher.open()
        return dispatcher

    def lines(self) -> list[dict[str, Any]]:
        path = self.tmp_path / "shared.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def delivered(self) -> list[str]:
        return [x["record"]["message_id"] for x in self.lines() if x["event"] == "deliver"]

    def retracted(self) -> list[str]:
        return [x["message_id"] for x in self.lines() if x["event"] == "retract"]

    async def disclosed(self) -> list[list[str]]:
        store = await self.store()
        entries = await store.audit_entries()
        return [
            list(e.event.details["message_ids"])
            for e in entries
            if e.event.action is AuditAction.DISCLOSURE
        ]


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path)
    try:
        yield harness
    finally:
        for store in harness.opened:
            await store.close()


def ids(records: list[StoredRecord]) -> list[str]:
    return [str(r.message_id) for r in records]


async def test_records_committed_but_not_delivered_reach_the_connector_after_restart(
    node: Harness,
) -> None:
    """Records committed before a crash (never delivered) are delivered after the restart,
    exactly the missing ones, each audited once as a DISCLOSURE."""
    first = await node.dispatcher()
    writer = await node.store()
    before = [make_record(offset=i) for i in range(3)]
    await commit(writer, records=before)
    await first.drain()
    missing = [make_record(offset=i) for i in range(3, 5)]
    await commit(writer, records=missing)  # ... and the node dies before delivering them
    assert node.delivered() == ids(before)

    restarted = await node.dispatcher()
    await restarted.drain()
    assert node.delivered() == ids(before + missing)
    assert await node.disclosed() == [ids(before), ids(missing)]
    assert restarted.metrics.disclosed.value("case") == 2


class CrashBeforeCursor(SqliteStore):
    """A real store whose process 'dies' right after the connector was handed the records,
    before the cursor moved."""

    async def advance_cursor(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("killed before the cursor moved")


async def test_jsonl_is_exactly_once_when_a_delivery_is_repeated_after_a_crash(
    node: Harness,
) -> None:
    """Delivered but not yet confirmed in the store: the restarted node hands the records
    over again, and the JSONL connector writes each message id once."""
    doomed = await node.dispatcher(store=await node.store(CrashBeforeCursor))
    writer = await node.store()
    records = [make_record(offset=i) for i in range(4)]
    await commit(writer, records=records)
    with pytest.raises(RuntimeError, match="killed"):
        await doomed.drain()
    assert node.delivered() == ids(records)
    assert await node.disclosed() == []

    restarted = await node.dispatcher()
    await restarted.drain()
    assert node.delivered() == ids(records)  # not twice
    assert await node.disclosed() == [ids(records)]  # audited now, once


async def test_retraction_notices_survive_a_crash(node: Harness) -> None:
    """Withdrawals and purges committed before a crash reach the connector after restart; a
    record purged before its turn is never delivered."""
    first = await node.dispatcher()
    writer = await node.store()
    shared_before = make_record(offset=0)
    await commit(writer, records=[shared_before])
    await first.drain()
    never_shared = make_record(offset=1)
    await commit(writer, records=[never_shared])
    await commit(
        writer,
        retractions=[retraction(shared_before, purge=False), retraction(never_shared, purge=True)],
    )  # ... crash: neither the delivery nor the notices went out

    restarted = await node.dispatcher()
    await restarted.drain()
    assert node.delivered() == ids([shared_before])
    assert node.retracted() == ids([shared_before, never_shared])
    again = await node.dispatcher()
    await again.drain()
    assert node.retracted() == ids([shared_before, never_shared])


async def test_a_new_connector_starts_with_what_is_stored_from_then_on(node: Harness) -> None:
    """Records stored before a connector was first configured are not replayed to it."""
    writer = await node.store()
    await commit(writer, records=[make_record(offset=0)])
    dispatcher = await node.dispatcher()
    later = make_record(offset=1)
    await commit(writer, records=[later])
    await dispatcher.drain()
    assert node.delivered() == ids([later])


async def test_only_records_allowed_onward_are_delivered(node: Harness) -> None:
    """Handling codes above the topic's onward-sharing limit, and topics the connector is not
    configured for, never reach it; the cursor still moves past them."""
    rules = RulesConfig.model_validate({"alerts": {"onward_sharing_max_handling_code": "H0"}})
    dispatcher = await node.dispatcher(rules=rules)
    writer = await node.store()
    ok = replace(make_record(offset=0), handling_code="H0")
    too_sensitive = replace(make_record(offset=1), handling_code="H1")
    elsewhere = replace(make_record(offset=2), handling_code="H0", topic="ncp.other.v1")
    await commit(writer, records=[ok, too_sensitive, elsewhere])
    await dispatcher.drain()
    assert node.delivered() == ids([ok])
    assert await node.disclosed() == [ids([ok])]
    assert await writer.open_cursor("case", NOW) == 3


class Flaky:
    """An outbound connector that fails on chosen message ids a number of times, or rejects
    them for good."""

    def __init__(self, failures: dict[UUID, int], rejected: frozenset[UUID] = frozenset()) -> None:
        self.failures = dict(failures)
        self.rejected = rejected
        self.got: list[UUID] = []
        self.attempts = 0

    async def deliver(self, record: SharedRecord, context: ConnectorContext) -> bool:
        self.attempts += 1
        if record.message_id in self.rejected:
            raise RecordRejected("the case system has no such category")
        if self.failures.get(record.message_id, 0) > 0:
            self.failures[record.message_id] -= 1
            raise ConnectionError("case system unreachable")
        self.got.append(record.message_id)
        return True

    async def retract(self, message_id: UUID, context: ConnectorContext) -> bool:
        return True

    async def close(self) -> None:
        return None


async def test_a_failing_connector_is_retried_and_never_skipped(node: Harness) -> None:
    """A connector that raises keeps what it got before, and the same record is retried until
    it goes through; nothing after it is delivered first."""
    records = [make_record(offset=i) for i in range(4)]
    flaky = Flaky({records[2].message_id: 2})
    dispatcher = await node.dispatcher(flaky)
    writer = await node.store()
    await commit(writer, records=records)
    with pytest.raises(ConnectorDown, match=f"deliver {records[2].message_id} failed"):
        await dispatcher.drain()
    assert flaky.got == [r.message_id for r in records[:2]]
    assert await node.disclosed() == [ids(records[:2])]

    await dispatcher.start()  # the loop retries with backoff
    try:
        await wait_for(lambda: len(flaky.got) == 4)
        assert dispatcher.problems() == []
    finally:
        await dispatcher.stop()
    assert flaky.got == [r.message_id for r in records]
    assert await node.disclosed() == [ids(records[:2]), ids(records[2:])]


async def test_a_rejected_record_is_recorded_and_passed(node: Harness) -> None:
    """A permanent refusal is kept in the node status and the connector gets the rest."""
    records = [make_record(offset=i) for i in range(3)]
    flaky = Flaky({}, rejected=frozenset({records[1].message_id}))
    dispatcher = await node.dispatcher(flaky)
    writer = await node.store()
    await commit(writer, records=records)
    await dispatcher.drain()
    assert flaky.got == [records[0].message_id, records[2].message_id]
    status = (await writer.get_status())["connector.case.rejected"]
    assert f"deliver {records[1].message_id}: the case system has no such category" in status
    assert await node.disclosed() == [ids([records[0], records[2]])]


async def test_the_loop_delivers_after_a_wake_and_reports_a_down_connector(
    node: Harness,
) -> None:
    """Started, the dispatcher delivers new commits when woken, reports a connector that
    keeps failing as a health problem, and stops promptly meanwhile."""
    records = [make_record(offset=i) for i in range(2)]
    flaky = Flaky({records[1].message_id: 10**6})
    dispatcher = await node.dispatcher(flaky)
    writer = await node.store()
    await dispatcher.start()
    try:
        await commit(writer, records=records)
        dispatcher.wake()
        await wait_for(lambda: dispatcher.problems() != [])
        assert flaky.got == [records[0].message_id]
        assert "case system unreachable" in dispatcher.problems()[0]
    finally:
        started = asyncio.get_running_loop().time()
        await dispatcher.stop()
    assert asyncio.get_running_loop().time() - started < 2


async def wait_for(predicate: Callable[[], bool], within_s: float = 10.0) -> None:
    """Poll ``predicate`` until it holds; fail the test after ``within_s``."""
    for _ in range(int(within_s / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not reached within {within_s} s")


class Unreachable:
    """An outbound connector whose case system is down for good."""

    def __init__(self, context: ConnectorContext) -> None:
        self.context = context

    async def deliver(self, record: SharedRecord, context: ConnectorContext) -> bool:
        raise ConnectionError("case system down")

    async def retract(self, message_id: UUID, context: ConnectorContext) -> bool:
        raise ConnectionError("case system down")

    async def close(self) -> None:
        return None


@pytest.mark.integration
async def test_a_node_restarted_delivers_what_its_connector_missed(
    live_federation: Federation, tmp_path: Path
) -> None:
    """End to end over the broker: records stored while the connector was down are handed
    to it after the node restarts, once each, and the node reported the connector meanwhile."""
    fed = live_federation
    out = tmp_path / "case.jsonl"
    tuned: dict[str, Any] = {
        "publisher": {"backoff_initial_ms": 50, "backoff_max_ms": 500, "poll_interval_ms": 50},
        "rules": {"alerts": {"onward_sharing_max_handling_code": "H0"}},
    }
    down = {"name": "case", "plugin": "tests.node.test_outbound:Unreachable"}
    working = {"name": "case", "plugin": "jsonl", "options": {"path": str(out)}}
    fr = make_node(fed, "FR", **tuned)
    de = make_node(fed, "DE", **tuned, connectors=[down])
    await fr.start()
    await de.start()
    try:
        for title in ("first", "second"):
            data = alert_data(title, observed_at=datetime.now(UTC))
            await fr.submit("OffenceAlert", data, handling={"tlp": "GREEN", "code": "H0"})
        await de.wait_stored(2)
        await de.wait_until(lambda: de.dispatcher is not None and de.dispatcher.problems() != [])
        assert any("case system down" in p for p in await de.health())
    finally:
        await de.stop()
        await fr.stop()
    assert not out.exists()

    again = make_node(fed, "DE", **tuned, connectors=[working])
    await again.start()
    try:
        await again.wait_until(lambda: again.metrics.disclosed.value("case") >= 2)
    finally:
        await again.stop()
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(x["record"]["payload"]["title"] for x in lines) == ["first", "second"]
