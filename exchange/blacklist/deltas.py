"""Deltas in canonical form, who owns a list, and what a reader does with each delta.

Ownership: a list id's first label names its owner (``fr.csam`` is FR's list; the rest,
``csam``, names the *joint* list that members' lists of the same name make up). Only the
owner may publish a DELTA or SNAPSHOT for it; any member may send a REPAIR_REQUEST.

Ordering (:func:`verdict`), per (owner, list id), against the version a reader holds:

- DELTA whose ``base_version`` is the held version: APPLY;
- DELTA whose ``base_version`` is above it: HOLD (a gap; ask the owner for a repair);
- DELTA whose ``version`` is at or below it: STALE (already applied; a replay);
- DELTA that straddles the held version (base below, version above): CONFLICT;
- SNAPSHOT newer than the held version: APPLY (it replaces the list); else STALE.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from exchange.blacklist.kinds import EntryKind
from exchange.blacklist.normalize import entry

#: An entry's identity within one list: (kind, canonical value, algorithm or "").
EntryKey = tuple[str, str, str]


class DeltaKind(StrEnum):
    DELTA = "DELTA"
    SNAPSHOT = "SNAPSHOT"
    REPAIR_REQUEST = "REPAIR_REQUEST"


class Verdict(StrEnum):
    APPLY = "apply"
    HOLD = "hold"
    STALE = "stale"
    CONFLICT = "conflict"


@dataclass(frozen=True, slots=True)
class Entry:
    """One listed entry in canonical form."""

    kind: str
    value: str
    algorithm: str
    category: str
    reason: str
    added_at: datetime
    expires_at: datetime | None

    @property
    def key(self) -> EntryKey:
        return (self.kind, self.value, self.algorithm)


@dataclass(frozen=True, slots=True)
class Delta:
    """A BlacklistDelta in canonical form, with its sender."""

    sender: str
    list_id: str
    kind: DeltaKind
    base_version: int
    version: int
    added: tuple[Entry, ...]
    removed: tuple[EntryKey, ...]
    reason: str
    part: int = 1
    parts: int = 1

    @property
    def owner(self) -> str:
        return owner_of(self.list_id)

    @property
    def joint(self) -> str:
        return joint_name(self.list_id)


class EntryProblem(ValueError):  # noqa: N818 - a verdict on input, like ValueError
    """An entry that cannot be normalized: which one (``where``) and why."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


def owner_of(list_id: str) -> str:
    """The member that owns ``list_id``: its first label in upper case (fr.csam -> FR)."""
    return list_id.partition(".")[0].upper()


def joint_name(list_id: str) -> str:
    """The joint list ``list_id`` belongs to: what follows the owner label (fr.csam -> csam)."""
    head, dot, rest = list_id.partition(".")
    return rest if dot else head


def not_owned(sender: str, payload: Mapping[str, Any]) -> str | None:
    """Why ``sender`` may not publish this delta (None: it may)."""
    kind = str(payload.get("kind") or DeltaKind.DELTA)
    if kind == DeltaKind.REPAIR_REQUEST:
        return None
    list_id = str(payload.get("list_id", ""))
    owner = owner_of(list_id)
    if owner != sender:
        return f"list {list_id} is owned by {owner}; {sender} may not change it"
    return None


def _time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def parse_entry(item: Mapping[str, Any], default_reason: str) -> Entry:
    value, algorithm = entry(item["kind"], str(item["value"]), item.get("algorithm"))
    expires = item.get("expires_at")
    return Entry(
        kind=str(item["kind"]),
        value=value,
        algorithm=algorithm,
        category=str(item["category"]),
        reason=str(item.get("reason") or default_reason),
        added_at=_time(item["added_at"]),
        expires_at=None if expires is None else _time(expires),
    )


def parse_delta(sender: str, payload: Mapping[str, Any]) -> Delta:
    """A delta payload (as validated, or as stored) in canonical form. Raises EntryProblem
    naming the first entry that does not normalize."""
    reason = str(payload.get("reason", ""))
    added: list[Entry] = []
    for i, item in enumerate(payload.get("added") or ()):
        try:
            added.append(parse_entry(item, reason))
        except (ValueError, KeyError) as exc:
            raise EntryProblem(f"added.{i}", str(exc)) from None
    removed: list[EntryKey] = []
    for i, item in enumerate(payload.get("removed") or ()):
        try:
            value, algorithm = entry(item["kind"], str(item["value"]), item.get("algorithm"))
        except (ValueError, KeyError) as exc:
            raise EntryProblem(f"removed.{i}", str(exc)) from None
        removed.append((str(item["kind"]), value, algorithm))
    return Delta(
        sender=sender,
        list_id=str(payload["list_id"]),
        kind=DeltaKind(str(payload.get("kind") or DeltaKind.DELTA)),
        base_version=int(payload["base_version"]),
        version=int(payload["version"]),
        added=tuple(added),
        removed=tuple(removed),
        reason=reason,
        part=int(payload.get("part") or 1),
        parts=int(payload.get("parts") or 1),
    )


def verdict(delta: Delta, held_version: int) -> Verdict:
    """What a reader holding ``held_version`` of the list does with ``delta``."""
    if delta.kind is DeltaKind.SNAPSHOT:
        return Verdict.APPLY if delta.version > held_version else Verdict.STALE
    if delta.version <= held_version:
        return Verdict.STALE
    if delta.base_version == held_version:
        return Verdict.APPLY
    if delta.base_version > held_version:
        return Verdict.HOLD
    return Verdict.CONFLICT


def next_applicable(held: Iterable[Delta], version: int) -> Delta | None:
    """Among held deltas, the one that now applies at ``version`` (None: still a gap)."""
    for delta in held:
        if delta.kind is DeltaKind.DELTA and delta.base_version == version:
            return delta
    return None


def to_payload(delta: Delta) -> dict[str, Any]:
    """A delta as a BlacklistDelta payload (JSON-ready: times in ISO form)."""
    return {
        "list_id": delta.list_id,
        "base_version": delta.base_version,
        "version": delta.version,
        "kind": delta.kind.value,
        "part": delta.part,
        "parts": delta.parts,
        "reason": delta.reason,
        "added": [entry_payload(e) for e in delta.added],
        "removed": [{"kind": k, "value": v, "algorithm": a or None} for k, v, a in delta.removed],
    }


def entry_payload(e: Entry) -> dict[str, Any]:
    return {
        "kind": e.kind,
        "value": e.value,
        "algorithm": e.algorithm or None,
        "category": e.category,
        "reason": e.reason,
        "added_at": e.added_at.isoformat(),
        "expires_at": None if e.expires_at is None else e.expires_at.isoformat(),
    }


def chunks(entries: Sequence[Entry], size: int) -> list[tuple[Entry, ...]]:
    """``entries`` cut into parts of at most ``size`` (one empty part for an empty list)."""
    if not entries:
        return [()]
    return [tuple(entries[i : i + size]) for i in range(0, len(entries), size)]


__all__ = ["EntryKind"]
