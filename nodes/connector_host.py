"""What the node offers its connectors beyond ``submit``: a read-only status of submissions,
and the run of an inbound connector with its state kept in the node status.

Kept apart from :mod:`nodes.daemon` so the daemon only wires them in."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import TYPE_CHECKING

from connectors.api import ConnectorContext, InboundConnector, SubmissionStatus, Submit
from nodes.config import ConnectorConfig, NodeConfig
from nodes.logging import get_logger
from nodes.store.base import Store

if TYPE_CHECKING:
    from nodes.daemon import Node


def connector_context(
    config: NodeConfig, spec: ConnectorConfig, base_dir: Path, submit: Submit, store: Store
) -> ConnectorContext:
    """The context a connector instance is built with (all it may use of the node)."""
    return ConnectorContext(
        node_id=config.node,
        name=spec.name,
        options=spec.options,
        log=get_logger(node=config.node_id, connector=spec.name),
        base_dir=base_dir,
        submit=submit,
        submission_status=functools.partial(submission_status, store),
    )


async def submission_status(store: Store, outbox_id: int) -> SubmissionStatus | None:
    """What became of outbox item ``outbox_id``: pending, signed or sent, and its message id."""
    item = await store.outbox_item(outbox_id)
    if item is None:
        return None
    return SubmissionStatus(
        outbox_id=item.id,
        status=item.status.value,
        message_id=item.message_id,
        message_type=item.message_type,
        topic=item.topic,
        created_at=item.created_at,
        attempts=item.attempts,
        last_error=item.last_error,
    )


async def run_inbound(node: Node, context: ConnectorContext, connector: InboundConnector) -> None:
    """One run of an inbound connector (the supervisor restarts it with backoff when it
    raises); its state goes to the node status (``connector.<name>.state``, ``node status``)."""
    key = f"connector.{context.name}.state"
    await node.store.set_status(key, "up")
    try:
        await connector.run(context)
    except Exception as exc:
        with contextlib.suppress(Exception):  # the store may be what failed
            state = f"down since {node.clock().isoformat()}: {type(exc).__name__}: {exc}"
            await node.store.set_status(key, state)
        raise
