"""OffenceAlert: an online offence observed in one Member State (schemas/OffenceAlert.avsc)."""

from __future__ import annotations

from typing import Any, Self

from pydantic import Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

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
}  # ONLINE_HANDLE: any Line (no control characters), which the field type checks
#: Types with no qualifier field (hash_algorithm, platform, currency all null).
_PLAIN = frozenset(
    {IndicatorType.URL, IndicatorType.DOMAIN, IndicatorType.IP_ADDRESS, IndicatorType.EMAIL}
)


def _only_for(kind: IndicatorType, itype: IndicatorType, field: str, value: Any) -> str | None:
    """Why ``value`` is wrong: required when the indicator's type is ``kind``, else null."""
    if itype == kind and value is None:
        return f"a {kind} indicator needs {field}"
    if itype != kind and value is not None:
        return f"only a {kind} indicator has {field}, not a {itype}"
    return None


def _refusal(cls: type[Model], problems: list[tuple[str, Any, str]]) -> ValidationError:
    """One ValidationError listing (field, input, reason); pydantic-core prefixes each field
    with the path of the model being validated (``indicators.0.platform``)."""
    return ValidationError.from_exception_data(
        cls.__name__,
        [
            InitErrorDetails(
                type=PydanticCustomError("value_error", "{reason}", {"reason": reason}),
                loc=(field,),
                input=value,
            )
            for field, value, reason in problems
        ],
    )


class Indicator(Model):
    """One observable; fields are declared so that type and its qualifiers come first.

    Field types and lengths are pydantic-core's compiled constraints; how the fields
    agree with ``type`` is one Python check per indicator (:meth:`_agree`), which names
    every field at fault, rather than a callback per field (three quarters of an alert's
    validation time went to those).
    """

    type: IndicatorType = Field(description="Kind of observable.")
    hash_algorithm: HashAlgorithm | None = Field(
        default=None, description="Digest algorithm (FILE_HASH only)."
    )
    platform: Line | None = Field(
        max_length=100, default=None, description="Platform (ONLINE_HANDLE only)."
    )
    currency: str | None = Field(default=None, description="Currency ticker (CRYPTO_WALLET only).")
    value: Line = Field(max_length=2048, description="The observable, in the syntax of its type.")

    @model_validator(mode="after")
    def _agree(self) -> Self:
        if (
            self.hash_algorithm is None
            and self.platform is None
            and self.currency is None
            and self.type in _PLAIN
        ):
            try:  # the common case: no qualifier, and a value that passes
                _VALUE_CHECKS[self.type](self.value)
            except ValueError:
                pass  # said in words below
            else:
                return self
        return self._every_problem()

    def _every_problem(self) -> Self:
        """Every field at odds with ``type``, named; or ``self`` when none is."""
        itype, algorithm, currency = self.type, self.hash_algorithm, self.currency
        problems: list[tuple[str, Any, str]] = []
        why = _only_for(IndicatorType.FILE_HASH, itype, "hash_algorithm", algorithm)
        if why:
            problems.append(("hash_algorithm", algorithm, why))
        why = _only_for(IndicatorType.ONLINE_HANDLE, itype, "platform", self.platform)
        if why:
            problems.append(("platform", self.platform, why))
        why = None
        if currency is not None:
            try:
                validators.currency(currency)
            except ValueError as exc:
                why = str(exc)
        if why is None:
            why = _only_for(IndicatorType.CRYPTO_WALLET, itype, "currency", currency)
        if why:
            problems.append(("currency", currency, why))
        try:
            check = _VALUE_CHECKS.get(itype)
            if check is not None:
                check(self.value)
            elif itype is IndicatorType.FILE_HASH and algorithm is not None:
                validators.file_hash(self.value, algorithm.value)
        except ValueError as exc:
            problems.append(("value", self.value, str(exc)))
        if problems:
            raise _refusal(Indicator, problems)
        return self


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
