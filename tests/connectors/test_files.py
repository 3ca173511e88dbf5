"""The stix and misp connectors: one file per shared alert in their folder, written again
identically on a redelivery, removed on a retraction; other message types are not written."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from pymisp import MISPEvent

from connectors.api import ConnectorContext, instantiate
from exchange.ids import NodeId
from nodes.logging import get_logger
from tests.connectors.helpers import assert_valid_stix, record


def context(tmp_path: Path) -> ConnectorContext:
    return ConnectorContext(
        node_id=NodeId("DE"),
        name="out",
        options={"dir": "out"},
        log=get_logger(connector="out"),
        base_dir=tmp_path,
    )


@pytest.mark.parametrize("plugin", ["stix", "misp"])
async def test_a_shared_alert_is_one_file_until_it_is_retracted(
    plugin: str, tmp_path: Path
) -> None:
    """Deliver twice (a redelivery after a crash): one file, same bytes, private, and valid
    for its format's own tools; a retraction removes it."""
    ctx = context(tmp_path)
    connector = instantiate(plugin, ctx)
    shared = record()
    assert await connector.deliver(shared, ctx)  # type: ignore[union-attr]
    path = tmp_path / "out" / f"{shared.message_id}.json"
    first = path.read_bytes()
    assert await connector.deliver(shared, ctx)  # type: ignore[union-attr]
    assert path.read_bytes() == first
    assert [p.name for p in (tmp_path / "out").iterdir()] == [path.name]
    assert path.stat().st_mode & 0o077 == 0
    document = json.loads(first)
    if plugin == "stix":
        assert_valid_stix(document)
    else:
        event = MISPEvent()
        event.load(document)
        assert event.info == shared.payload["title"]

    assert await connector.retract(shared.message_id, ctx)  # type: ignore[union-attr]
    assert not path.exists()


@pytest.mark.parametrize("plugin", ["stix", "misp"])
async def test_a_record_that_is_not_an_alert_is_not_written(plugin: str, tmp_path: Path) -> None:
    """A blacklist delta has no STIX bundle or MISP event here: not written, not disclosed."""
    ctx = context(tmp_path)
    connector = instantiate(plugin, ctx)
    other = replace(record(), message_type="BlacklistDelta", payload={"list_id": "x"})
    assert not await connector.deliver(other, ctx)  # type: ignore[union-attr]
    assert list((tmp_path / "out").iterdir()) == []
