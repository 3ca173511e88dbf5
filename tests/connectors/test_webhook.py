"""The webhook connector against a real aiohttp server standing for a police case system,
with nodes on the real broker: signed POSTs, a receiver that is down and comes back, a node
restart, retractions."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from aiohttp import web

from connectors.api import ConnectorContext, RecordRejected, SharedRecord
from connectors.webhook import WebhookConnector, verify_signature
from exchange.ids import NodeId
from exchange.topics import TopicKind
from nodes.daemon import Node
from nodes.logging import get_logger
from nodes.store.base import AuditAction
from tests.helpers.federation import NOW, Federation, alert_data
from tests.helpers.nodes import make_node, retract

pytestmark = pytest.mark.integration

SECRET = "a-shared-secret-of-some-length"


class CaseSystem:
    """A receiver that checks each request as docs say (signature, freshness) and processes
    each Idempotency-Key once."""

    def __init__(self) -> None:
        self.port = 0
        self.runner: web.AppRunner | None = None
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.processed: dict[str, dict[str, Any]] = {}
        self.refused = 0
        self.changed = asyncio.Event()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = int(self.runner.addresses[0][1])

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        if not verify_signature(
            SECRET.encode(),
            timestamp=headers.get("X-Exchange-Timestamp", ""),
            body=body,
            signature=headers.get("X-Exchange-Signature", ""),
            now_s=time.time(),
        ):
            self.refused += 1
            return web.Response(status=401)
        self.requests.append((headers, body))
        key = headers["Idempotency-Key"]
        if key not in self.processed:
            self.processed[key] = json.loads(body)
        self.changed.set()
        return web.Response(status=204)

    async def wait_for(self, keys: int, within_s: float = 30) -> None:
        async with asyncio.timeout(within_s):
            while len(self.processed) < keys:
                self.changed.clear()
                await self.changed.wait()


def webhook(url: str) -> dict[str, Any]:
    return {
        "name": "case",
        "plugin": "webhook",
        "topics": [TopicKind.ALERTS.value],
        "timeout_s": 5,
        "options": {"url": url, "secret": SECRET, "request_timeout_s": 2},
    }


@pytest.fixture
async def receiver() -> AsyncIterator[CaseSystem]:
    system = CaseSystem()
    await system.start()
    try:
        yield system
    finally:
        await system.stop()


@pytest.fixture
async def sender(live_federation: Federation) -> AsyncIterator[Node]:
    node = make_node(live_federation, "FR")
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


def de_node(fed: Federation, url: str) -> Node:
    return make_node(fed, "DE", connectors=[webhook(url)])


async def send(node: Node, *titles: str) -> None:
    for title in titles:
        await node.submit(
            "OffenceAlert", alert_data(title=title), handling={"tlp": "GREEN", "code": "H0"}
        )


async def test_each_record_is_posted_signed_and_an_old_replay_fails_the_check(
    live_federation: Federation, receiver: CaseSystem, sender: Node
) -> None:
    """Each stored record arrives once, signed over timestamp and body; the same request
    replayed after the tolerance, or with its body changed, fails the receiver's check; each
    delivery is a DISCLOSURE naming the connector."""
    de = de_node(live_federation, receiver.url)
    await de.start()
    try:
        await send(sender, "one", "two")
        await receiver.wait_for(2)
        assert receiver.refused == 0
        titles = {d["record"]["payload"]["title"] for d in receiver.processed.values()}
        assert titles == {"one", "two"}
        headers, body = receiver.requests[0]
        stamp, signature = headers["X-Exchange-Timestamp"], headers["X-Exchange-Signature"]
        check = {"timestamp": stamp, "signature": signature}
        assert verify_signature(SECRET.encode(), body=body, now_s=int(stamp), **check)
        assert not verify_signature(SECRET.encode(), body=body, now_s=int(stamp) + 301, **check)
        assert not verify_signature(
            SECRET.encode(), body=body.replace(b'"GREEN"', b'"CLEAR"'), now_s=int(stamp), **check
        )
        await de.wait_until(lambda: de.metrics.disclosed.value("case") >= 2)  # once audited
        entries = await de.store.audit_entries()
        disclosed = [
            m
            for e in entries
            if e.event.action is AuditAction.DISCLOSURE
            and e.event.recipients == ("connector:case",)
            for m in e.event.details["message_ids"]
        ]
        assert sorted(disclosed) == sorted(
            d["record"]["message_id"] for d in receiver.processed.values()
        )
    finally:
        await de.stop()


async def test_a_receiver_down_for_a_while_then_back_gets_everything_once_per_key(
    live_federation: Federation, receiver: CaseSystem, sender: Node
) -> None:
    """While the case system is down the node retries with backoff and shows the connector
    down; once it is back every record and the retraction arrive, each key processed once."""
    await receiver.stop()
    de = de_node(live_federation, receiver.url)
    await de.start()
    try:
        await send(sender, "a", "b", "c")
        await de.wait_stored(3)
        await de.wait_until(lambda: de.metrics.connector_failures.value("case") >= 2)
        assert de.metrics.connector_up.value("case") == 0
        assert (await de.store.get_status())["connector.case.state"].startswith("down since")
        await receiver.start()
        await receiver.wait_for(3)
        (first, *_) = await de.store.list_records(topic=de.topics[0])
        await retract(sender, first)
        await receiver.wait_for(4)
        assert receiver.processed[f"retract:{first.message_id}"]["event"] == "retract"
        delivered = [k for k in receiver.processed if k.startswith("deliver:")]
        assert len(delivered) == 3
        await de.wait_until(lambda: de.metrics.connector_up.value("case") == 1)
    finally:
        await de.stop()


async def test_records_not_yet_posted_when_the_node_stops_are_posted_after_its_restart(
    live_federation: Federation, receiver: CaseSystem, sender: Node
) -> None:
    """Stored while the case system was down, then the node restarted: nothing is lost."""
    await receiver.stop()
    de = de_node(live_federation, receiver.url)
    await de.start()
    try:
        await send(sender, "kept", "too")
        await de.wait_stored(2)
    finally:
        await de.stop()
    await receiver.start()
    again = de_node(live_federation, receiver.url)
    await again.start()
    try:
        await receiver.wait_for(2)
        titles = {d["record"]["payload"]["title"] for d in receiver.processed.values()}
        assert titles == {"kept", "too"}
    finally:
        await again.stop()


async def test_a_permanent_refusal_is_a_rejection_and_an_outage_a_retry(tmp_path: Path) -> None:
    """A case system answering 422 refuses the record for good (RecordRejected, the node
    moves on); 503 or a closed port is transient (an exception: the node retries)."""
    answers = iter([422, 503])

    async def handle(_: web.Request) -> web.Response:
        return web.Response(status=next(answers), text="no")

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = int(runner.addresses[0][1])
    options = {"url": f"http://127.0.0.1:{port}/hook", "secret": SECRET}
    ctx = ConnectorContext(NodeId("DE"), "case", options, get_logger(), tmp_path)
    hook = WebhookConnector(ctx)
    record = SharedRecord(
        uuid4(), "ncp.alerts.v1", "OffenceAlert", "FR", NOW, NOW, None, "GREEN", "H0", (), {}
    )
    try:
        with pytest.raises(RecordRejected, match="422"):
            await hook.deliver(record, ctx)
        with pytest.raises(ConnectionError, match="503"):
            await hook.deliver(record, ctx)
        await runner.cleanup()
        with pytest.raises(ConnectionError):
            await hook.retract(record.message_id, ctx)
    finally:
        await hook.close()
        await runner.cleanup()
