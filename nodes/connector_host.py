"""What the node offers its connectors: their context (``submit``, ``submit_many`` for a
batch in one transaction, a read-only status of submissions, blacklist changes and
pseudonym queries through :mod:`nodes.connector_services`), and the run of an inbound
connector with its state kept in the node status.

Kept apart from :mod:`nodes.daemon` so the daemon only wires them in."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

from connectors.api import (
    ConnectorContext,
    InboundConnector,
    OutboundConnector,
    Submission,
    SubmissionStatus,
)
from exchange.errors import InputError
from exchange.trust import TrustList
from nodes.config import ConnectorConfig, NodeConfig
from nodes.connector_services import ask_pseudonym, blacklist_change, pseudonym_answers
from nodes.inbound import build_item
from nodes.logging import get_logger
from nodes.outbound import Outbound
from nodes.store.base import OutboxItem, Store

if TYPE_CHECKING:
    from nodes.daemon import Node


def connector_context(node: Node, spec: ConnectorConfig, base_dir: Path) -> ConnectorContext:
    """The context a connector instance is built with (all it may use of the node)."""
    return ConnectorContext(
        node_id=node.config.node,
        name=spec.name,
        options=spec.options,
        log=get_logger(node=node.config.node_id, connector=spec.name),
        base_dir=base_dir,
        submit=node.submit,
        submission_status=functools.partial(submission_status, node.store),
        submit_many=functools.partial(submit_many, node),
        blacklist_change=functools.partial(blacklist_change, node),
        ask_pseudonym=functools.partial(ask_pseudonym, node, spec.name),
        pseudonym_answers=functools.partial(pseudonym_answers, node),
    )


def build_items(
    config: NodeConfig, trust: TrustList, now: datetime, entries: Sequence[Submission]
) -> list[OutboxItem]:
    """Every entry as an outbox item, or InputError listing every problem (``items[i].``)."""
    items: list[OutboxItem] = []
    problems: list[tuple[str, str]] = []
    for i, entry in enumerate(entries):
        try:
            items.append(
                build_item(
                    entry.message_type,
                    entry.payload,
                    handling=entry.handling,
                    recipients=entry.recipients,
                    node=config.node,
                    prefix=config.kafka.topic_prefix,
                    trust=trust,
                    now=now,
                    topic=entry.topic,
                    key=entry.key,
                    where=f"items[{i}].",
                )
            )
        except InputError as exc:
            problems.extend(exc.problems)
    if problems:
        raise InputError(problems)
    return items


async def submit_many(node: Node, entries: Sequence[Submission]) -> list[tuple[int, UUID]]:
    """Validate every entry (in a worker thread: a batch is CPU work), then enqueue them all
    in one store transaction; their (outbox id, message id). All or none."""
    publisher = node.publisher
    if publisher is None:
        raise RuntimeError("node not started")
    items = await asyncio.to_thread(
        build_items, node.config, publisher.trust, node.clock(), entries
    )
    ids = await node.store.enqueue(items) if items else []
    publisher.wake()
    return [(i, item.message_id or UUID(int=0)) for i, item in zip(ids, items, strict=True)]


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


def outbound_of(
    spec: ConnectorConfig, connector: OutboundConnector, context: ConnectorContext
) -> Outbound:
    """What the delivery loop needs of the outbound connector configured by ``spec``."""
    return Outbound(
        spec.name,
        frozenset(spec.topics),
        connector,
        context,
        allowed_tlp=frozenset(spec.allowed_tlp),
        timeout_s=spec.timeout_s,
    )
