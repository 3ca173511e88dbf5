"""A snapshot taken at any version plus the later deltas gives the same joint list as all
the deltas, for a new node and for one that held an older version (hypothesis, real SQLite
stores)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange.blacklist.deltas import Delta, DeltaKind
from nodes.blacklist.db import opened
from nodes.blacklist.state import SyncReport, list_entries, receive, state_rows
from tests.blacklist.conftest import delta
from tests.helpers.federation import NOW

NAMES = [f"d{i}.example" for i in range(8)]
change = st.tuples(
    st.sets(st.sampled_from(NAMES), max_size=4), st.sets(st.sampled_from(NAMES), max_size=3)
)


def history(changes: list[tuple[set[str], set[str]]]) -> list[Delta]:
    out = []
    for v, (add, rem) in enumerate(changes, start=1):
        rem = rem - add
        out.append(
            delta(
                "FR",
                "fr.csam",
                v - 1,
                v,
                [("DOMAIN", d) for d in sorted(add)],
                [("DOMAIN", d) for d in sorted(rem)],
            )
        )
    return out


async def run(deltas: list[Delta], cut: int, known: int, folder: Path) -> None:
    async def feed(db, items):  # type: ignore[no-untyped-def]
        async with db.transaction() as tx:
            for d in items:
                await receive(tx, d, NOW, SyncReport())

    async with (
        opened(f"sqlite:///{folder / 'all.db'}") as every,
        opened(f"sqlite:///{folder / 'owner.db'}") as owner,
        opened(f"sqlite:///{folder / 'new.db'}") as newcomer,
    ):
        await feed(every, deltas)
        await feed(owner, deltas[:cut])
        async with owner.transaction() as tx:
            entries = await list_entries(tx, "fr.csam")
        snap = Delta("FR", "fr.csam", DeltaKind.SNAPSHOT, 0, cut, tuple(entries), (), "snapshot")
        await feed(newcomer, [*deltas[:known], snap, *deltas[cut:]])
        assert await state_rows(newcomer) == await state_rows(every)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.lists(change, min_size=1, max_size=6), data=st.data())
def test_snapshot_plus_later_deltas_equals_all_deltas(
    changes: list[tuple[set[str], set[str]]], data: st.DataObject
) -> None:
    deltas = history(changes)
    cut = data.draw(st.integers(min_value=1, max_value=len(deltas)))
    known = data.draw(st.integers(min_value=0, max_value=cut - 1))  # what it had before
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(run(deltas, cut, known, Path(folder)))
