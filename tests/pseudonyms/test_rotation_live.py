"""The federation pseudonym key rotated while nodes run: the new trust list is taken up
live from the trust topic, queries under the new key hit, and under the old key too
during its grace. Real broker, real nodes, real SQLite."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from exchange.cli import main
from exchange.ids import NodeId
from exchange.pseudonyms.keys import keyring_for
from exchange.pseudonyms.rotation import rotate
from exchange.trust import TrustList, root_fingerprint
from nodes.pseudonyms.cli import import_file
from nodes.pseudonyms.node import service_for
from tests.helpers.federation import Federation
from tests.helpers.nodes import running
from tests.pseudonyms.test_flow import CSV, answers, ask, make_node, service

pytestmark = pytest.mark.integration


def _write(fed: Federation, trust: TrustList, name: str) -> Path:
    path = fed.directory / name
    path.write_bytes(trust.sign(fed.root))
    return path


async def test_a_rotated_key_is_taken_up_live_and_the_old_one_answered_in_its_grace(
    live_federation: Federation, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """v2 with a new key is published while FR and DE run; both take it up; FR's next query
    is blinded under the new key and hits; one blinded under the old key (in its 1 h
    grace) hits too."""
    fed = live_federation
    pin = root_fingerprint(fed.root.public_bytes)
    publish = ["--bootstrap", kafka_bootstrap, "--prefix", fed.prefix, "--root-fingerprint", pin]
    v1 = _write(fed, fed.trust, "trust-v1.list")
    assert await asyncio.to_thread(main, ["trust", "publish", str(v1), *publish]) == 0
    csv = tmp_path / "patrol.csv"
    csv.write_text(CSV, encoding="utf-8")
    fr, de = make_node(fed, "FR"), make_node(fed, "DE")
    async with running(fr, de):
        await import_file(service(de), de.store, csv, actor="cli:x", now=datetime.now(UTC))
        before = await ask(fr)
        assert (await answers(fr, before, 1))["DE"]["outcome"] == "HIT"
        old_ring = keyring_for(fed.trust.pseudonym_keys, NodeId("FR"), fed.nodes["FR"].encryption)

        v2 = rotate(fed.trust, datetime.now(UTC), grace=timedelta(hours=1))
        path = _write(fed, v2, "trust-v2.list")
        assert await asyncio.to_thread(main, ["trust", "publish", str(path), *publish]) == 0
        for n in (fr, de):
            part = n.pseudonyms
            assert part is not None
            await n.wait_until(lambda p=part: p.trust.version == 2, 30)  # type: ignore[misc]
        assert fr.pseudonyms is not None
        new_key = fr.pseudonyms.ring.current
        assert new_key is not None
        assert old_ring.current is not None
        assert new_key.key_id != old_ring.current.key_id

        after = await ask(fr)
        assert (await answers(fr, after, 1))["DE"]["outcome"] == "HIT"
        stale = service_for(fr.config, fr.store, lambda: old_ring, lambda: v2)
        in_grace = await stale.ask(
            platform="telegram",
            handle="@dark_seller42",
            actor="cli:x",
            justification="j",
            purpose="p",
            legal_basis="l",
            category="OTHER",
            now=datetime.now(UTC),
        )
        assert (await answers(fr, in_grace, 1))["DE"]["outcome"] == "HIT"
