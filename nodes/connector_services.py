"""Two of the node's own services offered to connectors (``ConnectorContext.blacklist_change``,
``ask_pseudonym`` and ``pseudonym_answers``), through the same code as the CLI:

- a blacklist change becomes the next delta of one of this node's own lists
  (:func:`nodes.blacklist.publish.enqueue_delta`, as ``exchange blacklist add|remove``):
  entries normalized, the version picked by the node (one change at a time per node);
- a pseudonym query is blinded by :meth:`PseudonymService.ask_sent` (as ``exchange
  pseudonym query``): the handle is neither stored, logged nor audited in clear.

Both raise InputError listing every problem by the REST body's field names.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from connectors.api import BlacklistChange, PseudonymAnswer, PseudonymAsked
from exchange.blacklist import entry_items
from exchange.blacklist.deltas import owner_of
from exchange.errors import InputError, Reason
from exchange.topics import TopicKind, topic_name
from nodes.blacklist.db import blacklist_db
from nodes.blacklist.publish import enqueue_delta
from nodes.pseudonyms.node import service_for
from nodes.pseudonyms.repo import repo_for

if TYPE_CHECKING:
    from nodes.daemon import Node

#: One blacklist change at a time per node: two never compute the same next version.
_locks: weakref.WeakKeyDictionary[Node, asyncio.Lock] = weakref.WeakKeyDictionary()


def own_list_id(node: str, name: str) -> tuple[str | None, list[tuple[str, str]]]:
    """The id of this node's list ``name`` (a name such as ``csam`` or a full id such as
    ``fr.csam``), or the problem with it."""
    text = name.strip().lower()
    list_id = text if "." in text else f"{node.lower()}.{text}"
    joint = list_id.partition(".")[2]
    if not text or not joint:
        return None, [("list", "a list name (e.g. csam) or this node's list id is required")]
    if owner_of(list_id) != node:
        return None, [
            (
                "list",
                f"{list_id} is owned by {owner_of(list_id)}; {node} may change only its own"
                f" lists (ids starting '{node.lower()}.')",
            )
        ]
    return list_id, []


async def blacklist_change(
    node: Node,
    list_name: str,
    *,
    add: Sequence[Mapping[str, Any]] = (),
    remove: Sequence[Mapping[str, Any]] = (),
    reason: str = "",
) -> BlacklistChange:
    """Publish the next delta of this node's list ``list_name``: all or nothing."""
    now = node.clock()
    list_id, problems = own_list_id(node.config.node, list_name)
    if not reason.strip():
        problems.append(("reason", "a reason for the change is required"))
    added, bad = entry_items.parse_additions(add, reason=reason, now=now)
    removed, bad_removals = entry_items.parse_removals(remove)
    problems += bad + bad_removals
    if not add and not remove:
        problems.append(("add", "nothing to add or remove"))
    if str(node.config.store.url).endswith(":memory:"):
        problems.append(("list", "this node's store keeps no blacklist (in memory)"))
    if problems or list_id is None:
        raise InputError(problems, reason=Reason.BAD_INPUT)
    lock = _locks.setdefault(node, asyncio.Lock())
    async with lock:
        db = blacklist_db(node.store, node.config.store.url)
        try:
            done = await enqueue_delta(
                db,
                node=node.config.node,
                prefix=node.config.kafka.topic_prefix,
                trust=node._trust,
                list_id=list_id,
                added=added,
                removed=removed,
                reason=reason.strip(),
                now=now,
            )
        finally:
            await db.close()
    if node.publisher is not None:
        node.publisher.wake()
    return BlacklistChange(done.list_id, done.version, done.outbox_id, done.message_id)


#: The CLI's field names and the query payload's, as the REST body names them.
_FIELDS = {"--platform": "platform", "--handle": "handle"}


def _field(name: str) -> str:
    return _FIELDS.get(name, name.removeprefix("payload."))


async def ask_pseudonym(
    node: Node,
    connector: str,
    *,
    platform: str,
    handle: str,
    purpose: str,
    legal_basis: str,
    category: str,
    justification: str,
    actor: str,
    recipients: Sequence[str] = (),
) -> PseudonymAsked:
    """Send a blinded hit/no-hit query for ``handle`` on ``platform``, audited with
    ``actor`` (as ``connector:<name>/<actor>``) and ``justification``."""
    part = node.pseudonyms
    if part is None:
        raise RuntimeError("node not started")
    given = {"purpose": purpose, "legal_basis": legal_basis, "justification": justification}
    problems = [(f, "is required") for f, v in given.items() if not v.strip()]
    if problems:
        raise InputError(problems, reason=Reason.BAD_INPUT)
    service = service_for(node.config, node.store, lambda: part.ring, lambda: part.trust)
    try:
        asked = await service.ask_sent(
            platform=platform,
            handle=handle,
            actor=f"connector:{connector}/{actor}",
            justification=justification,
            purpose=purpose,
            legal_basis=legal_basis,
            category=category,
            now=node.clock(),
            recipients=[r.strip().upper() for r in recipients if r.strip()],
        )
    except InputError as exc:
        raise InputError([(_field(f), r) for f, r in exc.problems], reason=exc.reason) from None
    if node.publisher is not None:
        node.publisher.wake()
    return PseudonymAsked(asked.query_id, asked.outbox_id, asked.message_id)


async def pseudonym_answers(node: Node, query_id: str) -> list[PseudonymAnswer]:
    """The answers this node stored so far to its query ``query_id``."""
    topic = topic_name(TopicKind.PSEUDONYMS, node.config.kafka.topic_prefix)
    rows = await repo_for(node.store).responses(topic, query_id)

    def text(value: Any) -> str | None:
        return None if value is None else str(value)

    return [
        PseudonymAnswer(
            responder=sender,
            received_at=at,
            outcome=str(p.get("outcome") or ("HIT" if p.get("hit") else "NO_HIT")),
            hit=bool(p.get("hit")),
            case_reference=text(p.get("case_reference")),
            contact_unit=text(p.get("contact_unit")),
            refusal_reason=text(p.get("refusal_reason")),
        )
        for sender, at, p in rows
    ]
