"""The responder's decisions: a chain of small pure checks, then hit, no-hit or pending.

A query read from the bus (already verified, decrypted if addressed, and past the topic's
rules) is judged here. Each check returns None or a :class:`Refusal` with a stable code;
the first refusal wins and is what the requester reads in the answer:

=====================  ===========================================================
``clear_handle``       the query carries a handle in clear (old schema): not answered
``requester_mismatch`` ``requester`` is not the envelope's sender
``not_allowed``        the sender is not in ``[rules.pseudonyms] query_allowed_from``
``rate_limited``       the sender asked ``max_queries_per_hour`` times in the last hour
``malformed_query``    no blinded handle, or a request for details without its reference
``unknown_key``        blinded under a pseudonym key this node does not hold, or whose
                       grace period has ended
=====================  ===========================================================

Pure: no I/O; the caller passes the count of recent queries and whether the key is held.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CHECKS",
    "QueryFacts",
    "Refusal",
    "ResponderPolicy",
    "first_refusal",
]

CLEAR_HANDLE = "clear_handle"
REQUESTER_MISMATCH = "requester_mismatch"
NOT_ALLOWED = "not_allowed"
RATE_LIMITED = "rate_limited"
MALFORMED_QUERY = "malformed_query"
UNKNOWN_KEY = "unknown_key"


@dataclass(frozen=True, slots=True)
class ResponderPolicy:
    """``[rules.pseudonyms]``: who may query and how often (per member, per hour)."""

    query_allowed_from: frozenset[str]
    max_queries_per_hour: int

    def allows(self, sender: str) -> bool:
        return "*" in self.query_allowed_from or sender in self.query_allowed_from


@dataclass(frozen=True, slots=True)
class QueryFacts:
    """What the checks read of one received query."""

    sender: str
    payload: Mapping[str, Any]
    recent_queries: int  # from this sender in the hour before it arrived (not counting it)
    key_held: bool  # the pseudonym key it names is held and in force at arrival

    @property
    def is_details(self) -> bool:
        return str(self.payload.get("requested_detail")) == "DETAILS"


@dataclass(frozen=True, slots=True)
class Refusal:
    code: str
    detail: str

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"


Check = Callable[[QueryFacts, ResponderPolicy], Refusal | None]


def clear_handle(q: QueryFacts, _p: ResponderPolicy) -> Refusal | None:
    if q.payload.get("pseudonym"):
        return Refusal(CLEAR_HANDLE, "the handle travelled in clear; send a blinded query")
    return None


def requester_matches(q: QueryFacts, _p: ResponderPolicy) -> Refusal | None:
    if q.payload.get("requester") != q.sender:
        return Refusal(REQUESTER_MISMATCH, f"requester is not the sender {q.sender}")
    return None


def allowed(q: QueryFacts, p: ResponderPolicy) -> Refusal | None:
    if not p.allows(q.sender):
        return Refusal(NOT_ALLOWED, f"{q.sender} is not in query_allowed_from")
    return None


def under_rate(q: QueryFacts, p: ResponderPolicy) -> Refusal | None:
    if q.recent_queries >= p.max_queries_per_hour:
        return Refusal(
            RATE_LIMITED,
            f"{q.sender} sent {q.recent_queries} queries in the last hour;"
            f" max_queries_per_hour is {p.max_queries_per_hour}",
        )
    return None


def well_formed(q: QueryFacts, _p: ResponderPolicy) -> Refusal | None:
    if not q.payload.get("blinded_handle"):
        return Refusal(MALFORMED_QUERY, "no blinded_handle")
    if q.is_details and not (q.payload.get("follow_up_of") and q.payload.get("case_reference")):
        return Refusal(MALFORMED_QUERY, "a request for details names follow_up_of and its case")
    return None


def key_held(q: QueryFacts, _p: ResponderPolicy) -> Refusal | None:
    if not q.key_held:
        key = q.payload.get("pseudonym_key_id")
        return Refusal(UNKNOWN_KEY, f"pseudonym key {key!r} is not held or its grace has ended")
    return None


#: In order: the first refusal is the answer.
CHECKS: Sequence[Check] = (
    clear_handle,
    requester_matches,
    allowed,
    under_rate,
    well_formed,
    key_held,
)


def first_refusal(q: QueryFacts, policy: ResponderPolicy) -> Refusal | None:
    for check in CHECKS:
        refusal = check(q, policy)
        if refusal is not None:
            return refusal
    return None
