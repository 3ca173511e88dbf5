"""PseudonymQuery and PseudonymResponse: hit/no-hit first, details on request."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, ValidationInfo, field_validator

from exchange.models.common import Line, Model, OffenceCategory, Text, Uuid


class RequestedDetail(StrEnum):
    """How much an answer may say: only hit/no-hit, or details as well."""

    HIT_ONLY = "HIT_ONLY"
    DETAILS = "DETAILS"


class PseudonymQuery(Model):
    """Do you know this online pseudonym? Record key: ``query_id``."""

    query_id: Uuid = Field(description="Unique id of the query (text UUID on the wire).")
    pseudonym: Line = Field(max_length=256, description="The online handle asked about.")
    platform: Line = Field(max_length=100, description="Where the pseudonym is used.")
    category: OffenceCategory = Field(description="The offence suspected.")
    justification: Text = Field(
        max_length=2000, description="Why the query is necessary and proportionate."
    )
    requested_detail: RequestedDetail = Field(description="HIT_ONLY or DETAILS.")


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

    @field_validator("details", "case_reference")
    @classmethod
    def _only_with_hit(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("hit") is False:
            raise ValueError(f"a no-hit answer carries no {info.field_name}")
        return value
