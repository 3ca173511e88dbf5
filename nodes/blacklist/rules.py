"""The blacklist topic's own rule: only a list's owner may change it (pure, no I/O).

A DELTA or SNAPSHOT whose list id names another member (``fr.csam`` from NL) is refused:
the pipeline quarantines it as ``rule_rejected`` with ``list_not_owned``. An entry that
does not normalize is refused as ``invalid_entry``. A REPAIR_REQUEST may come from anyone.
"""

from __future__ import annotations

from exchange.blacklist.deltas import EntryProblem, not_owned, parse_delta
from exchange.topics import TopicKind
from nodes.rules import Drop, Incoming, Rule

LIST_NOT_OWNED = "list_not_owned"
INVALID_ENTRY = "invalid_entry"


def list_owned_by_sender(item: Incoming) -> Incoming:
    """A ``nodes.rules`` rule for the blacklist topic."""
    payload = item.payload
    if payload is None or item.is_retraction or "list_id" not in payload:
        return item
    why = not_owned(str(item.envelope.sender), payload)
    if why is not None:
        raise Drop(LIST_NOT_OWNED, why)
    try:
        parse_delta(str(item.envelope.sender), payload)
    except EntryProblem as exc:
        raise Drop(INVALID_ENTRY, str(exc)) from None
    return item


def blacklist_rules(kind: TopicKind) -> tuple[Rule, ...]:
    """The rules a topic adds to its chain: the ownership rule on the blacklist topic."""
    return (list_owned_by_sender,) if kind is TopicKind.BLACKLIST else ()
