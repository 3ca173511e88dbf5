"""The auditor's pseudonym checks, on record facts and audit-log entries made up here."""

from __future__ import annotations

from typing import Any

from exchange.audit.pseudonyms import PseudonymRecord, check_log, check_topic

T = "ncp.pseudonyms.v1"


def rec(
    offset: int, sender: str, kind: str, key: str, recipients: tuple[str, ...] = ()
) -> PseudonymRecord:
    message_type = "PseudonymQuery" if kind == "q" else "PseudonymResponse"
    return PseudonymRecord(
        T, 0, offset, 1000 + offset, sender, message_type, key, recipients, f"m{offset}"
    )


def entry(seq: int, event: str, query_id: str, **details: Any) -> dict[str, Any]:
    return {
        "seq": seq,
        "subject": f"s{seq}",
        "details": {"event": event, "query_id": query_id, **details},
    }


def test_answers_to_queries_addressed_to_the_asker_pass() -> None:
    """Query, then answers to its sender from two members: nothing found."""
    records = [
        rec(1, "FR", "q", "k1"),
        rec(2, "DE", "r", "k1", ("FR",)),
        rec(3, "NL", "r", "k1", ("FR",)),
    ]
    assert check_topic(records) == []


def test_an_answer_before_or_without_its_query_is_found() -> None:
    """An answer whose key no earlier query has: answer_without_query."""
    found = check_topic(
        [
            rec(1, "DE", "r", "k1", ("FR",)),
            rec(2, "FR", "q", "k1"),
            rec(3, "DE", "r", "k9", ("FR",)),
        ]
    )
    assert [(v.kind, v.offset) for v in found] == [
        ("answer_without_query", 1),
        ("answer_without_query", 3),
    ]


def test_an_answer_to_someone_else_or_from_a_member_not_asked_is_found() -> None:
    """Addressed to NL when FR asked; DE answering a request addressed to NL only."""
    found = check_topic(
        [
            rec(1, "FR", "q", "k1"),
            rec(2, "DE", "r", "k1", ("NL",)),
            rec(3, "FR", "q", "k2", ("NL",)),
            rec(4, "DE", "r", "k2", ("FR",)),
        ]
    )
    assert [v.kind for v in found] == ["answer_not_to_asker", "answer_from_non_addressee"]


def test_a_disclosure_needs_an_approval_before_it_in_the_log() -> None:
    """Approval then disclosure passes; a disclosure alone, or before its approval, is found."""
    records = [rec(1, "FR", "q", "d1", ("DE",)), rec(2, "DE", "r", "d1", ("FR",))]
    good = [entry(1, "pseudonym_approval", "d1"), entry(2, "pseudonym_disclosure", "d1")]
    assert check_log("DE", good, records) == []
    late = [entry(1, "pseudonym_disclosure", "d1"), entry(2, "pseudonym_approval", "d1")]
    assert [v.kind for v in check_log("DE", late, records)] == ["disclosure_without_approval"]


def test_an_answer_to_a_request_for_details_needs_a_decision_in_the_log() -> None:
    """DE answered FR's request for details: a denial or refusal covers it, nothing does not."""
    records = [rec(1, "FR", "q", "d1", ("DE",)), rec(2, "DE", "r", "d1", ("FR",))]
    assert check_log("DE", [entry(1, "pseudonym_denial", "d1")], records) == []
    refused = [entry(1, "pseudonym_answer", "d1", status="refused")]
    assert check_log("DE", refused, records) == []
    found = check_log("DE", [entry(1, "pseudonym_answer", "d1", status="hit")], records)
    assert [v.kind for v in found] == ["detail_answer_without_decision"]
