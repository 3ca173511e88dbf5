"""Three real nodes exchange alerts, blacklist deltas, pseudonym queries and answers (and a
non-member's garbage) over the real broker; each publishes its statistical indicator, and
every node's report holds what each member actually sent, stored and quarantined, counted
here independently from each member's SQLite file."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from matplotlib.image import imread

from exchange.cli import main
from exchange.models import IndicatorMeasure, StatisticalIndicator
from exchange.stats.period import Period, PeriodKind, period_containing
from exchange.topics import TopicKind, topic_name
from nodes.daemon import Node
from nodes.pseudonyms.cli import import_file
from nodes.stats import render
from nodes.stats.publish import Outcome, publish_period
from nodes.stats.report import Report, load_report
from nodes.store.base import AuditAction
from tests.helpers.federation import Federation, alert_data
from tests.helpers.nodes import make_node as tuned_node
from tests.helpers.nodes import running
from tests.node.helpers import wait_for
from tests.pseudonyms.test_flow import CSV as PATROL_CSV
from tests.pseudonyms.test_flow import answers, ask
from tests.pseudonyms.test_flow import service as pseudonym_service

pytestmark = pytest.mark.integration

#: FR hides counts under 5; DE and NL publish exact counts (threshold 0).
THRESHOLDS = {"FR": 5, "DE": 0, "NL": 0}
M = IndicatorMeasure


def make_node(fed: Federation, name: str) -> Node:
    stats = {"enabled": False, "threshold": THRESHOLDS[name]}
    rules = {"pseudonyms": {"query_allowed_from": ["*"]}}
    return tuned_node(fed, name, stats=stats, rules=rules)


async def publish_now(node: Node, period: Period) -> Outcome:
    """``node`` publishes its indicator for ``period`` now, as the ``test`` actor."""
    return await publish_period(
        node.store,
        node=node.config.node,
        prefix=node.config.kafka.topic_prefix,
        stats=node.config.stats,
        period=period,
        now=datetime.now(UTC),
        actor="test",
    )


async def alerts(node: Node, category: str, n: int) -> None:
    for i in range(n):
        data = alert_data(f"{category} {i}", category, observed_at=datetime.now(UTC))
        await node.submit("OffenceAlert", data, handling={"tlp": "GREEN", "code": "H0"})


def delta(list_id: str, added: dict[str, str], removed: list[str]) -> dict[str, Any]:
    at = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    return {
        "list_id": list_id,
        "base_version": 0,
        "version": 1,
        "added": [
            {"kind": "DOMAIN", "value": v, "category": c, "added_at": at} for v, c in added.items()
        ],
        "removed": [{"kind": "DOMAIN", "value": v} for v in removed],
        "reason": "weekly review",
    }


async def everyone_caught_up(nodes: list[Node]) -> None:
    """Every node's outbox is empty (all acknowledged), then every node has committed every
    record on the bus as of then (other loops, e.g. the blacklist's, may publish too)."""
    for node in nodes:

        async def sent(node: Node = node) -> bool:
            return await node.store.outbox_depth() == 0

        await wait_for(sent, within_s=60, what=f"{node.config.node_id}'s outbox sent")
    for node in nodes:
        await node.wait_caught_up(60)


def truth(db: Path, node: str, period: Period) -> Counter[tuple[str, str | None, str | None]]:
    """What ``node`` sent, received and quarantined in ``period``, read from its SQLite file
    with plain SQL (independent of nodes.stats)."""
    start, end = (int(t.timestamp() * 1_000_000) for t in period.bounds())
    conn = sqlite3.connect(db)
    out: Counter[tuple[str, str | None, str | None]] = Counter()
    try:
        sent = conn.execute(
            "SELECT message_type, payload FROM outbox WHERE status = 'sent'"
            " AND sent_at >= ? AND sent_at < ?",
            (start, end),
        ).fetchall()
        received = conn.execute(
            "SELECT message_type, payload FROM records WHERE sender <> ?"
            " AND received_at >= ? AND received_at < ?",
            (node, start, end),
        ).fetchall()
        queries = {
            json.loads(p)["query_id"]: json.loads(p)["category"]
            for (p,) in conn.execute(
                "SELECT payload FROM outbox WHERE message_type = 'PseudonymQuery' UNION ALL"
                " SELECT payload FROM records WHERE message_type = 'PseudonymQuery'"
            )
        }
        for reason, n in conn.execute(
            "SELECT reason, count(*) FROM quarantine WHERE received_at >= ? AND received_at < ?"
            " GROUP BY reason",
            (start, end),
        ):
            out[("QUARANTINED", None, reason)] = n
    finally:
        conn.close()
    for direction, rows in (("SENT", sent), ("RECEIVED", received)):
        for message_type, text in rows:
            p = json.loads(text)
            if message_type == "OffenceAlert":
                out[(f"ALERTS_{direction}", p["category"], None)] += 1
            elif message_type == "BlacklistDelta":
                if p.get("kind", "DELTA") != "DELTA":
                    continue
                for entry in p["added"]:
                    out[(f"BLACKLIST_ADDED_{direction}", entry["category"], None)] += 1
                if p["removed"]:
                    out[(f"BLACKLIST_REMOVED_{direction}", None, None)] += len(p["removed"])
            elif message_type == "PseudonymQuery":
                out[(f"PSEUDONYM_QUERIES_{direction}", p["category"], None)] += 1
            elif message_type == "PseudonymResponse" and p["hit"]:
                out[(f"PSEUDONYM_HITS_{direction}", queries[p["query_id"]], None)] += 1
    return out


def published_cells(ind: StatisticalIndicator) -> dict[tuple[str, str | None, str | None], str]:
    return {
        (m.measure.value, m.category.value if m.category else None, m.reason): (
            f"<{m.suppressed_below}" if m.count is None else str(m.count)
        )
        for m in ind.measures
    }


def expected_cells(
    counts: Counter[tuple[str, str | None, str | None]], threshold: int
) -> dict[tuple[str, str | None, str | None], str]:
    """Non-zero cells as the sender must show them."""
    return {
        cell: (f"<{threshold}" if threshold > 1 and n < threshold else str(n))
        for cell, n in counts.items()
        if n
    }


def in_force(report: Report, member: str) -> StatisticalIndicator:
    (cur,) = [c for c in report.current if c.sender == member]
    return cur.latest.indicator


async def produce_garbage(fed: Federation) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=fed.bootstrap)
    await producer.start()
    try:
        topic = topic_name(TopicKind.ALERTS, fed.prefix)
        for i in range(2):
            await producer.send_and_wait(topic, b"not an envelope", key=f"junk-{i}".encode())
    finally:
        await producer.stop()


