"""PseudonymQuery and PseudonymResponse: hit/no-hit first, details on request."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, ValidationInfo, field_validator

from exchange.models.common import LINE_PATTERN, Line, Model, OffenceCategory, Text, Uuid


class RequestedDetail(StrEnum):
    """How much an answer may say: only hit/no-hit, or details as well."""

    HIT_ONLY = "HIT_ONLY"
    DETAILS = "DETAILS"


class Outcome(StrEnum):
    """What a :class:`PseudonymResponse` says."""

    HIT = "HIT"
    NO_HIT = "NO_HIT"
    REFUSED = "REFUSED"
    DETAILS = "DETAILS"
    DENIED = "DENIED"
    UNSPECIFIED = ""  # answers written before the field


_BLIND = r"^([0-9a-f]{64})?$"
_NODE = r"^([A-Z]{2})?$"


class PseudonymQuery(Model):
    """Do you know this online pseudonym? Record key: ``query_id``.

    A blinded query (what nodes write now) carries ``blinded_handle`` and an empty
    ``pseudonym``; queries from schema releases 1 and 2 carried the handle in clear."""

    query_id: Uuid = Field(description="Unique id of the query (text UUID on the wire).")
    pseudonym: str = Field(
        default="",
        max_length=256,
        pattern=LINE_PATTERN,  # single-line, as before blinding; empty in blinded queries
        description="The handle in clear: old queries only.",
    )
    platform: Line = Field(max_length=100, description="Where the pseudonym is used.")
    category: OffenceCategory = Field(description="The offence suspected.")
    justification: Text = Field(
        max_length=2000, description="Why the query is necessary and proportionate."
    )
    requested_detail: RequestedDetail = Field(description="HIT_ONLY or DETAILS.")
    requester: str = Field(default="", pattern=_NODE, description="The asking member.")
    blinded_handle: str = Field(
        default="", pattern=_BLIND, description="HMAC-SHA256 of the normalized handle, hex."
    )
    pseudonym_key_id: str = Field(default="", max_length=64, description="Blinding key id.")
    purpose: str = Field(default="", max_length=2000, description="What the query serves.")
    legal_basis: str = Field(default="", max_length=2000, description="Its legal basis.")
    follow_up_of: Uuid | None = Field(
        default=None, description="Request for details: the query that hit (text UUID)."
    )
    case_reference: Line | None = Field(
        max_length=100, default=None, description="Request for details: the hit's reference."
    )


class PseudonymResponse(Model):
    """One member's answer to a query. Record key: ``query_id``."""

    FIXED_UUIDS = frozenset({"in_reply_to"})

    query_id: Uuid = Field(description="The query answered.")
    in_reply_to: Uuid = Field(description="Message id of the query's envelope.")
    hit: bool = Field(description="Whether the pseudonym is known.")
    details: Text | None = Field(
        max_length=10_000,
        default=None,
        validate_default=True,
        description="Details; only with a hit.",
    )
    case_reference: Line | None = Field(
        max_length=100,
        default=None,
        validate_default=True,
        description="Case reference; only with a hit.",
    )

    outcome: Outcome = Field(default=Outcome.UNSPECIFIED, description="What the answer says.")
    refusal_reason: Line | None = Field(
        max_length=500, default=None, description="Why refused or denied."
    )
    contact_unit: Line | None = Field(
        max_length=200, default=None, description="Whom to contact about a hit; only with a hit."
    )
    responder: str = Field(default="", pattern=_NODE, description="The answering member.")

    @field_validator("details", "case_reference")
    @classmethod
    def _only_with_hit(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("hit") is False:
            raise ValueError(f"a no-hit answer carries no {info.field_name}")
        return value

    @field_validator("contact_unit")
    @classmethod
    def _contact_only_with_hit(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("hit") is False:
            raise ValueError("a no-hit answer carries no contact_unit")
        return value
