"""In-process nodes of a test federation, tuned to settle fast:

    fr = make_node(fed, "FR", stats={"enabled": False})   # FAST settings, then the test's
    async with running(fr, de):                            # started; stopped on exit
        await retract(fr, record)                          # fr withdraws its own record

:data:`FAST` is the tuning every integration test shares (no HTTP listener, short publisher
backoff and poll intervals, a short consumer poll); a test's own tables are laid over it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from nodes.clock import Clock, utc_now
from nodes.config import load_config
from nodes.daemon import Node
from nodes.store.base import StoredRecord
from tests.helpers.federation import Federation

FAST: dict[str, Any] = {
    "http": {"listen": ""},
    "publisher": {"backoff_initial_ms": 50, "backoff_max_ms": 1000, "poll_interval_ms": 50},
    "consumer": {"poll_timeout_ms": 100},
}


def make_node(fed: Federation, name: str, *, clock: Clock = utc_now, **tables: Any) -> Node:
    """Member ``name``'s node from its config file, with :data:`FAST` and then ``tables``
    (whole config tables: ``rules=...``, ``kafka=...``) laid over it."""
    return Node(load_config(fed.config_path(name), **{**FAST, **tables}), clock=clock)


@asynccontextmanager
async def running(*nodes: Node) -> AsyncIterator[None]:
    """``nodes`` started in order; on exit every one started is stopped, in the same order."""
    started: list[Node] = []
    try:
        for node in nodes:
            await node.start()
            started.append(node)
        yield
    finally:
        for node in started:
            await node.stop()


async def retract(node: Node, record: StoredRecord, reason: str = "WITHDRAWN") -> int:
    """``node`` retracts its own alert ``record`` (TLP:GREEN, H0, on the record's key); the
    retraction's outbox id."""
    return await node.submit(
        "Retraction",
        {"retracted_message_id": str(record.message_id), "reason": reason},
        handling={"tlp": "GREEN", "code": "H0"},
        topic="alerts",
        key=record.key,
    )
