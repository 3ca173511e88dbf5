"""Enums, the Handling record and the field types shared by the payload models.

Enum values equal the Avro enum symbols in ``schemas/``. Time checks read ``now`` from
the validation context (``model_validate(data, context={"now": now})``); without it
(the wire hot path) they are skipped, never taken from a hidden clock.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, ClassVar
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from exchange.models import validators

#: How far ahead of ``now`` a timestamp may be (clocks drift).
MAX_SKEW = timedelta(minutes=5)


class OffenceCategory(StrEnum):
    """Offence categories of the Council conclusions (see schemas/OffenceCategory.avsc)."""

    CHILD_SEXUAL_ABUSE_MATERIAL = "CHILD_SEXUAL_ABUSE_MATERIAL"
    SEXUAL_VIOLENCE = "SEXUAL_VIOLENCE"
    TERRORISM_INCITEMENT = "TERRORISM_INCITEMENT"  #: incitement to / condoning terrorism
    ATTACK_ON_INFORMATION_SYSTEMS = "ATTACK_ON_INFORMATION_SYSTEMS"
    IDENTITY_FRAUD = "IDENTITY_FRAUD"
    IDENTITY_THEFT = "IDENTITY_THEFT"
    FRAUDULENT_SALES = "FRAUDULENT_SALES"
    FINANCIAL_OFFENCE = "FINANCIAL_OFFENCE"
    ILLICIT_DRUG_TRADE = "ILLICIT_DRUG_TRADE"
    ILLICIT_ARMS_TRADE = "ILLICIT_ARMS_TRADE"
    OTHER = "OTHER"


class Tlp(StrEnum):
    """TLP 2.0; AMBER_STRICT is "AMBER+STRICT"."""

    CLEAR = "CLEAR"
    GREEN = "GREEN"
    AMBER = "AMBER"
    AMBER_STRICT = "AMBER_STRICT"
    RED = "RED"


class HandlingCode(StrEnum):
    """Europol handling codes: H0 none, H1 not as evidence, H2 no dissemination, H3 other."""

    H0 = "H0"
    H1 = "H1"
    H2 = "H2"
    H3 = "H3"


class SourceReliability(StrEnum):
    """Europol 4x4 source evaluation: A reliable, B mostly reliable, C mostly not, X unknown."""

    A = "A"
    B = "B"
    C = "C"
    X = "X"


class InformationReliability(StrEnum):
    """Europol 4x4 information evaluation, grades 1-4 spelt ONE..FOUR."""

    ONE = "ONE"
    TWO = "TWO"
    THREE = "THREE"
    FOUR = "FOUR"

    @property
    def grade(self) -> int:
        """The grade as a number, 1 (accuracy not in doubt) to 4 (cannot be corroborated)."""
        return ("ONE", "TWO", "THREE", "FOUR").index(self.value) + 1


class ReportingSource(StrEnum):
    """Who brought the offence to the authorities' attention."""

    HOTLINE = "HOTLINE"
    VICTIM_COMPANY = "VICTIM_COMPANY"
    CYBER_PATROL = "CYBER_PATROL"
    MEMBER_OF_PUBLIC = "MEMBER_OF_PUBLIC"
    LAW_ENFORCEMENT = "LAW_ENFORCEMENT"
    OTHER = "OTHER"


class HashAlgorithm(StrEnum):
    """Digest algorithm of a FILE_HASH indicator; hex lengths 32/40/64/128."""

    MD5 = "MD5"
    SHA1 = "SHA1"
    SHA256 = "SHA256"
    SHA512 = "SHA512"

    @property
    def hex_length(self) -> int:
        return validators.HASH_HEX_LENGTHS[self.value]


class IndicatorType(StrEnum):
    """Kind of observable in an alert."""

    URL = "URL"
    DOMAIN = "DOMAIN"
    IP_ADDRESS = "IP_ADDRESS"
    FILE_HASH = "FILE_HASH"
    EMAIL = "EMAIL"
    CRYPTO_WALLET = "CRYPTO_WALLET"
    ONLINE_HANDLE = "ONLINE_HANDLE"


