"""History and retention for every connector: ``exchange connector backfill`` hands a newly
configured connector the stored history (under the sharing rules, audited); a purge reaches
the connectors that were handed the record. Real SQLite stores."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from connectors.api import ConnectorContext
from connectors.jsonl import JsonlConnector
from exchange.ids import NodeId
from exchange.topics import TopicKind
from nodes.config import load_config
from nodes.connector_cli import backfill
from nodes.logging import get_logger
from nodes.metrics import Metrics
from nodes.outbound import Dispatcher, Outbound
from nodes.store.base import AuditAction, open_store
from tests.helpers.federation import make_federation
from tests.store.conftest import NOW, commit, make_record


def jsonl(path: Path) -> dict[str, object]:
    return {"name": "late", "plugin": "jsonl", "options": {"path": str(path)}}


def written(path: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


async def test_backfill_hands_the_stored_history_to_a_new_connector_under_the_rules(
    tmp_path: Path,
) -> None:
    """Records stored before the connector existed are delivered oldest first, --since
    leaves the older out, a record above the onward-sharing limit is withheld, and each
    page is one DISCLOSURE naming the connector."""
    fed = make_federation(tmp_path / "fed")
    out = tmp_path / "late.jsonl"
    config = load_config(fed.config_path("DE"), connectors=[jsonl(out)])
    store = open_store(config.store.url)
    await store.open()
    old, new = make_record(offset=0, at=NOW - timedelta(days=2)), make_record(offset=1)
    secret = make_record(offset=2)
    secret = type(secret)(
        **{**{f: getattr(secret, f) for f in secret.__slots__}, "handling_code": "H3"}
    )
    await commit(store, records=[new, old, secret])
    await store.close()

    assert await backfill(config, "late", NOW - timedelta(days=1)) == (1, 1)
    assert [x["record"]["message_id"] for x in written(out)] == [str(new.message_id)]
    assert await backfill(config, "late", None) == (2, 1)  # the new one again: idempotent
    assert [x["record"]["message_id"] for x in written(out)] == [
        str(new.message_id),
        str(old.message_id),
    ]
    store = open_store(config.store.url)
    await store.open()
    try:
        disclosures = [
            e.event for e in await store.audit_entries() if e.event.action is AuditAction.DISCLOSURE
        ]
    finally:
        await store.close()
    assert [d.recipients for d in disclosures] == [("connector:late",)] * 2
    assert disclosures[1].details["message_ids"] == [str(old.message_id), str(new.message_id)]


def test_the_backfill_and_token_commands_run_from_the_cli(tmp_path: Path) -> None:
    """`exchange connector token` prints a token and its hash; `backfill` names an unknown
    connector as the problem (exit 2)."""
    exe = [sys.executable, "-m", "exchange.cli"]
    token = subprocess.run([*exe, "connector", "token"], capture_output=True, text=True, check=True)
    lines = dict(line.split(":", 1) for line in token.stdout.splitlines() if ":" in line)
    assert hashlib.sha256(lines["token"].strip().encode()).hexdigest() == lines["sha256"].strip()
    fed = make_federation(tmp_path / "fed")
    bad = subprocess.run(
        [*exe, "connector", "backfill", "--config", str(fed.config_path("DE")), "nobody"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert "nobody" in bad.stderr


async def test_a_purged_record_is_retracted_from_the_connectors_that_were_handed_it(
    tmp_path: Path,
) -> None:
    """Retention erases an expired record: the connector queue tells every connector of its
    topic to drop it, in the same transaction as the erasure."""
    url = f"sqlite:///{tmp_path / 'node.db'}"
    store = open_store(url)
    await store.open()
    ctx = ConnectorContext(NodeId("DE"), "case", {"path": "out.jsonl"}, get_logger(), tmp_path)
    dispatcher = Dispatcher(
        node="DE",
        outbound=[Outbound("case", frozenset(TopicKind), JsonlConnector(ctx), ctx)],
        rules=load_config(make_federation(tmp_path / "fed").config_path("DE")).rules,
        prefix="ncp",
        store=store,
        metrics=Metrics(),
    )
    try:
        await dispatcher.open()
        doomed = make_record(offset=0, expires_at=NOW + timedelta(days=1))
        await commit(store, records=[doomed])
        await dispatcher.drain()
        assert await store.purge_expired(NOW + timedelta(days=2), "test") == [doomed.message_id]
        await dispatcher.drain()
    finally:
        await store.close()
    events = [
        (x["event"], x.get("message_id") or x["record"]["message_id"])
        for x in written(tmp_path / "out.jsonl")
    ]
    assert events == [("deliver", str(doomed.message_id)), ("retract", str(doomed.message_id))]
