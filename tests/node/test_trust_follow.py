"""Trust lists with nodes running: the root pinned by fingerprint, versions only up, new lists
taken up live from ``<prefix>.trust.v1``, and the auditor judging each record against the
list in force at its append time. Real broker, real nodes (in-process), real SQLite."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from exchange.cli import main
from exchange.errors import Reason, TrustListError
from exchange.ids import NodeId
from exchange.keys import SigningKey
from exchange.trust import KeyEntry, TrustList, root_fingerprint
from nodes.daemon import Node
from nodes.trustfeed import TRUST_VERSION_KEY
from tests.audit.history import produce
from tests.helpers.federation import Federation, alert_data
from tests.helpers.nodes import make_node

pytestmark = pytest.mark.integration


def _node(fed: Federation, name: str) -> Node:
    return make_node(fed, name)


def _write(fed: Federation, trust: TrustList, name: str = "trust.list") -> Path:
    path = fed.directory / name
    path.write_bytes(trust.sign(fed.root))
    return path


def _pin(fed: Federation) -> str:
    return root_fingerprint(fed.root.public_bytes)


async def _version_accepted(node: Node) -> int | None:
    value = (await node.store.get_status()).get(TRUST_VERSION_KEY)
    return None if value is None else int(value)


async def test_a_rolled_back_trust_list_is_refused_at_start(live_federation: Federation) -> None:
    """A node that accepted version 2 refuses to start on version 1 put back in its place."""
    fed = live_federation
    v1_bytes = fed.trust_path.read_bytes()
    de = _node(fed, "DE")
    await de.start()
    await de.stop()
    v2 = fed.trust.revoke(
        fed.trust.member(NodeId("NL")).signing_keys[0].key_id,
        datetime.now(UTC),
        "rotated",
        issued_at=datetime.now(UTC),
    )
    _write(fed, v2)
    de = _node(fed, "DE")
    await de.start()
    assert await _version_accepted(de) == 2
    await de.stop()
    fed.trust_path.write_bytes(v1_bytes)  # the older list, validly signed, put back
    with pytest.raises(TrustListError) as info:
        await _node(fed, "DE").start()
    assert info.value.reason is Reason.TRUST_LIST_ROLLBACK
    assert "version 1 is older than version 2" in str(info.value)


async def test_a_replaced_root_key_is_refused_at_start(live_federation: Federation) -> None:
    """A trust list and root.pub both replaced by someone else's root: the pinned
    fingerprint in node.toml refuses them (v1 read root.pub beside the list)."""
    fed = live_federation
    fake = SigningKey.generate()
    forged = TrustList(
        federation=fed.trust.federation,
        version=fed.trust.version + 1,
        issued_at=datetime.now(UTC),
        root_public_key=fake.public_bytes,
        members=fed.trust.members.values(),
    )
    fed.trust_path.write_bytes(forged.sign(fake))
    fake.save(fed.directory / "root.key", fed.directory / "root.pub")
    with pytest.raises(TrustListError) as info:
        await _node(fed, "DE").start()
    assert info.value.reason is Reason.BAD_TRUST_LIST
    assert _pin(fed) in str(info.value)


async def test_key_rotation_with_nodes_running(
    live_federation: Federation, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """FR's key is rotated out (version 2 lists only its new key), published while FR and DE
    run: DE takes it up live; what FR signed before still verifies in the auditor's replay
    (judged by version 1, in force then); what FR's old key signs after is quarantined by
    DE and reported by the auditor."""
    fed = live_federation
    pin = _pin(fed)
    publish = ["--bootstrap", kafka_bootstrap, "--prefix", fed.prefix, "--root-fingerprint", pin]
    v1_path = _write(fed, fed.trust, "trust-v1.list")
    assert await asyncio.to_thread(main, ["trust", "publish", str(v1_path), *publish]) == 0
    fr, de = _node(fed, "FR"), _node(fed, "DE")
    await fr.start()
    await de.start()
    try:
        for i in range(3):
            await fr.submit(
                "OffenceAlert",
                alert_data(f"before {i}", observed_at=datetime.now(UTC)),
                handling={"tlp": "GREEN", "code": "H0"},
            )
        await de.wait_stored(3)

        new_key = SigningKey.generate()
        member = fed.trust.member(NodeId("FR"))
        rotated = dataclasses.replace(
            member,
            signing_keys=(KeyEntry.for_key(new_key.public_bytes, datetime.now(UTC)),),
        )
        v2 = fed.trust.with_member(rotated, issued_at=datetime.now(UTC))
        v2_path = _write(fed, v2, "trust-v2.list")
        assert await asyncio.to_thread(main, ["trust", "publish", str(v2_path), *publish]) == 0
        back = await asyncio.to_thread(main, ["trust", "publish", str(v1_path), *publish])
        assert back == 2  # never back down

        assert de.consumer is not None
        consumer = de.consumer
        await de.wait_until(lambda: consumer.context.trust.version == 2, 30)
        assert await _version_accepted(de) == 2
        stale = fed.member("FR")  # FR's old key, after the rotation
        stale.chain.advance(fed.topic(), bytes(32))  # sequence numbers do not matter here
        after = stale.alert(datetime.now(UTC), title="after rotation")
        await produce(kafka_bootstrap, [(fed.topic(), after.key, after.value, 0)])
        await de.wait_until(lambda: de.metrics.quarantined.value("unknown_key") >= 1, 30)
        assert len(await de.store.list_records(topic=fed.topic())) == 3
    finally:
        await de.stop()
        await fr.stop()

    report = tmp_path / "audit.json"
    code = await asyncio.to_thread(
        main,
        [
            *("audit", "replay", "--bootstrap", kafka_bootstrap, "--prefix", fed.prefix),
            *("--trust", str(v2_path), "--root-fingerprint", pin, "--workers", "0"),
            *("--report", str(report), "--trust-state", str(tmp_path / "state.json")),
        ],
    )
    found = json.loads(report.read_text())
    assert code == 1
    assert [v["kind"] for v in found["violations"]] == ["unknown_key"]
    assert found["counts"]["by_sender"] == {"FR": 3}
    assert json.loads((tmp_path / "state.json").read_text())["highest_version"] == 2

    # the auditor's own memory: an archive replayed with version 1 after it accepted 2
    archive = tmp_path / "history.avro"
    export = ["audit", "export", "--bootstrap", kafka_bootstrap, "--prefix", fed.prefix]
    assert await asyncio.to_thread(main, [*export, "--out", str(archive)]) == 0
    rolled_back = await asyncio.to_thread(
        main,
        [
            *("audit", "replay", "--archive", str(archive), "--trust", str(v1_path)),
            *("--root-fingerprint", pin, "--trust-state", str(tmp_path / "state.json")),
        ],
    )
    assert rolled_back == 2
