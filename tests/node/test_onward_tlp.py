"""TLP on onward sharing, against the real broker with the JSONL connector: TLP:RED and
TLP:AMBER+STRICT reach only a connector that names them, the topic's
onward_sharing_max_tlp caps every connector, and each withheld delivery is counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodes.config import load_config
from nodes.daemon import Node
from tests.helpers.federation import Federation
from tests.helpers.nodes import FAST, make_node, running
from tests.node.test_daemon import send_alert

pytestmark = pytest.mark.integration

LEVELS = ("CLEAR", "GREEN", "AMBER", "AMBER_STRICT", "RED")


def shared_tlps(path: Path) -> list[str]:
    """The TLP of each record the JSONL connector wrote, sorted."""
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return sorted(line["record"]["tlp"] for line in lines if line["event"] == "deliver")


async def test_red_and_amber_strict_reach_only_connectors_that_name_them(
    live_federation: Federation, tmp_path: Path
) -> None:
    """Of one alert per TLP level, a connector without allowed_tlp gets CLEAR..AMBER, one
    naming RED gets RED too (never AMBER+STRICT); a node whose topic caps TLP at GREEN
    passes on only CLEAR and GREEN even to a connector naming RED; withheld ones counted."""
    fed = live_federation
    plain, red_ok, capped = tmp_path / "plain.jsonl", tmp_path / "red.jsonl", tmp_path / "cap.jsonl"
    open_rules = {"alerts": {"onward_sharing_max_handling_code": "H3"}}
    fr = make_node(fed, "FR")
    de = Node(
        load_config(
            fed.config_path("DE"),
            **FAST,
            rules=open_rules,
            connectors=[
                {"name": "plain", "plugin": "jsonl", "options": {"path": str(plain)}},
                {
                    "name": "red-ok",
                    "plugin": "jsonl",
                    "allowed_tlp": ["TLP:RED"],
                    "options": {"path": str(red_ok)},
                },
            ],
        )
    )
    nl = Node(
        load_config(
            fed.config_path("NL"),
            **FAST,
            rules={"alerts": {"onward_sharing_max_tlp": "GREEN"}},
            connectors=[
                {
                    "name": "capped",
                    "plugin": "jsonl",
                    "allowed_tlp": ["RED", "AMBER+STRICT"],
                    "options": {"path": str(capped)},
                }
            ],
        )
    )
    async with running(fr, de, nl):
        for level in LEVELS:
            to = ("DE", "NL") if level == "RED" else ()  # RED needs named recipients
            await send_alert(fr, f"alert at {level}", tlp=level, to=to)
        await de.wait_stored(len(LEVELS))
        await nl.wait_stored(len(LEVELS))
        dm, nm = de.metrics, nl.metrics
        await de.wait_until(lambda: dm.disclosed.value() + dm.withheld.value() >= 2 * len(LEVELS))
        await nl.wait_until(lambda: nm.disclosed.value() + nm.withheld.value() >= len(LEVELS))
        assert shared_tlps(plain) == ["AMBER", "CLEAR", "GREEN"]
        assert shared_tlps(red_ok) == ["AMBER", "CLEAR", "GREEN", "RED"]
        assert shared_tlps(capped) == ["CLEAR", "GREEN"]
        assert dm.withheld.value(("plain", "tlp_not_allowed_by_connector")) == 2
        assert dm.withheld.value(("red-ok", "tlp_not_allowed_by_connector")) == 1
        assert nm.withheld.value(("capped", "tlp_above_topic_max")) == 3
        assert (dm.disclosed.value("plain"), dm.disclosed.value("red-ok")) == (3, 4)
        assert (
            b'exchange_withheld_total{connector="plain",reason="tlp_not_allowed_by_connector"}'
            in (await de.metrics_text())
        )
