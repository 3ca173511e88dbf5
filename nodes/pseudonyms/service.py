"""The node's pseudonym service: automatic responder, follow-up decisions, queries.

Responder (:meth:`PseudonymService.respond_once`, run in a loop by the daemon): every
``PseudonymQuery`` the consumer stored (past the topic's rules) that this node has not
handled is judged by exchange.pseudonyms.decide; the answer (HIT with only a case
reference and a contact unit, NO_HIT, or REFUSED with its reason) is a
``PseudonymResponse`` addressed to the requester alone, so the publisher encrypts it for
it. A request for details (``requested_detail`` DETAILS) is never answered automatically:
it waits, ``pending``, for :meth:`decide` (``exchange pseudonym approve|deny``). The
request row, the answer's outbox item and the audit entries commit in one transaction.

Audit (the node's Article 25 log): every query received and answered (CONSULTATION, the
answer's outcome in ``details``), every query sent (CONSULTATION by the asking person),
every approval and denial (CONSULTATION with ``event`` approval/denial), every disclosure
of details (DISCLOSURE, after its approval in the same transaction). ``details.event``
names which: exchange.audit's pseudonym check reads them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, NotRequired, TypedDict, Unpack

from exchange.errors import ExchangeError, InputError
from exchange.ids import NodeId
from exchange.pseudonyms.decide import QueryFacts, ResponderPolicy, first_refusal
from exchange.pseudonyms.keys import Keyring, blind
from exchange.pseudonyms.normalize import HandleError, normalize_handle, normalize_platform
from exchange.trust import TrustList
from nodes.inbound import build_item
from nodes.pseudonyms.repo import Incoming, PseudonymRepo, Request
from nodes.store.base import AuditAction, AuditEvent, OutboxItem

__all__ = ["ANSWER_HANDLING", "Asked", "PseudonymService", "Question"]

#: Answers and queries: for the named recipients only, not to be shared onward.
ANSWER_HANDLING = {"tlp": "AMBER", "code": "H2"}
QUERY_HANDLING = {"tlp": "AMBER", "code": "H2"}
HOUR = timedelta(hours=1)
UNANSWERABLE = "unanswerable"
#: A request for details of a case this node did not give the asker as a hit.
NOT_OUR_HIT = "not_our_hit"
#: What the node's request row and audit entry keep of a query (never a handle).
LOGGED_FIELDS = (
    "platform",
    "purpose",
    "legal_basis",
    "requested_detail",
    "follow_up_of",
    "case_reference",
    "category",
)


@dataclass(frozen=True, slots=True)
class Asked:
    """A query put in the outbox: its query id, outbox id and message id."""

    query_id: str
    outbox_id: int
    message_id: uuid.UUID


class Question(TypedDict):
    """What :meth:`PseudonymService.ask` takes (as keyword arguments): the handle asked about
    on ``platform``, who asks and why, at ``now``; ``follow_up_of`` a query id makes it a
    request for details."""

    platform: str
    handle: str
    actor: str
    justification: str
    purpose: str
    legal_basis: str
    category: str
    now: datetime
    recipients: NotRequired[list[str] | None]
    follow_up_of: NotRequired[str | None]
    case_reference: NotRequired[str | None]


class PseudonymService:
    def __init__(
        self,
        *,
        node: NodeId,
        prefix: str,
        topic: str,
        repo: PseudonymRepo,
        policy: ResponderPolicy,
        keyring: Callable[[], Keyring],
        trust: Callable[[], TrustList | None],
        decision_timeout: timedelta,
    ) -> None:
        self.node = node
        self.prefix = prefix
        self.topic = topic
        self.repo = repo
        self.policy = policy
        self.keyring = keyring
        self.trust = trust
        self.decision_timeout = decision_timeout
        self.actor = f"node:{node}/pseudonym-responder"

    # --- building messages -------------------------------------------------------------

    def _item(
        self, message_type: str, payload: Mapping[str, Any], recipients: list[str], now: datetime
    ) -> OutboxItem:
        return build_item(
            message_type,
            payload,
            handling=ANSWER_HANDLING,
            recipients=recipients,
            node=self.node,
            prefix=self.prefix,
            trust=self.trust(),
            now=now,
            topic="pseudonyms",
            key=str(payload["query_id"]),
        )

    def _answer(self, req: Request, now: datetime, **fields: Any) -> OutboxItem:
        payload = {
            "query_id": req.query_id,
            "in_reply_to": str(req.message_id),
            "responder": self.node,
            **fields,
        }
        return self._item("PseudonymResponse", payload, [req.sender], now)

    # --- responder ---------------------------------------------------------------------

    async def respond_once(self, now: datetime, limit: int = 200) -> int:
        """Answer (or set pending) every stored query not handled yet; how many."""
        incoming = await self.repo.new_queries(self.topic, self.node, limit)
        ring = self.keyring()
        for q in incoming:
            req, answer = await self._judge(q, ring)
            req = replace(req, decided_at=None if req.status == "pending" else now)
            items: list[OutboxItem] = []
            if answer is not None:
                made = self._safe_answer(req, now, **answer)
                if isinstance(made, str):
                    req = replace(req, status="refused", reason=made[:500], index_id=None)
                else:
                    items.append(made)
            event = "pseudonym_answer" if items else "pseudonym_unanswerable"
            if req.status == "pending":
                event = "pseudonym_details_requested"
            audit = AuditEvent(
                at=now,
                action=AuditAction.CONSULTATION,
                actor=self.actor,
                justification=str(q.payload.get("justification", "")),
                recipients=(q.sender,) if items else (),
                subject=str(q.message_id),
                details={
                    "event": event,
                    "query_id": req.query_id,
                    "requester": q.sender,
                    "status": req.status,
                    "reason": req.reason,
                    **{k: v for k, v in req.facts.items() if v is not None},
                },
            )
            await self.repo.settle(req, items, [audit])
        return len(incoming)

    async def _judge(self, q: Incoming, ring: Keyring) -> tuple[Request, dict[str, Any] | None]:
        """The request row for ``q`` and the answer's fields (None: it waits for a person)."""
        payload = q.payload
        recent = await self.repo.recent_count(q.sender, q.received_at - HOUR)
        key = ring.accepted(str(payload.get("pseudonym_key_id", "")), q.received_at)
        facts = QueryFacts(q.sender, payload, recent, key is not None)
        req = Request(
            sender=q.sender,
            message_id=q.message_id,
            query_id=str(payload.get("query_id")),
            kind="details" if facts.is_details else "query",
            received_at=q.received_at,
            status="refused",
            reason=None,
            facts={k: payload.get(k) for k in LOGGED_FIELDS},
            actor=self.actor,
        )
        refusal = first_refusal(facts, self.policy)
        if refusal is not None:
            reason = str(refusal)[:500]
            return replace(req, reason=reason), {
                "hit": False,
                "outcome": "REFUSED",
                "refusal_reason": reason,
            }
        if facts.is_details:
            case = str(payload["case_reference"])
            answered = await self.repo.hit_case(q.sender, str(payload["follow_up_of"]))
            hit = await self.repo.entry_for_case(case)
            if answered != case or hit is None:  # details only of a hit given to this asker
                reason = (
                    f"{NOT_OUR_HIT}: {q.sender} got no hit on case {case[:100]}"
                    f" in answer to query {str(payload['follow_up_of'])[:40]}"
                )
                return replace(req, reason=reason), {
                    "hit": False,
                    "outcome": "REFUSED",
                    "refusal_reason": reason,
                }
            return replace(req, status="pending", actor=None, index_id=hit.index_id), None
        assert key is not None  # first_refusal checked it
        hit = await self.repo.lookup(key.key_id, bytes.fromhex(str(payload["blinded_handle"])))
        if hit is None:
            return replace(req, status="no_hit"), {"hit": False, "outcome": "NO_HIT"}
        return replace(req, status="hit", index_id=hit.index_id), {
            "hit": True,
            "outcome": "HIT",
            "case_reference": hit.case_reference,
            "contact_unit": hit.contact_unit,
        }

    def _safe_answer(self, req: Request, now: datetime, **fields: Any) -> OutboxItem | str:
        """The answer, or why none can be sent (the requester has no usable encryption key
        any more): the query is then logged as refused, never retried in a loop."""
        try:
            return self._answer(req, now, **fields)
        except ExchangeError as exc:
            return f"{UNANSWERABLE}: {exc}"

    # --- follow-up ---------------------------------------------------------------------

    async def find_pending(self, query_id: str) -> Request:
        matches = [
            r for r in await self.repo.requests("pending", limit=10_000) if r.query_id == query_id
        ]
        if len(matches) != 1:
            why = "no pending request" if not matches else "several pending requests"
            raise InputError([("REQUEST", f"{why} with query id {query_id}")])
        return matches[0]

    async def decide(
        self, query_id: str, *, approve: bool, actor: str, justification: str, now: datetime
    ) -> Request:
        """Approve (send the details, encrypted to the requester only) or deny a pending
        request for details; both logged with ``actor`` and ``justification``."""
        problems = [
            (f, "is required")
            for f, v in (("--actor", actor), ("--justification", justification))
            if not v.strip()
        ]
        if problems:
            raise InputError(problems)
        req = await self.find_pending(query_id)
        decided = replace(
            req,
            status="approved" if approve else "denied",
            decided_at=now,
            actor=actor,
            justification=justification,
        )
        base = {
            "query_id": req.query_id,
            "requester": req.sender,
            "subject_message": str(req.message_id),
        }
        audit = [
            AuditEvent(
                at=now,
                action=AuditAction.CONSULTATION,
                actor=actor,
                justification=justification,
                subject=str(req.message_id),
                details={"event": "pseudonym_approval" if approve else "pseudonym_denial", **base},
            )
        ]
        items: list[OutboxItem] = []
        if approve:
            hit = await self.repo.entry_for_case(str(req.facts.get("case_reference")))
            if hit is None:
                raise InputError([("REQUEST", "the case it names is no longer in the index")])
            details = (
                f"platform {hit.platform}; case {hit.case_reference}; contact {hit.contact_unit};"
                f" first seen {hit.first_seen.isoformat()}; last seen {hit.last_seen.isoformat()}"
            )
            items.append(
                self._answer(
                    req,
                    now,
                    hit=True,
                    outcome="DETAILS",
                    details=details,
                    case_reference=hit.case_reference,
                    contact_unit=hit.contact_unit,
                )
            )
            audit.append(
                AuditEvent(
                    at=now,
                    action=AuditAction.DISCLOSURE,
                    actor=actor,
                    justification=justification,
                    recipients=(req.sender,),
                    subject=str(req.message_id),
                    details={"event": "pseudonym_disclosure", **base},
                )
            )
        else:
            items.append(
                self._answer(
                    req,
                    now,
                    hit=False,
                    outcome="DENIED",
                    refusal_reason=f"denied: {justification}"[:500],
                )
            )
        await self.repo.settle(decided, items, audit, decide_pending=True)
        return decided

    async def overdue(self, now: datetime) -> int:
        """Requests for details undecided for longer than the decision timeout."""
        return await self.repo.pending_before(now - self.decision_timeout)

    # --- asking ------------------------------------------------------------------------

    async def ask(self, **question: Unpack[Question]) -> str:
        """Enqueue a blinded query (or, with ``follow_up_of``, a request for details) and
        log it; its query id. The handle never leaves :meth:`ask_sent` in clear."""
        return (await self.ask_sent(**question)).query_id

    async def ask_sent(self, **question: Unpack[Question]) -> Asked:
        """:meth:`ask`, telling the query's outbox id and message id too. Problems name
        ``--platform``/``--handle`` (the CLI's options) or ``payload.<field>``."""
        q = question
        now, follow_up_of, recipients = q["now"], q.get("follow_up_of"), q.get("recipients")
        try:
            plat = normalize_platform(q["platform"])
        except HandleError as exc:
            raise InputError([("--platform", str(exc))]) from exc
        try:
            norm = normalize_handle(plat, q["handle"])
        except HandleError as exc:
            raise InputError([("--handle", str(exc))]) from exc
        key = self.keyring().current
        if key is None:
            raise InputError(
                [("trust list", f"no federation pseudonym key is wrapped for {self.node}")]
            )
        query_id = str(uuid.uuid4())
        payload = {
            "query_id": query_id,
            "platform": plat,
            "category": q["category"],
            "justification": q["justification"],
            "requested_detail": "DETAILS" if follow_up_of else "HIT_ONLY",
            "requester": self.node,
            "blinded_handle": blind(key.secret, plat, norm).hex(),
            "pseudonym_key_id": key.key_id,
            "purpose": q["purpose"],
            "legal_basis": q["legal_basis"],
            "follow_up_of": follow_up_of,
            "case_reference": q.get("case_reference"),
        }
        item = build_item(
            "PseudonymQuery",
            payload,
            handling=QUERY_HANDLING,
            recipients=recipients or [],
            node=self.node,
            prefix=self.prefix,
            trust=self.trust(),
            now=now,
            topic="pseudonyms",
            key=query_id,
        )
        audit = AuditEvent(
            at=now,
            action=AuditAction.CONSULTATION,
            actor=q["actor"],
            justification=q["justification"],
            recipients=tuple(recipients or ()),
            subject=query_id,
            details={
                "event": "pseudonym_details_request" if follow_up_of else "pseudonym_query",
                "query_id": query_id,
                "platform": plat,
                "purpose": q["purpose"],
                "legal_basis": q["legal_basis"],
                "follow_up_of": follow_up_of,
            },
        )
        (outbox_id,) = await self.repo.send([item], [audit])
        return Asked(query_id, outbox_id, item.message_id or uuid.UUID(int=0))
