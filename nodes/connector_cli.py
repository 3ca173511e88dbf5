"""``exchange connector ...``: tools for a node's connectors.

    exchange connector token                              a new bearer token and its hash
    exchange connector backfill --config FILE NAME [--since ISO]
                                                          hand the stored history to NAME

``token`` prints the token (give it to the client, once) and the SHA-256 to put in the
connector's ``tokens`` option (the config never holds the token itself).

``backfill`` hands a configured outbound connector the records already stored (ACTIVE ones,
on its topics, received at or after ``--since``), oldest first by message id (a UUIDv7: the
senders' creation time; all its topics interleaved), under the same onward-sharing rules as
live deliveries, each page it confirms audited as a DISCLOSURE naming it. The store is read
one page at a time (a keyset walk of the message-id index), so memory stays bounded by a
page however much history the node holds. It does not move the connector's cursor: records
stored while it runs reach the connector through the node as usual, possibly twice
(connectors are idempotent by message id). Run it while the node runs or not. Exit 0 when
everything was handed over; a failure of the connector stops it (exit 1) after auditing what
was delivered: run it again.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connectors.api import ConnectorContext, OutboundConnector, instantiate
from connectors.tokens import new_token
from exchange.errors import InputError
from exchange.topics import topic_name
from nodes.config import NodeConfig, load_config
from nodes.connector_host import outbound_of
from nodes.logging import configure, get_logger
from nodes.metrics import Metrics
from nodes.outbound import PAGE, Dispatcher, Outbound
from nodes.store.base import MessageKey
from nodes.store.opened import opened_store


def register(subparsers: Any) -> None:
    """Add the ``connector`` command group."""
    group = subparsers.add_parser("connector", help="connector tokens and history backfill")
    sub = group.add_subparsers(dest="connector_command", metavar="ACTION")
    sub.required = True
    token = sub.add_parser("token", help="print a new bearer token and its hash for the config")
    token.set_defaults(func=_token)
    back = sub.add_parser(
        "backfill",
        help="hand the stored history to an outbound connector",
        description="Hand the stored ACTIVE records on the connector's topics to it, oldest"
        " first by message id (the senders' creation time), a page at a time, each page it"
        " confirms audited as a DISCLOSURE. Exit 0 when all was handed over, 1 when the"
        " connector failed (run it again to go on).",
    )
    back.add_argument("--config", "-c", required=True, type=Path, help="the node's TOML config")
    back.add_argument("name", help="the connector's name in the config")
    back.add_argument("--since", help="only records received at or after this ISO 8601 time")
    back.set_defaults(func=_backfill)


def _token(_args: argparse.Namespace) -> int:
    token, digest = new_token()
    print(f"token:  {token}")
    print(f"sha256: {digest}")
    print("Give the token to the client once; put only the sha256 in the connector's tokens.")
    return 0


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InputError([("--since", f"an ISO 8601 time, got {text!r}")]) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _target(config: NodeConfig, name: str) -> Outbound:
    spec = next((c for c in config.connectors if c.name == name), None)
    if spec is None:
        known = [c.name for c in config.connectors]
        raise InputError([("name", f"no connector {name!r} in the config; known: {known}")])
    context = ConnectorContext(
        node_id=config.node,
        name=spec.name,
        options=spec.options,
        log=get_logger(node=config.node_id, connector=spec.name),
        base_dir=config.keys.signing_key.parent,
    )
    connector = instantiate(spec.plugin, context)
    if not isinstance(connector, OutboundConnector):
        raise InputError([("name", f"{name} is an inbound connector: it takes no history")])
    return outbound_of(spec, connector, context)


async def backfill(
    config: NodeConfig, name: str, since: datetime | None, *, page_size: int = PAGE
) -> tuple[int, int]:
    """Hand the stored history to connector ``name``; (delivered, withheld).

    The store is read ``page_size`` records at a time (a keyset walk by message id: oldest
    first by the senders' creation time, then sender) and each page is handed over and
    audited before the next is read, so memory stays bounded by a page whatever the store
    holds."""
    target = _target(config, name)
    topics = [topic_name(kind, config.kafka.topic_prefix) for kind in sorted(target.topics)]
    async with opened_store(config.store.url) as store:
        dispatcher = Dispatcher(
            node=config.node_id,
            outbound=[target],
            rules=config.rules,
            prefix=config.kafka.topic_prefix,
            store=store,
            metrics=Metrics(),
        )
        dispatcher.actor = f"cli:connector-backfill/{config.node_id}"
        delivered = withheld = 0
        after: MessageKey | None = None
        try:
            while True:
                page = await store.page_records(topics, since=since, after=after, limit=page_size)
                if not page:
                    break
                done, held = await dispatcher.backfill(page)
                delivered, withheld = delivered + done, withheld + held
                if len(page) < page_size:
                    break
                after = (page[-1].sender, page[-1].message_id)
            return delivered, withheld
        finally:
            await dispatcher.close()


def _backfill(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    configure(config.log)
    since = _since(args.since)
    try:
        delivered, withheld = asyncio.run(backfill(config, args.name, since))
    except (InputError, KeyboardInterrupt):
        raise
    except Exception as exc:  # the connector failed: what it confirmed is audited
        print(f"error: connector {args.name} failed: {type(exc).__name__}: {exc}")
        print("what it confirmed before is audited; run the backfill again to go on")
        return 1
    print(
        f"connector {args.name}: {delivered} record(s) delivered, {withheld} withheld by the rules"
    )
    return 0
