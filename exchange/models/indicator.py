"""StatisticalIndicator: aggregate counts per offence category (no personal data)."""

from __future__ import annotations

from datetime import date

from pydantic import Field, ValidationInfo, field_validator

from exchange.models.common import CountryCode, Model, OffenceCategory, PastDate


class CategoryCount(Model):
    """The count for one offence category."""

    category: OffenceCategory = Field(description="The category counted.")
    count: int = Field(ge=0, le=2**63 - 1, description="Offences reported in the period.")


class StatisticalIndicator(Model):
    """Counts for one country and period; record key ``f"{sender}:{period_start:%Y-%m-%d}"``."""

    country: CountryCode = Field(description="The country counted (ISO 3166-1 alpha-2).")
    period_start: PastDate = Field(description="First day counted, inclusive.")
    period_end: date = Field(description="Last day counted, inclusive.")
    counts: list[CategoryCount] = Field(
        min_length=1, max_length=100, description="One count per category reported."
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
