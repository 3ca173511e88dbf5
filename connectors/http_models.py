"""The request and answer bodies of the REST API's blacklist and pseudonym routes
(``connectors.http_api``), with the field docs the OpenAPI document shows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, Field

from connectors.api import PseudonymAnswer


class BlacklistEntryIn(BaseModel):
    """An entry to add, as ``exchange blacklist add`` takes it; the node normalizes it."""

    kind: str = Field(description="URL, DOMAIN, HASH or IP.")
    value: str = Field(description="The URL, domain, hex digest or IP address / CIDR network.")
    category: str = Field(description="Offence category, e.g. CHILD_SEXUAL_ABUSE_MATERIAL.")
    reason: str | None = Field(
        default=None, description="Why it is listed (default: the change's reason)."
    )
    algorithm: str | None = Field(default=None, description="HASH only: MD5, SHA1, SHA256, ...")
    expires_at: datetime | None = Field(
        default=None, description="When the listing lapses (ISO 8601 with offset, future)."
    )


class BlacklistRemovalIn(BaseModel):
    """An entry to remove, by its identity (normalized like an addition)."""

    kind: str = Field(description="URL, DOMAIN, HASH or IP.")
    value: str = Field(description="The entry's value, in any form that normalizes to it.")
    algorithm: str | None = Field(default=None, description="HASH only.")


class BlacklistChangeIn(BaseModel):
    """A change of one of this node's own lists; the node picks the next version and
    publishes it as one delta. Every bad entry is named (``add[i].value``); nothing is
    published unless all are good."""

    list_name: str = Field(
        alias="list", description="The list's name (csam) or this node's full list id (fr.csam)."
    )
    add: list[BlacklistEntryIn] = Field(default_factory=list, description="Entries to add.")
    remove: list[BlacklistRemovalIn] = Field(default_factory=list, description="Entries to remove.")
    reason: str = Field(description="Why the list changes (carried by the delta).")


class BlacklistChangeOut(BaseModel):
    outbox_id: int
    message_id: UUID = Field(description="The id the delta travels under.")
    list_id: str = Field(description="The list's full id, e.g. fr.csam.")
    version: int = Field(description="The version this change makes.")


class PseudonymQueryIn(BaseModel):
    """A hit/no-hit query. The handle reaches this node only: the node normalizes it and
    sends an HMAC of it under the federation's pseudonym key, never the handle."""

    platform: str = Field(description="Where the handle is used, e.g. telegram.")
    handle: str = Field(description="The pseudonym, as seen (normalized by the node).")
    purpose: str = Field(description="What the query serves (logged, sent).")
    legal_basis: str = Field(description="The legal basis of the query (logged, sent).")
    category: str = Field(description="Offence category of the case.")
    justification: str = Field(description="Why this query is needed (audited).")
    recipients: list[str] = Field(
        default_factory=list, description="Members to ask, e.g. ['DE']; empty: every member."
    )


class PseudonymQueryOut(BaseModel):
    query_id: str = Field(description="GET /v1/pseudonym-queries/{query_id} for answers.")
    outbox_id: int
    message_id: UUID = Field(description="The id the query travels under.")


class PseudonymAnswerOut(BaseModel):
    responder: str = Field(description="The member that answered.")
    received_at: datetime
    outcome: str = Field(description="HIT, NO_HIT or REFUSED.")
    hit: bool
    case_reference: str | None = Field(description="On a hit: the responder's case reference.")
    contact_unit: str | None = Field(description="On a hit: whom to contact there.")
    refusal_reason: str | None = Field(description="When refused: why.")


class PseudonymAnswersOut(BaseModel):
    query_id: str
    answers: list[PseudonymAnswerOut] = Field(description="The answers received so far.")

    @classmethod
    def of(cls, query_id: str, answers: Sequence[PseudonymAnswer]) -> PseudonymAnswersOut:
        return cls(
            query_id=query_id,
            answers=[
                PseudonymAnswerOut(
                    responder=a.responder,
                    received_at=a.received_at,
                    outcome=a.outcome,
                    hit=a.hit,
                    case_reference=a.case_reference,
                    contact_unit=a.contact_unit,
                    refusal_reason=a.refusal_reason,
                )
                for a in answers
            ],
        )
