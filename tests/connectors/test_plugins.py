"""Third-party plugins: the sample package in tests/plugins/sample_connector, installed into
the virtualenv by `make install` like any plugin, is found through its `exchange.connectors`
entry point and fed by a node's delivery loop."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

from connectors.api import ConnectorContext, OutboundConnector, load_factory
from exchange.ids import NodeId
from exchange.topics import TopicKind
from nodes.config import load_config
from nodes.logging import get_logger
from nodes.metrics import Metrics
from nodes.outbound import Dispatcher, Outbound
from nodes.store.base import AuditAction, open_store
from tests.helpers.federation import make_federation
from tests.store.conftest import commit, make_record

PLUGIN = "sample-ledger"


def test_the_installed_sample_plugin_is_discovered_by_its_entry_point() -> None:
    """importlib.metadata lists the sample package's entry point, and the node's loader
    resolves the name to the installed package's class (not a file under tests/)."""
    (found,) = [ep for ep in entry_points(group="exchange.connectors") if ep.name == PLUGIN]
    assert found.dist is not None
    assert found.dist.name == "ncp-sample-connector"
    factory = load_factory(PLUGIN)
    assert factory.__module__ == "ncp_sample_connector"
    module_file = Path(__import__("ncp_sample_connector").__file__ or "")
    assert "site-packages" in module_file.parts


async def test_a_node_feeds_the_discovered_plugin_and_audits_each_delivery(tmp_path: Path) -> None:
    """Configured by its entry-point name, the plugin receives each stored record once and
    each delivery is a DISCLOSURE naming it."""
    url = f"sqlite:///{tmp_path / 'node.db'}"
    store = open_store(url)
    await store.open()
    ctx = ConnectorContext(NodeId("DE"), "ledger", {"path": "ledger.txt"}, get_logger(), tmp_path)
    plugin = load_factory(PLUGIN)(ctx)
    assert isinstance(plugin, OutboundConnector)
    dispatcher = Dispatcher(
        node="DE",
        outbound=[Outbound("ledger", frozenset(TopicKind), plugin, ctx)],
        rules=load_config(make_federation(tmp_path / "fed").config_path("DE")).rules,
        prefix="ncp",
        store=store,
        metrics=Metrics(),
    )
    try:
        await dispatcher.open()
        records = [make_record(offset=i) for i in range(2)]
        await commit(store, records=records)
        await dispatcher.drain()
        audit = [e.event for e in await store.audit_entries()]
    finally:
        await store.close()
    lines = (tmp_path / "ledger.txt").read_text().splitlines()
    assert lines == [f"deliver {r.message_id}" for r in records]
    (disclosure,) = [e for e in audit if e.action is AuditAction.DISCLOSURE]
    assert disclosure.recipients == ("connector:ledger",)