async def test_published_indicators_equal_what_each_node_sent_stored_and_quarantined(
    live_federation: Federation, tmp_path: Path
) -> None:
    """Each member's indicator equals its store's own counts (FR's under 5 hidden as "<5");
    a correction replaces the earlier revision everywhere; the report's files hold them; the
    auditor's replay counts the indicators; publishing is a DISCLOSURE audit entry."""
    fed = live_federation
    fr, de, nl = (make_node(fed, n) for n in ("FR", "DE", "NL"))
    nodes = [fr, de, nl]
    async with running(*nodes):
        await alerts(fr, "FRAUDULENT_SALES", 6)
        await alerts(fr, "IDENTITY_THEFT", 2)
        await alerts(de, "IDENTITY_THEFT", 3)
        await alerts(nl, "FINANCIAL_OFFENCE", 1)
        bl = delta(
            "de.domains", {"a.example": "FRAUDULENT_SALES", "b.example": "OTHER"}, ["c.example"]
        )
        await de.submit("BlacklistDelta", bl, handling={"tlp": "GREEN", "code": "H0"})
        # NL asks (blinded) about a handle DE's patrol holds: DE answers HIT, FR NO_HIT.
        csv_path = tmp_path / "patrol.csv"
        csv_path.write_text(PATROL_CSV, encoding="utf-8")
        await import_file(
            pseudonym_service(de), de.store, csv_path, actor="test", now=datetime.now(UTC)
        )
        query_id = await ask(nl)  # category ILLICIT_DRUG_TRADE
        await produce_garbage(fed)
        got = await answers(nl, query_id, 2)
        assert (got["DE"]["outcome"], got["FR"]["outcome"]) == ("HIT", "NO_HIT")
        await everyone_caught_up(nodes)

        period = period_containing(datetime.now(UTC).date(), PeriodKind.MONTH)
        expected = {}
        for node in nodes:
            name = node.config.node_id
            counted = truth(fed.db_path(name), name, period)
            expected[name] = expected_cells(counted, THRESHOLDS[name])
            outcome = await publish_now(node, period)
            assert outcome.queued
            assert outcome.indicator.revision == 1
        # the traffic did reach every kind of count
        assert expected["FR"][("ALERTS_SENT", "FRAUDULENT_SALES", None)] == "6"
        assert expected["FR"][("ALERTS_SENT", "IDENTITY_THEFT", None)] == "<5"
        assert expected["NL"][("PSEUDONYM_HITS_RECEIVED", "ILLICIT_DRUG_TRADE", None)] == "1"
        assert expected["DE"][("PSEUDONYM_HITS_SENT", "ILLICIT_DRUG_TRADE", None)] == "1"
        assert expected["DE"][("BLACKLIST_REMOVED_SENT", None, None)] == "1"
        assert expected["NL"][("BLACKLIST_ADDED_RECEIVED", "OTHER", None)] == "1"
        assert expected["DE"][("QUARANTINED", None, "malformed")] == "2"
        await everyone_caught_up(nodes)

        for reader in nodes:
            report = await load_report(reader.store, now=datetime.now(UTC))
            assert {c.sender for c in report.current} == {"FR", "DE", "NL"}
            for member in ("FR", "DE", "NL"):
                shown = published_cells(in_force(report, member))
                nonzero = {k: v for k, v in shown.items() if v not in ("0", "<5")}
                assert nonzero == {k: v for k, v in expected[member].items() if v != "<5"}
                for cell, value in expected[member].items():
                    assert shown[cell] == value, (member, cell)

        # the threshold: DE stored FR's small count as null + suppressed_below, never the 2
        (stored,) = [
            r
            for r in await de.store.list_records(sender="FR", limit=50)
            if r.message_type == "StatisticalIndicator"
        ]
        (cell,) = [
            m
            for m in stored.payload["measures"]
            if m["measure"] == "ALERTS_SENT" and m["category"] == "IDENTITY_THEFT"
        ]
        assert cell["count"] is None
        assert cell["suppressed_below"] == 5
        legacy = {c["category"]: c["count"] for c in stored.payload["counts"]}
        assert legacy == {"FRAUDULENT_SALES": 6}

        # unchanged counts: nothing queued again; a change: revision 2 replaces revision 1
        same = await publish_now(fr, period)
        assert not same.queued
        await alerts(fr, "IDENTITY_THEFT", 5)
        await everyone_caught_up(nodes)
        corrected = await publish_now(fr, period)
        assert corrected.queued
        assert corrected.replaces_revision == 1
        await everyone_caught_up(nodes)
        report = await load_report(de.store, now=datetime.now(UTC))
        (fr_now,) = [c for c in report.current if c.sender == "FR"]
        assert fr_now.latest.indicator.revision == 2
        assert [p.indicator.revision for p in fr_now.replaced] == [1]
        fixed = published_cells(fr_now.latest.indicator)
        assert fixed[("ALERTS_SENT", "IDENTITY_THEFT", None)] == "7"
        rows = [r for r in report.rows if r.member == "FR" and r.category == "IDENTITY_THEFT"]
        assert rows
        assert all(r.replaced == (1,) for r in rows)

        # the files: CSV, JSON, PNG (decoded, and the figure's lines), HTML
        for suffix in render.SUFFIXES:
            render.write(report, tmp_path / f"report{suffix}", [M.ALERTS_SENT, M.ALERTS_RECEIVED])
        fig = render.figure(report, M.ALERTS_SENT)
        lines = {
            (ax.get_title(), str(line.get_label())): list(line.get_ydata())
            for ax in fig.axes
            for line in ax.get_lines()
        }
        assert lines[("fraudulent sales", "FR")] == [6.0]
        assert lines[("identity theft", "FR")] == [7.0]
        assert lines[("identity theft", "DE")] == [3.0]
        assert lines[("financial offence", "NL")] == [1.0]
        assert [line.get_label() for line in fig.axes[0].get_lines()] == ["DE", "FR", "NL"]
        width, height = (round(v) for v in fig.get_size_inches() * fig.dpi)
        image = imread(tmp_path / "report.png")
        assert image.shape[:2] == (height, width)
        page = (tmp_path / "report.html").read_text()
        assert page.count("data:image/png;base64,") == 2
        assert "corrected" in page
        data = json.loads((tmp_path / "report.json").read_text())
        (fr_json,) = [i for i in data["indicators"] if i["member"] == "FR"]
        assert fr_json["revision"] == 2
        assert [r["revision"] for r in fr_json["replaced"]] == [1]
        csv_text = (tmp_path / "report.csv").read_text()
        assert f"FR,{period.label}," in csv_text

        text = render.table(report)
        assert "FR r2 (replaces r1)" in text
        (line,) = [x for x in text.splitlines() if "ALERTS_SENT" in x and "IDENTITY_THEFT" in x]
        assert line.split()[-3:] == ["3", "7", "0"]  # DE, FR, NL
        cli_png = tmp_path / "cli.png"
        args = ["stats", "report", "--config", str(fed.config_path("NL")), "--out", str(cli_png)]
        assert await asyncio.to_thread(main, args) == 0
        assert imread(cli_png).shape[:2] == (height, width)

        # publishing is an audit event
        entries = await fr.store.audit_entries(limit=1000)
        published = [e for e in entries if e.event.details.get("kind") == "statistical_indicator"]
        assert [e.event.action for e in published] == [AuditAction.DISCLOSURE] * 2
        assert [e.event.details["revision"] for e in published] == [1, 2]

    # the auditor's replay counts the four indicators like any record
    out = tmp_path / "audit.json"
    code = await asyncio.to_thread(
        main,
        [
            "audit", "replay", "--bootstrap", fed.bootstrap, "--trust", str(fed.trust_path),
            "--prefix", fed.prefix, "--topic", topic_name(TopicKind.INDICATORS, fed.prefix),
            "--report", str(out),
        ],
    )  # fmt: skip
    audit = json.loads(out.read_text())
    assert code == 0, audit
    assert audit["counts"]["by_message_type"] == {"StatisticalIndicator": 4}
