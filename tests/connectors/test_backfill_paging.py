"""``exchange connector backfill`` reads the store a page at a time: a history longer than a
page reaches the connector whole, oldest message id first, one DISCLOSURE per page, and the
store is never asked for more than a page at once nor read ahead of the connector. Real
SQLite and PostgreSQL stores."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from connectors.api import ConnectorContext, SharedRecord
from nodes.config import NodeConfig, load_config
from nodes.connector_cli import backfill
from nodes.store.base import AuditAction, AuditEvent, StoredRecord, open_store
from nodes.store.postgres import PostgresStore
from nodes.store.sqlite import SqliteStore
from tests.helpers.federation import make_federation
from tests.helpers.postgres import postgres_server, postgres_url, store_url
from tests.store.conftest import NOW, commit, make_record, retraction

__all__ = ["postgres_server", "postgres_url", "store_url"]

PAGE = 3
HERE = "tests.connectors.test_backfill_paging"


class Ledger:
    """An outbound connector that appends each message id it is handed to a file; with the
    option ``fail_after`` it raises on the delivery after that many (a case system going
    down mid-way)."""

    def __init__(self, context: ConnectorContext) -> None:
        self.path = Path(context.options["path"])
        self.fail_after: int | None = context.options.get("fail_after")
        self.count = 0

    async def deliver(self, record: SharedRecord, context: ConnectorContext) -> bool:
        if self.fail_after is not None and self.count >= self.fail_after:
            raise RuntimeError("case system down")
        self.count += 1
        with self.path.open("a", encoding="utf-8") as out:
            out.write(f"{record.message_id}\n")
        return True

    async def retract(self, message_id: UUID, context: ConnectorContext) -> bool:
        return True

    async def close(self) -> None:
        return None


def handed(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def node_config(tmp_path: Path, store_url: str, **options: Any) -> NodeConfig:
    """DE's config on ``store_url`` with one connector ``late`` (alerts and indicators only)."""
    folder = tmp_path / "fed"
    path = folder / "DE" / "node.toml"
    if not path.exists():
        path = make_federation(folder).config_path("DE")
    spec = {
        "name": "late",
        "plugin": f"{HERE}:Ledger",
        "topics": ["alerts", "indicators"],
        "options": {"path": str(tmp_path / "late.txt"), **options},
    }
    return load_config(path, store={"url": store_url}, connectors=[spec])


async def stored_history(url: str) -> tuple[list[StoredRecord], StoredRecord]:
    """Twelve records of the connector's topics (one above its handling-code limit) stored in
    shuffled order, plus some it must not get (another topic, a withdrawn one); the records
    due to it in message-id order, and the one withheld."""
    due = [
        make_record(
            offset=i,
            at=NOW - timedelta(minutes=20 - i),
            topic="ncp.alerts.v1" if i % 2 else "ncp.indicators.v1",
            sender=("FR", "NL")[i % 2],
        )
        for i in range(12)
    ]
    secret = replace(due[4], handling_code="H3")
    due[4] = secret
    unchosen = make_record(offset=50, topic="ncp.blacklist.v1")
    withdrawn = make_record(offset=51, at=NOW - timedelta(minutes=30))
    shuffled = [*due, unchosen, withdrawn]
    random.Random(3).shuffle(shuffled)
    store = open_store(url)
    await store.open()
    try:
        await commit(store, records=shuffled)
        await commit(store, retractions=[retraction(withdrawn, purge=False)])
    finally:
        await store.close()
    return sorted(due, key=lambda r: r.message_id.bytes), secret


async def disclosures(url: str) -> list[AuditEvent]:
    store = open_store(url)
    await store.open()
    try:
        entries = await store.audit_entries()
    finally:
        await store.close()
    return [e.event for e in entries if e.event.action is AuditAction.DISCLOSURE]


async def test_a_history_longer_than_a_page_arrives_whole_in_order_one_disclosure_a_page(
    tmp_path: Path, store_url: str
) -> None:
    """Twelve records in pages of three: all but the withheld one delivered, oldest message id
    first across both topics, and four DISCLOSURE entries, one per page, naming exactly
    what that page delivered."""
    config = node_config(tmp_path, store_url)
    due, secret = await stored_history(store_url)
    expected = [str(r.message_id) for r in due if r is not secret]

    assert await backfill(config, "late", None, page_size=PAGE) == (11, 1)

    assert handed(tmp_path / "late.txt") == expected
    events = await disclosures(store_url)
    assert [e.recipients for e in events] == [("connector:late",)] * 4
    pages = [[str(r.message_id) for r in due[i : i + PAGE]] for i in range(0, 12, PAGE)]
    assert [e.details["message_ids"] for e in events] == [
        [m for m in page if m != str(secret.message_id)] for page in pages
    ]


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[int, int, int]]:
    """Every page_records call of the real stores as (limit asked, rows returned, ids handed
    to the connector before the call); reading the whole history at once fails the test."""
    calls: list[tuple[int, int, int]] = []
    for cls in (SqliteStore, PostgresStore):
        original = cls.page_records

        async def spy(self: Any, *args: Any, _original: Any = original, **kw: Any) -> Any:
            before = len(handed(tmp_path / "late.txt"))
            page = await _original(self, *args, **kw)
            calls.append((kw["limit"], len(page), before))
            return page

        async def refused(self: Any, *args: Any, **kw: Any) -> Any:
            raise AssertionError("backfill must not load the whole history")

        monkeypatch.setattr(cls, "page_records", spy)
        monkeypatch.setattr(cls, "list_records", refused)
    return calls


async def test_the_store_is_read_one_page_at_a_time_behind_the_connector(
    tmp_path: Path, store_url: str, reads: list[tuple[int, int, int]]
) -> None:
    """Memory stays bounded by a page: every read asks for one page and gets at most one, and
    each page is handed over before the next is read (never list_records)."""
    config = node_config(tmp_path, store_url)
    await stored_history(store_url)

    assert await backfill(config, "late", None, page_size=PAGE) == (11, 1)

    assert [(limit, rows) for limit, rows, _ in reads] == [(PAGE, PAGE)] * 4 + [(PAGE, 0)]
    assert [before for _, _, before in reads] == [0, 3, 5, 8, 11]  # page 2 held the secret


async def test_a_connector_failing_mid_way_keeps_its_audited_progress_and_a_rerun_goes_on(
    tmp_path: Path, store_url: str
) -> None:
    """A connector that fails on its fifth record stops the backfill with its error after
    the pages it confirmed (and the part of the failing page) are audited; run again, the
    whole history reaches it."""
    config = node_config(tmp_path, store_url, fail_after=4)
    due, secret = await stored_history(store_url)
    expected = [str(r.message_id) for r in due if r is not secret]

    with pytest.raises(RuntimeError, match="case system down"):
        await backfill(config, "late", None, page_size=PAGE)
    assert handed(tmp_path / "late.txt") == expected[:4]
    audited = [m for e in await disclosures(store_url) for m in e.details["message_ids"]]
    assert audited == expected[:4]

    again = node_config(tmp_path, store_url)
    assert await backfill(again, "late", None, page_size=PAGE) == (11, 1)
    assert handed(tmp_path / "late.txt") == expected[:4] + expected
