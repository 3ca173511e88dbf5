"""The file-drop connector: CSV and JSONL files dropped into a folder, each row submitted on
its own, bad rows written beside the processed file with their line numbers and reasons."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from connectors.api import ConnectorContext
from connectors.file_drop import FileDropConnector
from exchange.errors import InputError
from exchange.ids import NodeId
from nodes.logging import get_logger
from tests.helpers.federation import Federation, alert_data
from tests.helpers.nodes import make_node

HEADER = "title,category,observed_at,description,domain,url,tlp,handling_code,country_of_origin"


def csv_line(title: str, category: str = "FRAUDULENT_SALES") -> str:
    return (
        f"{title},{category},2026-11-28T10:00:00+00:00,Seen by a patrol,"
        "shop.example;shop2.example,https://shop.example/pay,GREEN,H0,FR"
    )


def jsonl_line(title: str) -> str:
    return json.dumps(
        {"payload": alert_data(title=title), "handling": {"tlp": "GREEN", "code": "H0"}}
    )


def rejected(processed: Path, name: str) -> list[dict[str, Any]]:
    (path,) = processed.glob(f"*-{name}.rejected.jsonl")
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.mark.integration
async def test_good_rows_are_submitted_and_bad_rows_listed_beside_the_moved_file(
    live_federation: Federation, tmp_path: Path
) -> None:
    """A CSV completed by a .done marker and a JSONL that stopped changing are each taken
    once: their good rows reach another member, each file is moved aside, and each bad row
    is written beside it with its line number and the field at fault."""
    drop = tmp_path / "drop"
    drop.mkdir()
    spec = {
        "name": "drop",
        "plugin": "file-drop",
        "options": {"folder": str(drop), "poll_interval_s": 0.1, "settle_s": 0.3},
    }
    fr = make_node(live_federation, "FR", connectors=[spec])
    de = make_node(live_federation, "DE")
    await fr.start()
    await de.start()
    try:
        rows = [HEADER, csv_line("csv one"), csv_line(""), csv_line("csv two", "NOPE")]
        rows.append(csv_line("csv three"))
        (drop / "patrol.csv").write_text("\n".join(rows) + "\n")
        (drop / "patrol.csv.done").write_text("")
        (drop / "hotline.jsonl.part").write_text(jsonl_line("jsonl one") + "\n{not json\n")
        (drop / "hotline.jsonl.part").rename(drop / "hotline.jsonl")
        await de.wait_stored(3)
        titles = {r.payload["title"] for r in await de.store.list_records(topic=de.topics[0])}
        assert titles == {"csv one", "csv three", "jsonl one"}
        processed = drop / "processed"
        await fr.wait_until(lambda: len(list(processed.glob("*-hotline.jsonl"))) == 1)
        await fr.wait_until(lambda: len(list(processed.glob("*-patrol.csv"))) == 1)
        assert sorted(p.name for p in drop.iterdir()) == ["processed"]
        bad_csv = rejected(processed, "patrol.csv")
        assert [r["line"] for r in bad_csv] == [3, 4]
        assert "payload.title" in {p["field"] for p in bad_csv[0]["problems"]}
        assert bad_csv[1]["problems"][0]["field"] == "payload.category"
        assert bad_csv[1]["row"] == csv_line("csv two", "NOPE")
        bad_jsonl = rejected(processed, "hotline.jsonl")
        assert [(r["line"], r["problems"][0]["field"]) for r in bad_jsonl] == [(2, "json")]
    finally:
        await fr.stop()
        await de.stop()


async def test_a_file_half_done_before_a_crash_resumes_after_the_rows_already_submitted(
    tmp_path: Path,
) -> None:
    """The progress file names the lines already submitted: a restart submits only the rest
    (nothing lost, nothing repeated), and a file still being written is not taken."""
    submitted: list[str] = []

    async def submit(message_type: str, payload: dict[str, Any], **_: Any) -> int:
        if not payload.get("title"):
            raise InputError([("payload.title", "required")])
        submitted.append(payload["title"])
        return len(submitted)

    context = ConnectorContext(
        node_id=NodeId("FR"),
        name="drop",
        options={"folder": "drop", "settle_s": 60},
        log=get_logger(connector="drop"),
        base_dir=tmp_path,
        submit=submit,
    )
    connector = FileDropConnector(context)
    (tmp_path / "drop" / "processed").mkdir(parents=True)
    lines = [jsonl_line("before the crash"), jsonl_line("after the crash")]
    (tmp_path / "drop" / "x.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "drop" / "processed" / ".x.jsonl.progress").write_text("1\n")
    assert connector.ready(now=0.0) == []  # just seen: may still be growing
    assert connector.ready(now=1.0) == []
    (tmp_path / "drop" / "x.jsonl.done").touch()
    (ready,) = connector.ready(now=2.0)
    await connector.process(ready, context)
    assert submitted == ["after the crash"]
    assert not (tmp_path / "drop" / "processed" / ".x.jsonl.progress").exists()
    assert len(list((tmp_path / "drop" / "processed").glob("*-x.jsonl"))) == 1
    assert not (tmp_path / "drop" / "x.jsonl.done").exists()
