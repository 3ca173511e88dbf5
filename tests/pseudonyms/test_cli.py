"""``exchange pseudonym import|pending|approve`` and ``exchange trust rotate-pseudonym-key``
from the command line, on a federation's real files and SQLite store."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from exchange.cli import main
from exchange.ids import NodeId
from exchange.pseudonyms.keys import keyring_for
from exchange.trust import load_trust_list
from nodes.config import load_config
from nodes.pseudonyms.node import service_for
from nodes.pseudonyms.repo import Request
from nodes.store.base import open_store
from tests.helpers.federation import Federation, make_federation

CSV = (
    "platform,handle,case_reference,contact_unit,first_seen,last_seen\n"
    "Telegram,@dark_seller42,DE-117,BKA SO41,2026-10-01,2026-11-20\n"
    "Telegram,two words,DE-118,BKA SO41,2026-10-01,\n"
    "X,carol,,BKA SO41,2026-13-01,\n"
)


def test_import_lists_every_bad_row_keeps_the_good_ones_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three problems on two rows are printed with their lines; one row is imported."""
    fed = make_federation(tmp_path / "fed")
    csv = tmp_path / "patrol.csv"
    csv.write_text(CSV, encoding="utf-8")
    config = str(fed.config_path("DE"))
    assert main(["pseudonym", "import", "--config", config, str(csv)]) == 1
    out = capsys.readouterr()
    assert out.err.splitlines() == [
        f"error: {csv}: line 3: handle: a handle has no inner white space",
        f"error: {csv}: line 4: case_reference: is empty",
        f"error: {csv}: line 4: first_seen: not an ISO 8601 time: '2026-13-01'",
    ]
    assert out.out.strip() == "1 row(s) imported, 2 row(s) refused"
    assert main(["pseudonym", "pending", "--config", config]) == 0
    assert capsys.readouterr().out.strip() == "no requests for details pending"


def test_approving_a_request_that_is_not_pending_is_refused_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No such request: the error names REQUEST; nothing is sent."""
    fed = make_federation(tmp_path / "fed")
    args = ["--actor", "cli:duty", "--justification", "confirmed"]
    config = str(fed.config_path("DE"))
    assert main(["pseudonym", "approve", "--config", config, "nope", *args]) == 2
    assert "REQUEST: no pending request with query id nope" in capsys.readouterr().err


def test_rotating_the_pseudonym_key_writes_the_next_version_with_the_old_key_in_grace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Version + 1, a new current key, the old one with a grace end 6 h ahead."""
    fed = make_federation(tmp_path / "fed")
    (old,) = fed.trust.pseudonym_keys
    assert main(["trust", "rotate-pseudonym-key", str(fed.trust_path), "--grace-h", "6"]) == 0
    assert "pseudonym key" in capsys.readouterr().out
    new = load_trust_list(fed.trust_path)
    assert new.version == fed.trust.version + 1
    by_id = {w.key_id: w for w in new.pseudonym_keys}
    assert by_id[old.key_id].grace_until is not None
    assert [w.grace_until for w in new.pseudonym_keys if w.key_id != old.key_id] == [None]


@pytest.mark.integration
async def test_node_status_reports_requests_for_details_undecided_past_the_timeout(
    live_federation: Federation, capsys: pytest.CaptureFixture[str]
) -> None:
    """A request for details received three days ago and not decided: node status counts
    it as overdue (JSON and text)."""
    fed = live_federation
    config = load_config(fed.config_path("DE"))
    store = open_store(config.store.url)
    await store.open()
    try:
        ring = keyring_for(fed.trust.pseudonym_keys, NodeId("DE"), fed.nodes["DE"].encryption)
        svc = service_for(config, store, lambda: ring, lambda: fed.trust)
        request = Request(
            sender="FR",
            message_id=uuid.uuid4(),
            query_id=str(uuid.uuid4()),
            kind="details",
            received_at=datetime.now(UTC) - timedelta(days=3),
            status="pending",
            reason=None,
            facts={"case_reference": "DE-117"},
        )
        await svc.repo.settle(request, [], [])
    finally:
        await store.close()
    args = ["node", "status", "--config", str(fed.config_path("DE"))]
    assert await asyncio.to_thread(main, [*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pseudonym_details_overdue"] == 1
    assert await asyncio.to_thread(main, args) == 0
    assert "pseudonym requests for details undecided > 48 h: 1" in capsys.readouterr().out
