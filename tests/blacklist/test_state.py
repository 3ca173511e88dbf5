"""The joint list in the store (SQLite and PostgreSQL): deltas applied in order, gaps held
and repaired, only the owner's removals, rules and expiries honoured in every export."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from exchange.blacklist.deltas import Delta
from exchange.blacklist.policy import ListRule
from exchange.blacklist.render import ExportFormat
from nodes.blacklist import export as export_module
from nodes.blacklist.db import BlacklistDB
from nodes.blacklist.export import applied, confirm_applied, write_export
from nodes.blacklist.state import SyncReport, receive, state_rows, versions
from tests.blacklist.conftest import delta
from tests.helpers.federation import NOW

RULE2 = ListRule(min_members=2)


async def feed(db: BlacklistDB, *deltas: Delta) -> SyncReport:
    report = SyncReport()
    async with db.transaction() as tx:
        for d in deltas:
            await receive(tx, d, NOW, report)
    return report


def check_rpz(path: Path) -> None:
    done = subprocess.run(
        ["named-checkzone", "rpz.ncp.invalid", str(path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


async def export(
    db: BlacklistDB,
    tmp_path: Path,
    fmt: ExportFormat = ExportFormat.DOMAINS,
    rule: ListRule = RULE2,
    at=NOW,
) -> list[str]:  # type: ignore[no-untyped-def]
    out = tmp_path / f"csam.{fmt.value}"
    await write_export(db, joint="csam", fmt=fmt, out=out, rule=rule, now=at)
    if fmt is ExportFormat.RPZ:
        check_rpz(out)
    return [line for line in out.read_text().splitlines() if not line.startswith(("#", ";"))]


async def test_only_entries_listed_by_two_members_are_exported_under_a_two_member_rule(
    db: BlacklistDB, tmp_path: Path
) -> None:
    await feed(
        db,
        delta("FR", "fr.csam", 0, 1, [("DOMAIN", "Both.Example."), ("DOMAIN", "fr-only.example")]),
        delta("NL", "nl.csam", 0, 1, [("DOMAIN", "both.example"), ("DOMAIN", "nl-only.example")]),
    )
    assert await export(db, tmp_path) == ["both.example"]
    one = await export(db, tmp_path, rule=ListRule())
    assert one == ["both.example", "fr-only.example", "nl-only.example"]


async def test_a_removal_by_the_owner_leaves_the_next_export_of_every_format(
    db: BlacklistDB, tmp_path: Path
) -> None:
    await feed(
        db,
        delta(
            "FR",
            "fr.csam",
            0,
            1,
            [
                ("DOMAIN", "gone.example"),
                ("URL", "http://gone.example/a"),
                ("HASH", "SHA256:" + "ab" * 32),
                ("IP", "192.0.2.0/24"),
            ],
        ),
    )
    rule = ListRule()
    before = {f: await export(db, tmp_path, f, rule) for f in ExportFormat}
    assert all(before[f] for f in ExportFormat)
    await feed(
        db,
        delta(
            "FR",
            "fr.csam",
            1,
            2,
            removed=[
                ("DOMAIN", "GONE.example"),
                ("URL", "HTTP://gone.example:80/a"),
                ("HASH", "SHA256:" + "AB" * 32),
                ("IP", "192.0.2.0/24"),
            ],
        ),
    )
    for fmt in ExportFormat:
        body = await export(db, tmp_path, fmt, rule)
        assert not [line for line in body if "gone" in line or "ab" * 32 in line or "192" in line]


async def test_an_rpz_export_passes_named_checkzone_and_its_serial_grows_only_with_change(
    db: BlacklistDB, tmp_path: Path
) -> None:
    await feed(
        db,
        delta(
            "FR",
            "fr.csam",
            0,
            1,
            [("DOMAIN", "xn--bcher-kva.example"), ("IP", "2001:db8::/32"), ("IP", "198.51.100.7")],
        ),
    )
    out = tmp_path / "csam.rpz"
    first = await write_export(
        db, joint="csam", fmt=ExportFormat.RPZ, out=out, rule=ListRule(), now=NOW
    )
    check_rpz(out)
    same = await write_export(
        db, joint="csam", fmt=ExportFormat.RPZ, out=out, rule=ListRule(), now=NOW
    )
    await feed(db, delta("FR", "fr.csam", 1, 2, [("DOMAIN", "new.example")]))
    changed = await write_export(
        db, joint="csam", fmt=ExportFormat.RPZ, out=out, rule=ListRule(), now=NOW
    )
    check_rpz(out)
    assert (first.serial, same.serial, changed.serial) == (1, 1, 2)
    assert "; versions: fr.csam=2" in out.read_text()
    assert "32.zz.db8.2001.rpz-ip CNAME ." in out.read_text()


async def test_a_gap_is_held_then_applied_when_the_missing_delta_arrives(db: BlacklistDB) -> None:
    report = await feed(
        db,
        delta("FR", "fr.csam", 0, 1, [("DOMAIN", "one.example")]),
        delta("FR", "fr.csam", 2, 3, [("DOMAIN", "three.example")]),
    )
    assert report.counts["hold"] == 1
    assert await versions(db) == {"fr.csam": 1}
    async with db.transaction() as tx:
        repairs = await tx.fetch("SELECT list_id, held_version FROM bl_repairs")
    assert repairs == [("fr.csam", 1)]
    await feed(db, delta("FR", "fr.csam", 1, 2, [("DOMAIN", "two.example")]))
    assert await versions(db) == {"fr.csam": 3}
    async with db.transaction() as tx:
        assert await tx.fetch("SELECT list_id FROM bl_repairs") == []
        assert await tx.fetch("SELECT list_id FROM bl_held") == []


async def test_a_snapshot_repairs_a_gap_and_held_later_deltas_then_apply(db: BlacklistDB) -> None:
    await feed(
        db,
        delta("FR", "fr.csam", 0, 1, [("DOMAIN", "one.example"), ("DOMAIN", "dropped.example")]),
        delta("FR", "fr.csam", 3, 4, [("DOMAIN", "four.example")]),
    )
    await feed(
        db,
        delta(
            "FR",
            "fr.csam",
            0,
            3,
            [("DOMAIN", "one.example"), ("DOMAIN", "three.example")],
            kind="SNAPSHOT",
        ),
    )
    assert await versions(db) == {"fr.csam": 4}
    values = {r[2] for r in await state_rows(db) if len(r) > 2}
    assert values == {"one.example", "three.example", "four.example"}


async def test_replayed_and_straddling_deltas_change_nothing(db: BlacklistDB) -> None:
    first = delta("FR", "fr.csam", 0, 1, [("DOMAIN", "one.example")])
    await feed(db, first, delta("FR", "fr.csam", 1, 2, removed=[("DOMAIN", "one.example")]))
    report = await feed(db, first, delta("FR", "fr.csam", 0, 5, [("DOMAIN", "x.example")]))
    assert report.counts["stale"] == 1
    assert report.counts["conflict"] == 1
    assert [r for r in await state_rows(db) if len(r) > 2] == []


async def test_expired_entries_leave_the_export_at_their_expiry(
    db: BlacklistDB, tmp_path: Path
) -> None:
    await feed(
        db,
        delta(
            "FR",
            "fr.csam",
            0,
            1,
            [("DOMAIN", "brief.example")],
            expires_at=NOW + timedelta(hours=1),
        ),
    )
    assert await export(db, tmp_path, rule=ListRule()) == ["brief.example"]
    assert await export(db, tmp_path, rule=ListRule(), at=NOW + timedelta(hours=1)) == []


async def test_owners_not_accepted_for_a_category_do_not_count(
    db: BlacklistDB, tmp_path: Path
) -> None:
    await feed(
        db,
        delta("FR", "fr.csam", 0, 1, [("DOMAIN", "a.example")]),
        delta("NL", "nl.csam", 0, 1, [("DOMAIN", "a.example")]),
    )
    only_fr = ListRule(2, {"CHILD_SEXUAL_ABUSE_MATERIAL": frozenset({"FR", "DE"})})
    assert await export(db, tmp_path, rule=only_fr) == []
    assert await export(db, tmp_path, rule=ListRule(1, only_fr.owners)) == ["a.example"]


async def test_a_consumer_that_confirmed_an_older_export_is_shown_lagging(
    db: BlacklistDB, tmp_path: Path
) -> None:
    await feed(db, delta("FR", "fr.csam", 0, 1, [("DOMAIN", "a.example")]))
    out = tmp_path / "csam.rpz"
    await write_export(db, joint="csam", fmt=ExportFormat.RPZ, out=out, rule=ListRule(), now=NOW)
    applied_copy = tmp_path / "isp-a.rpz"
    applied_copy.write_bytes(out.read_bytes())
    serial, vers = await confirm_applied(db, consumer="isp-a", export_file=applied_copy, now=NOW)
    assert (serial, vers) == (1, {"fr.csam": 1})
    assert [r["lag"] for r in await applied(db)] == [0]
    await feed(db, delta("FR", "fr.csam", 1, 2, removed=[("DOMAIN", "a.example")]))
    await write_export(db, joint="csam", fmt=ExportFormat.RPZ, out=out, rule=ListRule(), now=NOW)
    (row,) = await applied(db)
    assert row["lag"] == 1
    assert row["current_versions"] == {"fr.csam": 2}


async def test_paged_exports_count_listings_that_straddle_a_page_boundary(
    db: BlacklistDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [f"d{i}.example" for i in range(7)]
    await feed(
        db,
        delta("FR", "fr.csam", 0, 1, [("DOMAIN", d) for d in names]),
        delta("NL", "nl.csam", 0, 1, [("DOMAIN", d) for d in names[::2]]),
    )
    monkeypatch.setattr(export_module, "FETCH", 3)  # pages of 3 listings: pairs get cut
    assert await export(db, tmp_path) == names[::2]


async def test_a_domain_too_long_for_the_zone_cannot_break_the_rpz(
    db: BlacklistDB, tmp_path: Path
) -> None:
    """A member listing a 251-character name: the RPZ leaves it out and stays loadable."""
    long_name = ".".join(["a" * 60, "b" * 60, "c" * 60, "d" * 60, "example"])
    await feed(db, delta("FR", "fr.csam", 0, 1, [("DOMAIN", long_name), ("DOMAIN", "ok.example")]))
    rpz = await export(db, tmp_path, ExportFormat.RPZ, ListRule())
    assert rpz[-2:] == ["ok.example CNAME .", "*.ok.example CNAME ."]
    assert long_name in await export(db, tmp_path, ExportFormat.DOMAINS, ListRule())
