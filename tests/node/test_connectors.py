"""The connector plugin API: loading plugins, the built-in JSONL connector, inbound submission."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from connectors.api import (
    ConnectorContext,
    InboundConnector,
    OutboundConnector,
    SharedRecord,
    instantiate,
    load_factory,
)
from connectors.jsonl import JsonlConnector
from exchange.errors import InputError, Reason
from exchange.ids import NodeId
from nodes.logging import get_logger
from tests.helpers.federation import Federation, alert_data
from tests.helpers.nodes import make_node


def context(tmp_path: Path, **options: Any) -> ConnectorContext:
    return ConnectorContext(
        node_id=NodeId("DE"),
        name="test",
        options=options,
        log=get_logger(connector="test"),
        base_dir=tmp_path,
    )


def shared_record() -> SharedRecord:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    return SharedRecord(
        message_id=uuid4(),
        topic="ncp.alerts.v1",
        message_type="OffenceAlert",
        sender="FR",
        created_at=now,
        received_at=now,
        category="FRAUDULENT_SALES",
        tlp="GREEN",
        handling_code="H0",
        recipients=(),
        payload={"title": "t"},
    )


async def test_jsonl_connector_appends_deliveries_and_retractions(tmp_path: Path) -> None:
    """Each delivery and each withdrawal is one JSON line, path relative to the config folder."""
    ctx = context(tmp_path, path="out/shared.jsonl")
    connector = instantiate("jsonl", ctx)
    assert isinstance(connector, JsonlConnector)
    assert isinstance(connector, OutboundConnector)
    record = shared_record()
    assert await connector.deliver(record, ctx)
    assert await connector.retract(record.message_id, ctx)
    lines = [json.loads(x) for x in (tmp_path / "out" / "shared.jsonl").read_text().splitlines()]
    assert lines[0] == {"event": "deliver", "record": record.to_json()}
    assert lines[1] == {"event": "retract", "message_id": str(record.message_id)}


async def test_jsonl_connector_writes_each_message_id_once_across_restarts(
    tmp_path: Path,
) -> None:
    """A new instance on the same file skips deliveries and withdrawals it already wrote."""
    ctx = context(tmp_path, path="shared.jsonl")
    first, second = shared_record(), shared_record()
    before = JsonlConnector(ctx)
    assert await before.deliver(first, ctx)
    assert await before.retract(first.message_id, ctx)
    assert await before.deliver(first, ctx)  # the same instance skips too
    after = JsonlConnector(ctx)  # the node restarted and hands both over again
    assert await after.deliver(first, ctx)
    assert await after.retract(first.message_id, ctx)
    assert await after.deliver(second, ctx)
    lines = [json.loads(x) for x in (tmp_path / "shared.jsonl").read_text().splitlines()]
    assert [(x["event"], x.get("message_id") or x["record"]["message_id"]) for x in lines] == [
        ("deliver", str(first.message_id)),
        ("retract", str(first.message_id)),
        ("deliver", str(second.message_id)),
    ]


async def test_jsonl_connector_rewrites_a_line_torn_by_a_crash(tmp_path: Path) -> None:
    """A last line cut short by a crash is cut off, and the record is written again in full."""
    ctx = context(tmp_path, path="shared.jsonl")
    kept, torn = shared_record(), shared_record()
    whole = json.dumps({"event": "deliver", "record": kept.to_json()}, sort_keys=True)
    cut = json.dumps({"event": "deliver", "record": torn.to_json()}, sort_keys=True)[:40]
    (tmp_path / "shared.jsonl").write_text(whole + "\n" + cut)
    connector = JsonlConnector(ctx)
    assert await connector.deliver(kept, ctx)
    assert await connector.deliver(torn, ctx)
    lines = [json.loads(x) for x in (tmp_path / "shared.jsonl").read_text().splitlines()]
    assert [x["record"]["message_id"] for x in lines] == [
        str(kept.message_id),
        str(torn.message_id),
    ]


def test_jsonl_connector_needs_a_path(tmp_path: Path) -> None:
    """A JSONL connector without a path option is a config error naming the option."""
    with pytest.raises(InputError) as caught:
        instantiate("jsonl", context(tmp_path))
    assert caught.value.reason is Reason.BAD_CONFIG
    assert caught.value.problems[0][0] == "connectors.test.options.path"


def test_unknown_plugins_are_config_errors() -> None:
    """An unknown plugin name, or a module:attr that does not load, is refused clearly."""
    with pytest.raises(InputError, match="unknown connector 'nope'"):
        load_factory("nope")
    with pytest.raises(InputError, match="cannot load"):
        load_factory("tests.node.test_connectors:Missing")


def test_a_plugin_must_implement_a_protocol(tmp_path: Path) -> None:
    """A factory returning something that is neither connector kind is refused."""
    with pytest.raises(InputError, match="neither an outbound nor an inbound connector"):
        instantiate("tests.node.test_connectors:NotAConnector", context(tmp_path))


class NotAConnector:
    def __init__(self, context: ConnectorContext) -> None:
        self.context = context


class Feeder:
    """An inbound connector that files the alerts listed in its options, then idles."""

    def __init__(self, context: ConnectorContext) -> None:
        self.titles: list[str] = list(context.options["titles"])

    async def run(self, context: ConnectorContext) -> None:
        for title in self.titles:
            data = alert_data(title, observed_at=datetime.now(UTC))
            await context.submit("OffenceAlert", data, handling={"tlp": "GREEN", "code": "H0"})
        await asyncio.Event().wait()

    async def close(self) -> None:
        return None


@pytest.mark.integration
async def test_inbound_connector_feeds_the_outbox(live_federation: Federation) -> None:
    """What an inbound connector submits is validated, published and stored by the others."""
    fed = live_federation
    feeder = {
        "name": "case-system",
        "plugin": "tests.node.test_connectors:Feeder",
        "options": {"titles": ["from the case system", "and another"]},
    }
    fr = make_node(fed, "FR", connectors=[feeder])
    de = make_node(fed, "DE")
    assert isinstance(Feeder(context(Path("."), titles=[])), InboundConnector)
    await fr.start()
    await de.start()
    try:
        await de.wait_stored(2)
        found = await de.store.list_records(topic=de.topics[0])
        assert {r.payload["title"] for r in found} == {"from the case system", "and another"}
        assert {r.sender for r in found} == {"FR"}
    finally:
        await fr.stop()
        await de.stop()