# --- field types -----------------------------------------------------------------------------


def _uuid_from_bytes(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        if len(value) != 16:
            raise ValueError("a UUID is 16 bytes")
        return UUID(bytes=bytes(value))
    return value


def _utc_not_future(value: datetime, info: ValidationInfo) -> datetime:
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    if value.microsecond % 1000:
        value = value.replace(microsecond=value.microsecond - value.microsecond % 1000)
    now = info.context.get("now") if isinstance(info.context, dict) else None
    if now is not None and value > now + MAX_SKEW:
        raise ValueError(f"{value.isoformat()} is in the future (now {now.isoformat()})")
    return value


def _date_not_future(value: date, info: ValidationInfo) -> date:
    now = info.context.get("now") if isinstance(info.context, dict) else None
    if now is not None and value > (now + MAX_SKEW).date():
        raise ValueError(f"{value.isoformat()} is in the future")
    return value


#: A UUID: text in JSON, 16 raw bytes (Avro fixed Uuid) or text (Avro string) on the wire.
Uuid = Annotated[UUID, BeforeValidator(_uuid_from_bytes)]
#: Aware timestamp, kept in UTC at millisecond precision, not after now + MAX_SKEW.
Timestamp = Annotated[AwareDatetime, AfterValidator(_utc_not_future)]
#: A calendar day not after today (UTC).
PastDate = Annotated[date, AfterValidator(_date_not_future)]
CountryCode = Annotated[str, AfterValidator(validators.country)]
LanguageCode = Annotated[str, AfterValidator(validators.language)]


#: Non-empty text; the maximum length is set per field with ``Field(max_length=...)``.
Text = Annotated[str, StringConstraints(min_length=1)]
#: The syntax of :data:`Line`, checked by pydantic-core's compiled (Rust) regex rather than
#: a Python callback per field; ``$`` there is the end of the text (no trailing newline).
LINE_PATTERN = r"^[^\x00-\x1f\x7f]*$"
#: What a :data:`LINE_PATTERN` mismatch means, in words (exchange.models names it so).
LINE_REASON = "must not contain control characters"
#: Non-empty single-line text (no control characters); maximum length set per field.
Line = Annotated[str, StringConstraints(min_length=1, pattern=LINE_PATTERN)]


class Model(BaseModel):
    """Base of every payload: immutable, unknown fields refused.

    ``FIXED_UUIDS`` names the fields written as the Avro fixed ``Uuid`` (16 bytes);
    other UUID fields are written as text.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    FIXED_UUIDS: ClassVar[frozenset[str]] = frozenset()

    def to_avro(self) -> dict[str, Any]:
        """The record as the Avro schema of the same name expects it."""
        out = self.model_dump()
        for name, value in out.items():
            if isinstance(value, UUID):
                out[name] = value.bytes if name in self.FIXED_UUIDS else str(value)
        return out


class Handling(Model):
    """How receivers must handle a message (the Envelope's handling record)."""

    tlp: Tlp = Field(description="TLP 2.0 level.")
    code: HandlingCode = Field(description="Europol handling code H0-H3.")
    restriction: str | None = Field(
        default=None,
        validate_default=True,
        max_length=1000,
        description="The free-text restriction of H3; required with H3, null otherwise.",
    )
    source_reliability: SourceReliability = Field(description="Europol 4x4 source grade.")
    information_reliability: InformationReliability = Field(
        description="Europol 4x4 information grade."
    )

    @field_validator("restriction")
    @classmethod
    def _restriction_iff_h3(cls, value: str | None, info: ValidationInfo) -> str | None:
        code = info.data.get("code")
        if code == HandlingCode.H3 and not (value and value.strip()):
            raise ValueError("handling code H3 needs a restriction")
        if code is not None and code != HandlingCode.H3 and value is not None:
            raise ValueError(f"only handling code H3 carries a restriction, not {code}")
        return value
