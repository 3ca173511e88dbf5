"""StatisticalIndicator: aggregate counts per offence category (no personal data).

An indicator carries only aggregates: per measure (alerts sent, blacklist entries received,
...) and offence category, or per quarantine reason code, one count. A count under the
sender's threshold travels as ``count=None, suppressed_below=N`` (shown as ``"<N"``): the
true small value never leaves the node. ``revision`` counts the sender's corrections of one
period; receivers keep the one latest in its hash chain (exchange.stats.latest).
"""

from __future__ import annotations

import re
from datetime import date
from enum import StrEnum

from pydantic import Field, ValidationInfo, field_validator, model_validator

from exchange.models.common import CountryCode, Model, OffenceCategory, PastDate


class CategoryCount(Model):
    """The count for one offence category."""

    category: OffenceCategory = Field(description="The category counted.")
    count: int = Field(ge=0, le=2**63 - 1, description="Offences reported in the period.")


class IndicatorMeasure(StrEnum):
    """What a :class:`MeasureCount` counts (schemas/StatisticalIndicator.avsc)."""

    UNKNOWN = "UNKNOWN"  #: a measure newer than this reader's schema
    ALERTS_SENT = "ALERTS_SENT"
    ALERTS_RECEIVED = "ALERTS_RECEIVED"
    BLACKLIST_ADDED_SENT = "BLACKLIST_ADDED_SENT"
    BLACKLIST_ADDED_RECEIVED = "BLACKLIST_ADDED_RECEIVED"
    BLACKLIST_REMOVED_SENT = "BLACKLIST_REMOVED_SENT"
    BLACKLIST_REMOVED_RECEIVED = "BLACKLIST_REMOVED_RECEIVED"
    PSEUDONYM_QUERIES_SENT = "PSEUDONYM_QUERIES_SENT"
    PSEUDONYM_QUERIES_RECEIVED = "PSEUDONYM_QUERIES_RECEIVED"
    PSEUDONYM_HITS_SENT = "PSEUDONYM_HITS_SENT"
    PSEUDONYM_HITS_RECEIVED = "PSEUDONYM_HITS_RECEIVED"
    QUARANTINED = "QUARANTINED"


#: A quarantine reason as it may travel: a stable code, never free text.
REASON_CODE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
#: The highest suppression threshold a sender may claim.
MAX_SUPPRESSION = 1000


class MeasureCount(Model):
    """One aggregate count: exact (``count``) or suppressed (``suppressed_below``)."""

    measure: IndicatorMeasure = Field(description="What is counted.")
    category: OffenceCategory | None = Field(
        default=None, description="Offence category; None when the measure has none or unknown."
    )
    reason: str | None = Field(default=None, description="QUARANTINED only: a reason code.")
    count: int | None = Field(
        default=None, ge=0, le=2**63 - 1, description="The exact count; None when suppressed."
    )
    suppressed_below: int | None = Field(
        default=None, ge=2, le=MAX_SUPPRESSION, description="Threshold the count is under."
    )

    @model_validator(mode="after")
    def _consistent(self) -> MeasureCount:
        if (self.count is None) == (self.suppressed_below is None):
            raise ValueError("exactly one of count and suppressed_below must be set")
        if self.measure is IndicatorMeasure.QUARANTINED:
            if self.reason is None or not REASON_CODE.match(self.reason):
                raise ValueError("a QUARANTINED count needs a reason code ([a-z0-9_], <= 64)")
            if self.category is not None:
                raise ValueError("a QUARANTINED count has no category")
        elif self.reason is not None:
            raise ValueError(f"only QUARANTINED carries a reason, not {self.measure}")
        return self


class StatisticalIndicator(Model):
    """Counts for one country and period; record key ``f"{sender}:{period_start:%Y-%m-%d}"``."""

    country: CountryCode = Field(description="The country counted (ISO 3166-1 alpha-2).")
    period_start: PastDate = Field(description="First day counted, inclusive.")
    period_end: date = Field(description="Last day counted, inclusive.")
    counts: list[CategoryCount] = Field(
        max_length=100, description="Alerts reported per category (unsuppressed ones only)."
    )
    revision: int = Field(default=1, ge=1, le=2**63 - 1, description="Corrections go up.")
    measures: list[MeasureCount] = Field(
        default_factory=list, max_length=5000, description="Counts per measure and category."
    )

    @field_validator("period_end")
    @classmethod
    def _not_before_start(cls, value: date, info: ValidationInfo) -> date:
        start = info.data.get("period_start")
        if start is not None and value < start:
            raise ValueError(f"period_end {value} is before period_start {start}")
        return value

    @field_validator("counts")
    @classmethod
    def _one_per_category(cls, value: list[CategoryCount]) -> list[CategoryCount]:
        seen: set[OffenceCategory] = set()
        for count in value:
            if count.category in seen:
                raise ValueError(f"category {count.category} is counted twice")
            seen.add(count.category)
        return value

    @field_validator("measures")
    @classmethod
    def _one_per_cell(cls, value: list[MeasureCount]) -> list[MeasureCount]:
        seen: set[tuple[str, str | None, str | None]] = set()
        for i, m in enumerate(value):
            if m.measure is IndicatorMeasure.UNKNOWN:
                continue  # measures newer than this schema may all read as UNKNOWN
            cell = (m.measure.value, m.category.value if m.category else None, m.reason)
            if cell in seen:
                raise ValueError(f"measure {i} ({'/'.join(str(c) for c in cell)}) counted twice")
            seen.add(cell)
        return value
