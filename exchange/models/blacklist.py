"""BlacklistDelta: a change to a shared blocking list (schemas/BlacklistDelta.avsc)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from exchange.models import validators
from exchange.models.common import Model, OffenceCategory, Text, Timestamp


class BlacklistEntryKind(StrEnum):
    """What a list entry blocks: one URL or a whole domain."""

    URL = "URL"
    DOMAIN = "DOMAIN"


def _check_value(value: str, info: ValidationInfo) -> str:
    kind = info.data.get("kind")
    if kind == BlacklistEntryKind.URL:
        validators.url(value)
    elif kind == BlacklistEntryKind.DOMAIN:
        validators.domain(value)
    return value


EntryValue = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_check_value)]


class BlacklistRemoval(Model):
    """An entry taken off the list."""

    kind: BlacklistEntryKind = Field(description="URL or DOMAIN.")
    value: EntryValue = Field(description="The URL or domain, as it was added.")


class BlacklistEntry(Model):
    """An entry put on the list."""

    kind: BlacklistEntryKind = Field(description="URL or DOMAIN.")
    value: EntryValue = Field(description="The URL or domain to block.")
    category: OffenceCategory = Field(description="Offence category of the content.")
    added_at: Timestamp = Field(description="When the entry was listed; not in the future.")


class BlacklistDelta(Model):
    """The entries added and removed between ``base_version`` and ``version`` of a list."""

    list_id: Annotated[str, AfterValidator(validators.list_id)] = Field(
        description="Id of the list; the record key."
    )
    base_version: int = Field(ge=0, description="The version this delta applies to.")
    version: int = Field(ge=1, description="The list's version after this delta.")
    added: list[BlacklistEntry] = Field(max_length=100_000, description="Entries added.")
    removed: list[BlacklistRemoval] = Field(max_length=100_000, description="Entries removed.")
    reason: Text = Field(max_length=1000, description="Why the list changed.")

    @field_validator("version")
    @classmethod
    def _after_base(cls, value: int, info: ValidationInfo) -> int:
        base = info.data.get("base_version")
        if base is not None and value <= base:
            raise ValueError(f"version {value} must be greater than base_version {base}")
        return value

    @field_validator("added")
    @classmethod
    def _added_unique(cls, value: list[BlacklistEntry]) -> list[BlacklistEntry]:
        seen: set[tuple[str, str]] = set()
        for i, entry in enumerate(value):
            key = (entry.kind.value, entry.value)
            if key in seen:
                raise ValueError(f"entry {i} ({entry.value}) is listed twice")
            seen.add(key)
        return value

    @field_validator("removed")
    @classmethod
    def _removed_not_added(
        cls, value: list[BlacklistRemoval], info: ValidationInfo
    ) -> list[BlacklistRemoval]:
        added = {(e.kind, e.value) for e in info.data.get("added") or ()}
        for i, entry in enumerate(value):
            if (entry.kind, entry.value) in added:
                raise ValueError(f"entry {i} ({entry.value}) is both added and removed")
        return value
