"""Three real nodes over the real broker: DE's exports hold exactly what the two-member
rule confirms, an owner's removal reaches them in one cycle, a non-owner's change is
quarantined, and a gap is held and then repaired from the owner's snapshot."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from exchange.blacklist.deltas import Entry
from nodes.blacklist.db import blacklist_db
from nodes.blacklist.export import confirm_applied
from nodes.blacklist.publish import publish_delta
from nodes.blacklist.state import versions
from nodes.daemon import Node
from tests.helpers.federation import Federation
from tests.helpers.nodes import make_node
from tests.node.helpers import wait_for

pytestmark = pytest.mark.integration

CSAM = "CHILD_SEXUAL_ABUSE_MATERIAL"
GREEN = {"tlp": "GREEN", "code": "H0"}


def entry(value: str) -> Entry:
    return Entry("DOMAIN", value, "", CSAM, "test", datetime.now(UTC), None)


def body(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [ln for ln in path.read_text().splitlines() if ln and not ln.startswith(("#", ";"))]


def payload(list_id: str, base: int, version: int, added: list[str], **kw: Any) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {
        "list_id": list_id,
        "base_version": base,
        "version": version,
        "reason": "test",
        "added": [{"kind": "DOMAIN", "value": v, "category": CSAM, "added_at": now} for v in added],
        "removed": kw.pop("removed", []),
        **kw,
    }


@asynccontextmanager
async def three(
    fed: Federation, exports: Path, de_store: str | None = None
) -> AsyncIterator[tuple[Node, Node, Node]]:
    """FR, NL and DE running; DE exports ``csam`` under a two-member rule through the
    ``blacklist-export`` connector, from its SQLite store or the one at ``de_store``."""
    if de_store is not None:
        path = fed.config_path("DE")
        text = path.read_text()
        assert 'url = "sqlite:///node.db"' in text
        path.write_text(text.replace('url = "sqlite:///node.db"', f'url = "{de_store}"', 1))
    for name in ("FR", "NL", "DE"):
        extra = "\n[blacklist]\nsync_interval_s = 0.2\n"
        if name == "DE":
            extra += "applied_grace_s = 0\n\n[blacklist.lists.csam]\nmin_members = 2\n"
        with fed.config_path(name).open("a") as fh:
            fh.write(extra)
    connector = {
        "name": "isp-exports",
        "plugin": "blacklist-export",
        "topics": ["blacklist"],
        "options": {
            "config": str(fed.config_path("DE")),
            "joint": "csam",
            "dir": str(exports),
            "formats": ["rpz", "domains"],
        },
    }
    nodes = [
        make_node(fed, "FR"),
        make_node(fed, "NL"),
        make_node(fed, "DE", connectors=[connector]),
    ]
    for node in nodes:
        await node.start()
    try:
        yield nodes[0], nodes[1], nodes[2]
    finally:
        for node in nodes:
            await node.stop()


async def publish(node: Node, list_id: str, added: list[str], removed: list[str] = ()) -> int:  # type: ignore[assignment]
    db = blacklist_db(node.store, node.config.store.url)
    try:
        version = await publish_delta(
            db,
            node=node.config.node,
            prefix=node.config.kafka.topic_prefix,
            trust=node._trust,
            list_id=list_id,
            added=[entry(v) for v in added],
            removed=[("DOMAIN", v, "") for v in removed],
            reason="test",
            now=datetime.now(UTC),
        )
    finally:
        await db.close()
    assert node.publisher is not None
    node.publisher.wake()
    return version


def rpz_ok(path: Path) -> bool:
    done = subprocess.run(["named-checkzone", "rpz.ncp.invalid", str(path)], capture_output=True)
    return done.returncode == 0


async def test_three_nodes_confirm_remove_refuse_and_repair(
    live_federation: Federation, tmp_path: Path
) -> None:
    exports = tmp_path / "exports"
    domains, rpz = exports / "csam.domains", exports / "csam.rpz"
    async with three(live_federation, exports) as (fr, nl, de):
        de_db = blacklist_db(de.store, de.config.store.url)
        try:
            await publish(fr, "fr.csam", ["both.example", "fr-only.example"])
            await publish(nl, "nl.csam", ["Both.Example.", "nl-only.example"])
            # NL, a member but not the owner, tries to take FR's entry off FR's list
            await nl.submit(
                "BlacklistDelta",
                payload("fr.csam", 1, 2, [], removed=[{"kind": "DOMAIN", "value": "both.example"}]),
                handling=GREEN,
                key="fr.csam",
            )
            await wait_for(
                lambda: body(domains) == ["both.example"],
                within_s=30,
                what="DE exports exactly the entry both members list",
            )
            assert rpz_ok(rpz)
            assert "both.example CNAME ." in rpz.read_text()
            isp_copy = tmp_path / "isp-a.rpz"  # what the ISP loaded, and confirms
            isp_copy.write_bytes(rpz.read_bytes())
            await confirm_applied(
                de_db, consumer="isp-a", export_file=isp_copy, now=datetime.now(UTC)
            )
            assert not [p for p in await de.health() if "isp-a" in p]

            async def refused() -> bool:
                q = await de.store.list_quarantine()
                return any("list_not_owned" in e.detail for e in q)

            await wait_for(refused, within_s=30, what="DE quarantines NL's change to FR's list")
            assert (await versions(de_db))["fr.csam"] == 1

            await publish(fr, "fr.csam", [], ["both.example"])
            await wait_for(
                lambda: body(domains) == [], within_s=30, what="FR's removal reaches DE's export"
            )
            assert rpz_ok(rpz)
            assert "both.example" not in rpz.read_text()
            lagging = [p for p in await de.health() if "isp-a" in p]
            assert lagging, "/healthz names the ISP still on the old export"
            assert "(lags " in lagging[0]

            # v3 is for FR and NL only (DE cannot read it); v4 is for everyone: DE has a gap
            await fr.submit(
                "BlacklistDelta",
                payload("fr.csam", 2, 3, ["hidden.example"]),
                handling=GREEN,
                key="fr.csam",
                recipients=["FR", "NL"],
            )
            await fr.submit(
                "BlacklistDelta",
                payload("fr.csam", 3, 4, ["four.example"]),
                handling=GREEN,
                key="fr.csam",
            )
            assert fr.publisher is not None
            fr.publisher.wake()

            async def repaired() -> bool:
                return (await versions(de_db)).get("fr.csam") == 4

            await wait_for(repaired, within_s=45, what="DE's gap repaired by FR's snapshot")
            async with de_db.transaction() as tx:
                values = {
                    r[0]
                    for r in await tx.fetch(
                        "SELECT value FROM bl_entries WHERE list_id = 'fr.csam'"
                    )
                }
                held = await tx.fetch("SELECT list_id FROM bl_held")
            assert values == {"fr-only.example", "hidden.example", "four.example"}
            assert held == []
        finally:
            await de_db.close()


@pytest.mark.postgres
async def test_a_node_on_postgresql_materializes_and_exports_the_joint_list(
    live_federation: Federation, tmp_path: Path, postgres_url: str
) -> None:
    """DE keeps its store in PostgreSQL: the daemon's task and the export connector run
    there too (advisory lock, jsonb payloads), with the same outcome."""
    exports = tmp_path / "exports"
    domains = exports / "csam.domains"
    async with three(live_federation, exports, de_store=postgres_url) as (fr, nl, de):
        assert de.config.store.url.startswith("postgresql")
        await publish(fr, "fr.csam", ["both.example", "fr-only.example"])
        await publish(nl, "nl.csam", ["both.example"])
        await wait_for(
            lambda: body(domains) == ["both.example"], within_s=30, what="DE's export on PG"
        )
        await publish(fr, "fr.csam", [], ["both.example"])
        await wait_for(lambda: body(domains) == [], within_s=30, what="the removal on PG")
        de_db = blacklist_db(de.store, de.config.store.url)
        try:
            assert await versions(de_db) == {"fr.csam": 2, "nl.csam": 1}
        finally:
            await de_db.close()


async def test_an_idle_nodes_blacklist_loop_runs_once_per_interval_not_back_to_back(
    live_federation: Federation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the nodes have stored what was sent and sit idle, each node's blacklist loop
    runs a round per sync interval (0.2 s here), not continuously: a commit wakes it once.
    The bound is loose (a busy machine runs fewer rounds, never more)."""
    from nodes.blacklist import service

    rounds: dict[str, int] = {}
    real_step = service.step

    async def counted(db: Any, node: Node) -> None:
        rounds[node.config.node_id] = rounds.get(node.config.node_id, 0) + 1
        await real_step(db, node)

    monkeypatch.setattr(service, "step", counted)
    async with three(live_federation, tmp_path / "exports") as (fr, nl, de):
        await fr.submit("BlacklistDelta", payload("fr.csam", 0, 1, ["a.example"]), handling=GREEN)
        nodes = (fr, nl, de)
        for node in nodes:
            await node.wait_caught_up(60)
        before = dict(rounds)
        window_s = 2.0
        await asyncio.sleep(window_s)  # measuring idleness: nothing to wait for
        for node in nodes:
            name = node.config.node_id
            ran = rounds.get(name, 0) - before.get(name, 0)
            assert ran <= window_s / 0.2 + 5, f"{name} ran {ran} rounds in {window_s} s idle"
