"""The auditor's pseudonym checks: answers follow queries, disclosures follow approvals.

Over the pseudonym topic (verified records; what fails verification is the replay's to
report), in append-time order:

- ``answer_without_query``: a ``PseudonymResponse`` whose record key (the query id) is not
  the key of a ``PseudonymQuery`` appended before it;
- ``answer_not_to_asker``: an answer not addressed to exactly the member that asked;
- ``answer_from_non_addressee``: an answer to a query addressed to named members, from a
  member the query was not addressed to.

Over a node's audit log (``exchange pseudonym audit-log``, one JSON object a line), with
the topic, for that node:

- ``disclosure_without_approval``: a ``pseudonym_disclosure`` entry with no
  ``pseudonym_approval`` entry for the same request before it;
- ``detail_answer_without_decision``: an answer the node put on the bus to a request for
  details (a query addressed to it alone) that its log does not decide: neither an
  approval and its disclosure, nor a denial, nor an automatic refusal.

Answers are encrypted for the asker, so the bus shows who answered whom, not what; the
log says what was decided, by whom, why. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from exchange.audit.checks import Violation
from exchange.errors import ExchangeError
from exchange.seal import verify_record
from exchange.topics import MessageType
from exchange.trust import TrustHistory, TrustList

__all__ = ["PseudonymRecord", "check_log", "check_topic", "summarize"]

QUERY = MessageType.PSEUDONYM_QUERY.value
RESPONSE = MessageType.PSEUDONYM_RESPONSE.value


class PseudonymRecord(NamedTuple):
    topic: str
    partition: int
    offset: int
    timestamp: int  # append time, ms
    sender: str
    message_type: str
    key: str
    recipients: tuple[str, ...]
    message_id: str


def summarize(
    raw: tuple[str, int, int, int, bytes | None, bytes | None],
    trust: TrustList | TrustHistory,
) -> PseudonymRecord | None:
    """The facts of one raw record that verifies (None when it does not)."""
    topic, partition, offset, ts, key, value = raw
    if value is None:
        return None
    at = datetime.fromtimestamp(ts / 1000, UTC)
    judge = trust.at(ts) if isinstance(trust, TrustHistory) else trust
    try:
        v = verify_record(value, topic=topic, key=key, trust=judge, now=at, appended_at=at)
    except ExchangeError:
        return None
    env = v.envelope
    return PseudonymRecord(
        topic,
        partition,
        offset,
        ts,
        env.sender,
        env.message_type.value,
        env.key,
        tuple(env.recipients),
        str(env.message_id),
    )


def _violation(r: PseudonymRecord, kind: str, reason: str) -> Violation:
    return Violation(r.topic, r.partition, r.offset, kind, reason, r.sender, r.message_id)


def check_topic(records: Iterable[PseudonymRecord]) -> list[Violation]:
    """The topic checks (see the module doc), records in any order."""
    found: list[Violation] = []
    queries: dict[str, PseudonymRecord] = {}
    for r in sorted(records, key=lambda r: (r.timestamp, r.partition, r.offset)):
        if r.message_type == QUERY:
            queries.setdefault(r.key, r)
            continue
        if r.message_type != RESPONSE:
            continue
        q = queries.get(r.key)
        if q is None:
            found.append(_violation(r, "answer_without_query", f"no query {r.key} before it"))
            continue
        if r.recipients != (q.sender,):
            found.append(
                _violation(
                    r,
                    "answer_not_to_asker",
                    f"addressed to {', '.join(r.recipients) or 'everyone'}, asked by {q.sender}",
                )
            )
        if q.recipients and r.sender not in q.recipients:
            found.append(
                _violation(
                    r,
                    "answer_from_non_addressee",
                    f"query {r.key} was addressed to {', '.join(q.recipients)}",
                )
            )
    return found


def check_log(
    node: str, log: Sequence[Mapping[str, Any]], records: Iterable[PseudonymRecord]
) -> list[Violation]:
    """The checks of ``node``'s audit log against the topic (see the module doc)."""
    found: list[Violation] = []
    approved: set[str] = set()
    decided: set[str] = set()
    for entry in sorted(log, key=lambda e: int(e.get("seq", 0))):
        details = entry.get("details") or {}
        event, query_id = details.get("event"), str(details.get("query_id"))
        if event == "pseudonym_approval":
            approved.add(query_id)
        elif event == "pseudonym_disclosure":
            if query_id not in approved:
                found.append(
                    Violation(
                        "audit-log",
                        0,
                        int(entry.get("seq", 0)),
                        "disclosure_without_approval",
                        f"{node} disclosed details for {query_id} without an approval before",
                        node,
                        str(entry.get("subject")),
                    )
                )
            decided.add(query_id)
        elif event == "pseudonym_denial" or (
            event == "pseudonym_answer" and details.get("status") == "refused"
        ):
            decided.add(query_id)
    ordered = sorted(records, key=lambda r: (r.timestamp, r.partition, r.offset))
    detail_requests = {
        r.key for r in ordered if r.message_type == QUERY and r.recipients == (node,)
    }
    for r in ordered:
        if r.message_type != RESPONSE or r.sender != node or r.key not in detail_requests:
            continue
        if r.key not in decided:
            found.append(
                _violation(
                    r,
                    "detail_answer_without_decision",
                    f"{node} answered request {r.key}; its log records no decision",
                )
            )
    return found
