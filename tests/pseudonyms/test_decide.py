"""The responder's checks: each refusal with its stable code, in order."""

from __future__ import annotations

from typing import Any

import pytest

from exchange.pseudonyms.decide import QueryFacts, ResponderPolicy, first_refusal

GOOD: dict[str, Any] = {
    "requester": "FR",
    "blinded_handle": "ab" * 32,
    "pseudonym_key_id": "k1",
    "requested_detail": "HIT_ONLY",
    "pseudonym": "",
}
POLICY = ResponderPolicy(frozenset({"FR", "NL"}), max_queries_per_hour=3)


def facts(recent: int = 0, key_held: bool = True, sender: str = "FR", **changes: Any) -> QueryFacts:
    return QueryFacts(sender, {**GOOD, **changes}, recent, key_held)


def test_a_well_formed_query_from_an_allowed_member_under_its_rate_passes() -> None:
    """No refusal: it is looked up."""
    assert first_refusal(facts(recent=2), POLICY) is None


@pytest.mark.parametrize(
    ("query", "code"),
    [
        (facts(pseudonym="darkseller"), "clear_handle"),
        (facts(requester="NL"), "requester_mismatch"),
        (facts(sender="DE", requester="DE"), "not_allowed"),
        (facts(recent=3), "rate_limited"),
        (facts(blinded_handle=""), "malformed_query"),
        (facts(requested_detail="DETAILS"), "malformed_query"),
        (facts(key_held=False), "unknown_key"),
    ],
)
def test_each_refusal_has_its_stable_code(query: QueryFacts, code: str) -> None:
    """A handle in clear, a forged requester, a member not allowed, over its rate, without a
    blinded handle or reference, under a key not held: refused with that code."""
    refusal = first_refusal(query, POLICY)
    assert refusal is not None
    assert refusal.code == code


def test_the_rate_refusal_says_the_limit() -> None:
    """The requester reads how many it sent and what the limit is."""
    refusal = first_refusal(facts(recent=5), POLICY)
    assert str(refusal) == (
        "rate_limited: FR sent 5 queries in the last hour; max_queries_per_hour is 3"
    )


def test_a_star_allows_every_member_and_an_empty_list_none() -> None:
    """query_allowed_from = ["*"]: everyone; [] (the default): no one."""
    everyone = ResponderPolicy(frozenset({"*"}), 10)
    nobody = ResponderPolicy(frozenset(), 10)
    assert first_refusal(facts(sender="DE", requester="DE"), everyone) is None
    refusal = first_refusal(facts(), nobody)
    assert refusal is not None
    assert refusal.code == "not_allowed"
