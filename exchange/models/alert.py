"""OffenceAlert: an online offence observed in one Member State (schemas/OffenceAlert.avsc)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from exchange.models import validators
from exchange.models.common import (
    CountryCode,
    HashAlgorithm,
    IndicatorType,
    LanguageCode,
    Line,
    Model,
    OffenceCategory,
    ReportingSource,
    Text,
    Timestamp,
    Uuid,
)

_VALUE_CHECKS: dict[IndicatorType, Any] = {
    IndicatorType.URL: validators.url,
    IndicatorType.DOMAIN: validators.domain,
    IndicatorType.IP_ADDRESS: validators.ip_address,
    IndicatorType.EMAIL: validators.email,
    IndicatorType.CRYPTO_WALLET: validators.wallet,
    IndicatorType.ONLINE_HANDLE: validators.single_line,
}


def _only_for(kind: IndicatorType, field: str, value: Any, info: ValidationInfo) -> Any:
    """``value`` is required when the indicator's type is ``kind`` and null otherwise."""
    itype = info.data.get("type")
    if itype is None:  # the type itself was refused; that error is enough
        return value
    if itype == kind and value is None:
        raise ValueError(f"a {kind} indicator needs {field}")
    if itype != kind and value is not None:
        raise ValueError(f"only a {kind} indicator has {field}, not a {itype}")
    return value


class Indicator(Model):
    """One observable; fields are declared so that type and its qualifiers come first."""

    type: IndicatorType = Field(description="Kind of observable.")
    hash_algorithm: HashAlgorithm | None = Field(
        default=None, validate_default=True, description="Digest algorithm (FILE_HASH only)."
    )
    platform: Line | None = Field(
        max_length=100,
        default=None,
        validate_default=True,
        description="Platform (ONLINE_HANDLE only).",
    )
    currency: str | None = Field(
        default=None, validate_default=True, description="Currency ticker (CRYPTO_WALLET only)."
    )
    value: Line = Field(max_length=2048, description="The observable, in the syntax of its type.")

    @field_validator("hash_algorithm")
    @classmethod
    def _hash_algorithm(cls, value: HashAlgorithm | None, info: ValidationInfo) -> Any:
        return _only_for(IndicatorType.FILE_HASH, "hash_algorithm", value, info)

    @field_validator("platform")
    @classmethod
    def _platform(cls, value: str | None, info: ValidationInfo) -> Any:
        return _only_for(IndicatorType.ONLINE_HANDLE, "platform", value, info)

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str | None, info: ValidationInfo) -> Any:
        if value is not None:
            validators.currency(value)
        return _only_for(IndicatorType.CRYPTO_WALLET, "currency", value, info)

    @field_validator("value")
    @classmethod
    def _value(cls, value: str, info: ValidationInfo) -> str:
        itype = info.data.get("type")
        if itype == IndicatorType.FILE_HASH:
            algorithm = info.data.get("hash_algorithm")
            if algorithm is not None:
                validators.file_hash(value, algorithm.value)
        elif itype is not None:
            _VALUE_CHECKS[itype](value)
        return value


class OffenceAlert(Model):
    """An alert for the European alert platform; record key: ``alert_id``."""

    alert_id: Uuid = Field(description="Unique id of the alert (text UUID on the wire).")
    title: Line = Field(max_length=300, description="One-line summary.")
    category: OffenceCategory = Field(description="Offence category.")
    observed_at: Timestamp = Field(description="When the offence was observed; not in the future.")
    indicators: list[Indicator] = Field(
        min_length=1, max_length=1000, description="The observables; at least one."
    )
    description: Text = Field(max_length=10_000, description="What was observed, in words.")
    reporting_source: ReportingSource = Field(description="Who reported the offence.")
    language: LanguageCode = Field(description="ISO 639-1 code of the content or report.")
    country_of_origin: CountryCode = Field(description="ISO 3166-1 alpha-2 country of origin.")
    case_reference: Line | None = Field(
        max_length=100, default=None, description="The sender's case reference."
    )
