"""Blacklist entries given as objects (the REST API's ``POST /v1/blacklist``): every entry
normalized like ``exchange blacklist add|remove`` takes it, every problem named by its
field (``add[2].value``, ``remove[0].kind``); all or nothing.

An addition is ``{kind, value, category, reason, algorithm?, expires_at?}`` (the reason
defaults to the change's); a removal ``{kind, value, algorithm?}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from exchange.blacklist.deltas import Entry, EntryKey
from exchange.blacklist.kinds import EntryKind
from exchange.blacklist.normalize import entry as normalize_entry
from exchange.models.common import OffenceCategory

Problems = list[tuple[str, str]]


def _kind(data: Mapping[str, Any], where: str, problems: Problems) -> str | None:
    kind = str(data.get("kind") or "").upper()
    if kind not in EntryKind.__members__:
        problems.append((f"{where}.kind", f"must be one of {', '.join(EntryKind)}"))
        return None
    return kind


def _key(data: Mapping[str, Any], where: str, problems: Problems) -> EntryKey | None:
    kind = _kind(data, where, problems)
    value = data.get("value")
    if not isinstance(value, str) or not value.strip():
        problems.append((f"{where}.value", "a value is required"))
        return None
    if kind is None:
        return None
    algorithm = data.get("algorithm") or None
    try:
        canon, algo = normalize_entry(kind, value, algorithm)
    except ValueError as exc:
        field = "algorithm" if "algorithm" in str(exc).lower() else "value"
        problems.append((f"{where}.{field}", str(exc)))
        return None
    return (kind, canon, algo)


def _expiry(data: Mapping[str, Any], where: str, now: datetime, problems: Problems) -> Any:
    raw = data.get("expires_at")
    if raw is None:
        return None
    try:
        when = raw if isinstance(raw, datetime) else datetime.fromisoformat(str(raw))
    except ValueError:
        problems.append((f"{where}.expires_at", "an ISO 8601 time is required"))
        return False
    if when.tzinfo is None:
        problems.append((f"{where}.expires_at", "needs a UTC offset"))
        return False
    if when <= now:
        problems.append((f"{where}.expires_at", "must be in the future"))
        return False
    return when


def parse_additions(
    items: Sequence[Mapping[str, Any]], *, reason: str, now: datetime, where: str = "add"
) -> tuple[list[Entry], Problems]:
    """The entries to add, in canonical form, and every problem."""
    entries: list[Entry] = []
    problems: Problems = []
    seen: dict[EntryKey, int] = {}
    for i, data in enumerate(items):
        at = f"{where}[{i}]"
        before = len(problems)
        key = _key(data, at, problems)
        category = str(data.get("category") or "")
        if category not in OffenceCategory.__members__:
            problems.append((f"{at}.category", f"{category!r} is not an offence category"))
        why = str(data.get("reason") or reason).strip()
        if not why:
            problems.append((f"{at}.reason", "a reason is required"))
        expires = _expiry(data, at, now, problems)
        if key is not None and key in seen:
            problems.append((f"{at}.value", f"{key[1]} is already {where}[{seen[key]}]"))
        if key is None or len(problems) > before:
            continue
        seen[key] = i
        kind, value, algorithm = key
        entries.append(Entry(kind, value, algorithm, category, why, now, expires))
    return entries, problems


def parse_removals(
    items: Sequence[Mapping[str, Any]], *, where: str = "remove"
) -> tuple[list[EntryKey], Problems]:
    """The keys of the entries to remove, and every problem."""
    keys: list[EntryKey] = []
    problems: Problems = []
    for i, data in enumerate(items):
        key = _key(data, f"{where}[{i}]", problems)
        if key is not None and key not in keys:
            keys.append(key)
    return keys, problems
