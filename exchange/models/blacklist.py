"""BlacklistDelta: a change to a shared blocking list (schemas/BlacklistDelta.avsc).

A DELTA carries the entries added and removed between ``base_version`` and ``version``; a
SNAPSHOT the whole list at ``version`` (maybe in parts); a REPAIR_REQUEST asks the list's
owner for a snapshot. Values are checked here as they will be normalized
(``exchange.blacklist.normalize``); the node stores them in canonical form.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, Field, ValidationInfo, field_validator

from exchange.blacklist.kinds import EntryKind
from exchange.models import validators
from exchange.models.common import HashAlgorithm, Model, OffenceCategory, Text, Timestamp

#: What a list entry blocks: a URL, a whole domain, a file by its digest, an IP or network.
BlacklistEntryKind = EntryKind


class BlacklistDeltaKind(StrEnum):
    """A delta, a full snapshot, or a request for a snapshot."""

    DELTA = "DELTA"
    SNAPSHOT = "SNAPSHOT"
    REPAIR_REQUEST = "REPAIR_REQUEST"


EntryValue = Annotated[str, Field(min_length=1, max_length=4096)]


def normalize_entry(kind: Any, value: str, algorithm: Any) -> tuple[str, str]:
    from exchange.blacklist.normalize import entry  # normalize imports the validators

    return entry(kind, value, None if algorithm is None else str(algorithm))


def _check(kind: Any, value: str, algorithm: Any) -> None:
    if kind is None:
        return
    normalize_entry(kind, value, None if algorithm is None else str(algorithm))


class BlacklistRemoval(Model):
    """An entry taken off the list."""

    kind: BlacklistEntryKind = Field(description="URL, DOMAIN, HASH or IP.")
    algorithm: HashAlgorithm | None = Field(default=None, description="HASH entries only.")
    value: EntryValue = Field(description="The entry, compared after normalization.")

    @field_validator("value")
    @classmethod
    def _value(cls, value: str, info: ValidationInfo) -> str:
        _check(info.data.get("kind"), value, info.data.get("algorithm"))
        return value


class BlacklistEntry(Model):
    """An entry put on the list."""

    kind: BlacklistEntryKind = Field(description="URL, DOMAIN, HASH or IP.")
    algorithm: HashAlgorithm | None = Field(default=None, description="HASH entries only.")
    value: EntryValue = Field(description="The URL, domain, hex digest or IP/network to block.")
    category: OffenceCategory = Field(description="Offence category of the content.")
    added_at: Timestamp = Field(description="When the entry was listed; not in the future.")
    reason: Text | None = Field(default=None, max_length=1000, description="Why it is listed.")
    expires_at: AwareDatetime | None = Field(default=None, description="When it stops.")

    @field_validator("value")
    @classmethod
    def _value(cls, value: str, info: ValidationInfo) -> str:
        _check(info.data.get("kind"), value, info.data.get("algorithm"))
        return value

    @field_validator("expires_at")
    @classmethod
    def _after_added(cls, value: Any, info: ValidationInfo) -> Any:
        added = info.data.get("added_at")
        if value is not None and added is not None and value <= added:
            raise ValueError("expires_at must be after added_at")
        return value


class BlacklistDelta(Model):
    """The entries added and removed between ``base_version`` and ``version`` of a list."""

    list_id: Annotated[str, AfterValidator(validators.list_id)] = Field(
        description="Id of the list; the record key. Its first label names the owner."
    )
    base_version: int = Field(ge=0, description="The version this delta applies to.")
    version: int = Field(ge=1, description="The list's version after this delta.")
    added: list[BlacklistEntry] = Field(max_length=100_000, description="Entries added.")
    removed: list[BlacklistRemoval] = Field(max_length=100_000, description="Entries removed.")
    reason: Text = Field(max_length=1000, description="Why the list changed.")
    kind: BlacklistDeltaKind = Field(default=BlacklistDeltaKind.DELTA, description="What it is.")
    part: int = Field(default=1, ge=1, le=10_000, description="SNAPSHOT: this part, from 1.")
    parts: int = Field(default=1, ge=1, le=10_000, description="SNAPSHOT: how many parts.")

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
        seen: set[tuple[str, str, str]] = set()
        for i, entry in enumerate(value):
            key = (entry.kind.value, *normalize_entry(entry.kind, entry.value, entry.algorithm))
            if key in seen:
                raise ValueError(f"entry {i} ({entry.value}) is listed twice")
            seen.add(key)
        return value

    @field_validator("removed")
    @classmethod
    def _removed_not_added(
        cls, value: list[BlacklistRemoval], info: ValidationInfo
    ) -> list[BlacklistRemoval]:
        added = {
            (e.kind.value, *normalize_entry(e.kind, e.value, e.algorithm))
            for e in info.data.get("added") or ()
        }
        for i, entry in enumerate(value):
            if (
                entry.kind.value,
                *normalize_entry(entry.kind, entry.value, entry.algorithm),
            ) in added:
                raise ValueError(f"entry {i} ({entry.value}) is both added and removed")
        return value

    @field_validator("parts")
    @classmethod
    def _parts(cls, value: int, info: ValidationInfo) -> int:
        kind = info.data.get("kind")
        part = info.data.get("part", 1)
        if part > value:
            raise ValueError(f"part {part} is beyond parts {value}")
        if kind is not BlacklistDeltaKind.SNAPSHOT and value != 1:
            raise ValueError("only a SNAPSHOT is cut into parts")
        if kind is BlacklistDeltaKind.REPAIR_REQUEST and (
            info.data.get("added") or info.data.get("removed")
        ):
            raise ValueError("a REPAIR_REQUEST carries no entries")
        if kind is BlacklistDeltaKind.SNAPSHOT and info.data.get("removed"):
            raise ValueError("a SNAPSHOT removes nothing: it is the whole list")
        return value
