"""The daemon publishes its last closed period on its own, once while nothing changes; a
member's indicator naming another member is set aside, never charted or counted as a
correction."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer

from exchange.models import StatisticalIndicator
from exchange.stats.period import PeriodKind, period_containing
from exchange.stats.tally import build_indicator
from nodes.daemon import Node
from nodes.stats.report import load_report
from tests.helpers.federation import Federation
from tests.helpers.nodes import make_node
from tests.node.helpers import wait_for

pytestmark = pytest.mark.integration


async def indicators(node: Node, sender: str) -> list[StatisticalIndicator]:
    found = await node.store.list_records(sender=sender, limit=100)
    return [
        StatisticalIndicator.model_validate(r.payload)
        for r in found
        if r.message_type == "StatisticalIndicator"
    ]


async def test_the_daemon_publishes_the_closed_period_once_and_a_forgery_is_set_aside(
    live_federation: Federation,
) -> None:
    """FR's stats loop, checking every 0.2 s, queues last month's indicator once; NL's
    indicator claiming to be FR's (a higher revision) is set aside at DE."""
    fed = live_federation
    stats = {"first_check_after_s": 0, "check_interval_s": 0.2}
    fr = make_node(fed, "FR", stats=stats)
    de = make_node(fed, "DE", stats={"enabled": False})
    last_month = period_containing(datetime.now(UTC).date(), PeriodKind.MONTH).previous()
    await fr.start()
    await de.start()
    try:

        async def arrived() -> bool:
            return len(await indicators(de, "FR")) == 1

        await wait_for(arrived, within_s=60, what="FR's scheduled indicator at DE")
        (ind,) = await indicators(de, "FR")
        assert (ind.period_start, ind.period_end, ind.revision) == (
            last_month.start,
            last_month.end,
            1,
        )
        audit = [
            e
            for e in await fr.store.audit_entries(limit=1000)
            if e.event.details.get("kind") == "statistical_indicator"
        ]
        assert [e.event.actor for e in audit] == ["node:FR/stats"]

        forged = build_indicator("FR", last_month, {}, revision=99)
        sealed = fed.member("NL").seal(forged, now=datetime.now(UTC))
        producer = AIOKafkaProducer(bootstrap_servers=fed.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(sealed.envelope.topic, sealed.value, key=sealed.key)
        finally:
            await producer.stop()

        async def forged_stored() -> bool:
            return len(await indicators(de, "NL")) == 1

        await wait_for(forged_stored, within_s=60, what="NL's forged indicator stored at DE")
        report = await load_report(de.store, now=datetime.now(UTC))
        (fr_now,) = report.current
        assert (fr_now.sender, fr_now.latest.indicator.revision, fr_now.replaced) == ("FR", 1, ())
        assert [(a.member, a.reason) for a in report.set_aside] == [("NL", "country_not_sender")]
        # many checks later, still one indicator from FR: its counts did not change
        checks = fr.supervisor.loops["stats"]
        assert checks.restarts == 0
        assert len(await indicators(de, "FR")) == 1
        assert await fr.store.outbox_depth() == 0
        await fr.stop()
        assert checks.task is not None
        assert checks.task.done()
    finally:
        await fr.stop()
        await de.stop()
