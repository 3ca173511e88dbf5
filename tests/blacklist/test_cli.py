"""``exchange blacklist``: files taken whole or not at all with every problem listed, only
one's own lists changed, exports written and checked, consumers' applied versions shown."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from exchange.cli import main
from nodes.config import load_config
from nodes.store.base import open_store
from tests.blacklist.test_sync import TOPIC, payload, record
from tests.helpers.federation import NOW, Federation, make_federation


@pytest.fixture
def fed(tmp_path: Path) -> Federation:
    return make_federation(tmp_path / "fed", valid_from=NOW - timedelta(days=30))


def outbox(fed: Federation, node: str) -> list[dict[str, Any]]:
    """The payloads queued in ``node``'s outbox, oldest first (an absent store: none)."""
    path = fed.db_path(node)
    if not path.exists():
        return []
    with sqlite3.connect(path) as conn:
        try:
            rows = conn.execute("SELECT payload FROM outbox ORDER BY id").fetchall()
        except sqlite3.OperationalError:
            return []
    return [json.loads(r[0]) for r in rows]


def test_a_file_with_bad_entries_is_refused_whole_with_every_problem_listed(
    fed: Federation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entries = tmp_path / "add.txt"
    entries.write_text("DOMAIN good.example\nDOMAIN bad..example\nHASH SHA1 abc\nIP 10.0.0.1/8\n")
    code = main(
        [
            "blacklist",
            "add",
            "-c",
            str(fed.config_path("FR")),
            "--list",
            "fr.csam",
            "--file",
            str(entries),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert all(f"line {n}" in err for n in (2, 3, 4))
    assert "line 1" not in err
    assert "bad..example" in err
    assert "host bits" in err
    assert outbox(fed, "FR") == []


def test_a_good_file_publishes_the_next_version_of_ones_own_list(
    fed: Federation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entries = tmp_path / "add.txt"
    entries.write_text('DOMAIN Good.Example.\n{"kind": "URL", "value": "HTTP://x.example:80/a"}\n')
    config = str(fed.config_path("FR"))
    assert (
        main(["blacklist", "add", "-c", config, "--list", "fr.csam", "--file", str(entries)]) == 0
    )
    removal = tmp_path / "rm.txt"
    removal.write_text("DOMAIN good.example\n")
    assert (
        main(["blacklist", "remove", "-c", config, "--list", "fr.csam", "--file", str(removal)])
        == 0
    )
    first, second = outbox(fed, "FR")
    assert (first["base_version"], first["version"]) == (0, 1)
    assert (second["base_version"], second["version"]) == (1, 2)
    assert [a["value"] for a in first["added"]] == ["good.example", "http://x.example/a"]
    assert "queued fr.csam version 2" in capsys.readouterr().out


def test_a_member_cannot_change_another_members_list(
    fed: Federation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    removal = tmp_path / "rm.txt"
    removal.write_text("DOMAIN good.example\n")
    code = main(
        [
            "blacklist",
            "remove",
            "-c",
            str(fed.config_path("NL")),
            "--list",
            "fr.csam",
            "--file",
            str(removal),
        ]
    )
    assert code == 2
    assert "owned by FR" in capsys.readouterr().err
    assert outbox(fed, "NL") == []


def test_export_writes_a_checked_rpz_and_applied_shows_who_lags(
    fed: Federation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(fed.config_path("DE"))
    rpz = tmp_path / "out" / "csam.rpz"
    assert (
        main(
            [
                "blacklist",
                "export",
                "-c",
                config,
                "--joint",
                "csam",
                "--format",
                "rpz",
                "--out",
                str(rpz),
            ]
        )
        == 0
    )
    checked = subprocess.run(["named-checkzone", "rpz.ncp.invalid", str(rpz)], capture_output=True)
    assert checked.returncode == 0
    assert (
        main(["blacklist", "confirm", "-c", config, "--consumer", "isp-a", "--file", str(rpz)]) == 0
    )
    capsys.readouterr()
    assert main(["blacklist", "applied", "-c", config]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["consumer"] == "isp-a"
    assert row["lag"] == 0


def test_show_gives_each_entry_with_who_listed_it_since_when_and_in_which_version(
    fed: Federation, capsys: pytest.CaptureFixture[str]
) -> None:
    config = load_config(fed.config_path("DE"))

    async def stored() -> None:
        store = open_store(config.store.url)
        await store.open()
        try:
            records = [
                record(0, "FR", payload("fr.csam", 0, 1, ["a.example"])),
                record(1, "NL", payload("nl.csam", 0, 1, ["A.Example."])),
                record(2, "NL", payload("nl.csam", 1, 2, ["b.example"])),
            ]
            await store.commit_batch(
                "g",
                records=records,
                quarantined=[],
                retractions=[],
                audit=[],
                offsets={(TOPIC, 0): 3},
            )
        finally:
            await store.close()

    asyncio.run(stored())
    assert main(["blacklist", "show", "-c", str(fed.config_path("DE")), "--joint", "csam"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["versions"] == {"fr.csam": 1, "nl.csam": 2}
    listed = {(e["value"], e["listed_by"], e["in_version"]) for e in shown["entries"]}
    assert listed == {("a.example", "FR", 1), ("a.example", "NL", 1), ("b.example", "NL", 2)}
    assert all(e["since"].startswith("2026-11-28") for e in shown["entries"])
