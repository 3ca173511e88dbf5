"""Isolation: a connector that hangs or raises can neither stop the node nor lose what it was
given; it is retried with backoff and shown in the node status and the metrics. Real nodes
on the real broker; the misbehaving connectors are plugins defined here."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from connectors.api import ConnectorContext, SharedRecord
from tests.helpers.federation import Federation, alert_data
from tests.helpers.nodes import make_node

pytestmark = pytest.mark.integration

FAILS = 3  # calls Flaky fails before it works


class Hanging:
    """An outbound connector whose deliver never returns (and ignores cancellation once)."""

    def __init__(self, context: ConnectorContext) -> None:
        self.calls = 0

    async def deliver(self, record: SharedRecord, context: ConnectorContext) -> bool:
        self.calls += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0.5)  # a stubborn plugin: slow to give up
            raise
        return True

    async def retract(self, message_id: UUID, context: ConnectorContext) -> bool:
        return True

    async def close(self) -> None:
        return None


class Flaky:
    """An outbound connector that raises on its first calls, then records what it gets."""

    def __init__(self, context: ConnectorContext) -> None:
        self.calls = 0
        self.got: list[str] = []

    async def deliver(self, record: SharedRecord, context: ConnectorContext) -> bool:
        self.calls += 1
        if self.calls <= FAILS:
            raise RuntimeError("case system said no")
        self.got.append(str(record.message_id))
        return True

    async def retract(self, message_id: UUID, context: ConnectorContext) -> bool:
        return True

    async def close(self) -> None:
        return None


class Crashing:
    """An inbound connector whose run raises at once, every time."""

    def __init__(self, context: ConnectorContext) -> None:
        return None

    async def run(self, context: ConnectorContext) -> None:
        raise RuntimeError("feed broken")

    async def close(self) -> None:
        return None


def connectors(tmp_path: Path) -> list[dict[str, Any]]:
    here = "tests.connectors.test_isolation"
    return [
        {"name": "hangs", "plugin": f"{here}:Hanging", "timeout_s": 0.3},
        {"name": "flaky", "plugin": f"{here}:Flaky"},
        {"name": "crashes", "plugin": f"{here}:Crashing"},
        {"name": "file", "plugin": "jsonl", "options": {"path": str(tmp_path / "out.jsonl")}},
    ]


async def test_a_hanging_or_raising_connector_stops_neither_the_node_nor_the_others(
    live_federation: Federation, tmp_path: Path
) -> None:
    """A deliver that never returns is abandoned after timeout_s and retried; a connector that
    raises gets everything once it recovers; an inbound one that crashes is restarted; the
    others and the node go on, the status and metrics show the failing one, and the node
    still stops in time."""
    fed = live_federation
    fr = make_node(fed, "FR")
    de = make_node(fed, "DE", connectors=connectors(tmp_path))
    await fr.start()
    await de.start()
    try:
        for title in ("first", "second"):
            await fr.submit(
                "OffenceAlert", alert_data(title=title), handling={"tlp": "GREEN", "code": "H0"}
            )
        await de.wait_stored(2)
        await de.wait_until(lambda: de.metrics.disclosed.value("file") == 2)
        flaky = de.connectors["flaky"]
        assert isinstance(flaky, Flaky)
        await de.wait_until(lambda: len(flaky.got) == 2)
        stored = {str(r.message_id) for r in await de.store.list_records(topic=de.topics[0])}
        assert set(flaky.got) == stored
        lines = (tmp_path / "out.jsonl").read_text().splitlines()
        assert {json.loads(x)["record"]["message_id"] for x in lines} == stored

        await de.wait_until(lambda: de.metrics.connector_failures.value("hangs") >= 2)
        assert de.metrics.connector_up.value("hangs") == 0
        status = await de.store.get_status()
        assert "did not return within 0.3 s" in status["connector.hangs.state"]
        await de.wait_until(lambda: de.metrics.connector_up.value("flaky") == 1)  # recovered
        assert (await de.store.get_status())["connector.flaky.state"] == "up"
        await de.wait_until(lambda: de.supervisor.loops["inbound:crashes"].restarts >= 2)
        assert "feed broken" in (await de.store.get_status())["connector.crashes.state"]
        assert de.metrics.disclosed.value("hangs") == 0
    finally:
        await fr.stop()
        await asyncio.wait_for(de.stop(), 60)
    assert de.supervisor.fatal is None
    command = [sys.executable, "-m", "exchange.cli", "node", "status", "--json", "--config"]
    status = await asyncio.to_thread(
        subprocess.run,
        [*command, str(fed.config_path("DE"))],
        capture_output=True,
        text=True,
        check=True,
    )
    shown = json.loads(status.stdout)["status"]
    assert shown["connector.hangs.state"].startswith("down since")
    assert shown["connector.file.state"] == "up"
