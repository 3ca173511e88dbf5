"""Retraction: a sender withdraws one of its own earlier messages (schemas/Retraction.avsc)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, ValidationInfo, field_validator

from exchange.models.common import Model, Text, Uuid


class RetractionReason(StrEnum):
    """Why a message is retracted."""

    WITHDRAWN = "WITHDRAWN"
    CORRECTED = "CORRECTED"
    REMOVED_AFTER_REVIEW = "REMOVED_AFTER_REVIEW"


class Retraction(Model):
    """Withdrawal of an earlier message; it travels on that message's topic and key."""

    FIXED_UUIDS = frozenset({"retracted_message_id", "superseded_by"})

    retracted_message_id: Uuid = Field(description="Message id of the retracted envelope.")
    reason: RetractionReason = Field(description="Why it is retracted.")
    note: Text | None = Field(
        max_length=2000, default=None, description="Explanation for operators."
    )
    superseded_by: Uuid | None = Field(
        default=None, validate_default=True, description="The correcting message (CORRECTED)."
    )

    @field_validator("superseded_by")
    @classmethod
    def _only_when_corrected(cls, value: Uuid | None, info: ValidationInfo) -> Uuid | None:
        reason = info.data.get("reason")
        if value is not None and reason is not None and reason != RetractionReason.CORRECTED:
            raise ValueError(f"superseded_by is only for a CORRECTED retraction, not {reason}")
        return value
