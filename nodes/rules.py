"""The per-topic data-sharing rules: a chain of small pure callables.

Each rule takes an :class:`Incoming` (the verified envelope, the payload as a dict, where it
was read) and returns it, maybe changed (fields dropped, expiry set), or raises:

- :class:`Drop` - refused by a rule: the node does NOT store it as valid; the pipeline
  quarantines it with reason ``rule_rejected`` and the rule's code and detail, so an
  auditor sees what was refused and why;
- :class:`Skip` - not for this node (addressed to others, already expired): not stored,
  not quarantined, counted as consumed.

The order (see :func:`build_chain`): addressed to this node, sender accepted, category
kept, fields dropped (minimisation), retention. Retractions pass only the first two: a
sender may always withdraw what it shared. Pure: no I/O, ``now`` comes in the record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from exchange.ids import NodeId
from exchange.quickinit import quick_init
from exchange.topics import MessageType

if TYPE_CHECKING:
    from nodes.config import TopicRules


class EnvelopeFacts(Protocol):
    """What the rules read of a verified envelope (an ``exchange.envelope.Envelope``, or the
    pipeline's compact ``OpenedRecord``, which carries the same facts)."""

    @property
    def message_type(self) -> MessageType: ...
    @property
    def sender(self) -> NodeId: ...
    @property
    def recipients(self) -> tuple[NodeId, ...]: ...
    @property
    def created_at(self) -> datetime: ...


@quick_init
@dataclass(frozen=True, slots=True)
class Incoming:
    """A record on its way through the rules."""

    envelope: EnvelopeFacts
    payload: Mapping[str, Any] | None  # None: addressed to others (this node cannot read it)
    topic: str
    partition: int
    offset: int
    received_at: datetime
    expires_at: datetime | None = None
    dropped_fields: tuple[str, ...] = ()

    @property
    def is_retraction(self) -> bool:
        return self.envelope.message_type == MessageType.RETRACTION

    @property
    def category(self) -> str | None:
        value = None if self.payload is None else self.payload.get("category")
        return None if value is None else str(value)


class Drop(Exception):  # noqa: N818 - a verdict, not an error
    """A rule refused the record: quarantine it as ``rule_rejected`` with ``code: detail``."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class Skip(Exception):  # noqa: N818 - a verdict, not an error
    """The record is not for this node: consumed, not stored, not quarantined."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


Rule = Callable[[Incoming], Incoming]

ADDRESSED_TO_OTHERS = "addressed_to_others"
EXPIRED = "expired"


def addressed_to(node: NodeId) -> Rule:
    """Skip records restricted to other recipients."""

    def rule(item: Incoming) -> Incoming:
        recipients = item.envelope.recipients
        if item.payload is None or (recipients and node not in recipients):
            raise Skip(ADDRESSED_TO_OTHERS)
        return item

    return rule


def sender_accepted(senders: Sequence[str]) -> Rule:
    """Refuse records from senders not in ``senders`` (``["*"]``: every member)."""
    allowed = frozenset(senders)

    def rule(item: Incoming) -> Incoming:
        if "*" not in allowed and item.envelope.sender not in allowed:
            raise Drop(
                "sender_not_accepted", f"sender {item.envelope.sender} not in accept_senders"
            )
        return item

    return rule


def category_kept(categories: Sequence[str]) -> Rule:
    """Refuse records whose offence category is not kept (records without one pass)."""
    kept = frozenset(categories)

    def rule(item: Incoming) -> Incoming:
        if item.is_retraction or "*" in kept:
            return item
        category = item.category
        if category is not None and category not in kept:
            raise Drop("category_not_kept", f"category {category} not in categories_kept")
        return item

    return rule


def _without(data: Mapping[str, Any], path: Sequence[str]) -> tuple[Mapping[str, Any], bool]:
    head = path[0]
    if head not in data:
        return data, False
    if len(path) == 1:
        return {k: v for k, v in data.items() if k != head}, True
    child = data[head]
    if isinstance(child, Mapping):
        new_child, changed = _without(child, path[1:])
        return ({**data, head: new_child}, True) if changed else (data, False)
    if isinstance(child, list):  # a path through a list applies to each element
        changed_any = False
        items: list[Any] = []
        for element in child:
            if isinstance(element, Mapping):
                element, changed = _without(element, path[1:])
                changed_any |= changed
            items.append(element)
        return ({**data, head: items}, True) if changed_any else (data, False)
    return data, False


def drop_fields(paths: Sequence[str]) -> Rule:
    """Remove each dotted path (``indicators.value``: in every element of a list) before storing."""
    split = [tuple(p.split(".")) for p in paths]

    def rule(item: Incoming) -> Incoming:
        if item.payload is None or item.is_retraction:
            return item
        payload = item.payload
        dropped: list[str] = []
        for path in split:
            payload, changed = _without(payload, path)
            if changed:
                dropped.append(".".join(path))
        if not dropped:
            return item
        return replace(item, payload=payload, dropped_fields=item.dropped_fields + tuple(dropped))

    return rule


def retention(days: int | None) -> Rule:
    """Set ``expires_at`` = created_at + ``days``; skip records that are already past it."""
    if days is None:
        return _identity
    keep = timedelta(days=days)

    def rule(item: Incoming) -> Incoming:
        expires = item.envelope.created_at + keep
        if expires <= item.received_at:
            raise Skip(EXPIRED)
        return replace(item, expires_at=expires)

    return rule


def _identity(item: Incoming) -> Incoming:
    return item


def build_chain(rules: TopicRules, node: NodeId) -> tuple[Rule, ...]:
    """The rule chain for one topic, in order."""
    chain: list[Rule] = [addressed_to(node)]
    if not rules.all_senders:
        chain.append(sender_accepted(rules.accept_senders))
    if not rules.all_categories:
        chain.append(category_kept(rules.categories_kept))
    if rules.drop_fields:
        chain.append(drop_fields(rules.drop_fields))
    if rules.retention_days is not None:
        chain.append(retention(rules.retention_days))
    return tuple(chain)


def apply(chain: Sequence[Rule], item: Incoming) -> Incoming:
    """Run ``item`` through ``chain``; raises :class:`Drop` or :class:`Skip`."""
    for rule in chain:
        item = rule(item)
    return item


def may_share_onward(handling_code: str, max_code: str) -> bool:
    """Whether a record with ``handling_code`` (H0..H3) may leave through outbound connectors."""
    return handling_code <= max_code  # "H0" < "H1" < "H2" < "H3"


#: TLP 2.0, least restricted first (the wire spells AMBER+STRICT "AMBER_STRICT").
TLP_ORDER = ("CLEAR", "GREEN", "AMBER", "AMBER_STRICT", "RED")
#: Levels that reach a connector only when its ``allowed_tlp`` names them.
TLP_EXPLICIT_ONLY = frozenset({"AMBER_STRICT", "RED"})

#: Why a delivery to an outbound connector was withheld (the ``reason`` label of
#: ``exchange_withheld_total``).
WITHHELD_HANDLING_CODE = "handling_code_above_topic_max"
WITHHELD_TLP_TOPIC = "tlp_above_topic_max"
WITHHELD_TLP_CONNECTOR = "tlp_not_allowed_by_connector"


def _tlp_rank(tlp: str) -> int:
    try:
        return TLP_ORDER.index(tlp)
    except ValueError:
        return len(TLP_ORDER)  # unknown: more restricted than anything named


def onward_withheld(
    *,
    handling_code: str,
    tlp: str,
    max_code: str,
    max_tlp: str,
    connector_allows: frozenset[str],
) -> str | None:
    """Why a record may NOT leave through an outbound connector, or None when it may.

    It may when its handling code is at most the topic's ``max_code``, its TLP at most the
    topic's ``max_tlp``, and, for TLP:RED and TLP:AMBER+STRICT, the connector's
    ``allowed_tlp`` names that level explicitly (an unknown level is never shared).
    """
    if not may_share_onward(handling_code, max_code):
        return WITHHELD_HANDLING_CODE
    if _tlp_rank(tlp) > _tlp_rank(max_tlp):
        return WITHHELD_TLP_TOPIC
    if (tlp in TLP_EXPLICIT_ONLY or tlp not in TLP_ORDER) and tlp not in connector_allows:
        return WITHHELD_TLP_CONNECTOR
    return None
