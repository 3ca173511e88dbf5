"""Entry files for ``exchange blacklist add|remove``: all or nothing, every problem listed.

One entry a line; blank lines and lines starting with ``#`` are skipped. A line is either
a JSON object (``{"kind": "DOMAIN", "value": "example.com", "category": "OTHER",
"reason": "...", "expires_at": "2027-01-01T00:00:00+00:00"}``; ``algorithm`` for HASH) or
words: ``KIND VALUE`` (``HASH ALGORITHM HEX`` for a hash); the category and reason of
word lines come from the command line. Each entry is normalized
(``exchange.blacklist.normalize``); a line that does not is reported as
``line N: <field>: <reason>``, and then nothing from the file is used.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from exchange.blacklist.deltas import Entry, EntryKey, parse_entry
from exchange.blacklist.kinds import EntryKind
from exchange.blacklist.normalize import entry as normalize_entry
from exchange.models.common import OffenceCategory

Problems = list[tuple[str, str]]


def _fields(line: str) -> dict[str, Any]:
    if line.startswith("{"):
        data = json.loads(line)
        if not isinstance(data, dict):
            raise ValueError("a JSON line is an object")
        return data
    words = line.split()
    if len(words) < 2:
        raise ValueError("expected 'KIND VALUE' (or 'HASH ALGORITHM HEX')")
    kind = words[0].upper()
    if kind == EntryKind.HASH and len(words) == 3:
        return {"kind": kind, "algorithm": words[1].upper(), "value": words[2]}
    if len(words) != 2:
        raise ValueError("expected 'KIND VALUE' (or 'HASH ALGORITHM HEX')")
    return {"kind": kind, "value": words[1]}


def _lines(text: str) -> list[tuple[int, str]]:
    return [
        (n, line.strip())
        for n, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


def parse_additions(
    text: str, *, category: str, reason: str, now: datetime
) -> tuple[list[Entry], Problems]:
    """The entries of an additions file, and every problem (line numbers from 1)."""
    entries: list[Entry] = []
    problems: Problems = []
    seen: dict[EntryKey, int] = {}
    for number, line in _lines(text):
        where = f"line {number}"
        try:
            data = _fields(line)
            kind = str(data.get("kind", "")).upper()
            if kind not in EntryKind.__members__:
                raise ValueError(f"kind must be one of {', '.join(EntryKind)}, not {kind!r}")
            cat = str(data.get("category") or category)
            if cat not in OffenceCategory.__members__:
                raise ValueError(f"category {cat!r} is not an offence category")
            data = {
                **data,
                "kind": kind,
                "category": cat,
                "added_at": data.get("added_at") or now.isoformat(),
            }
            item = parse_entry(data, str(data.get("reason") or reason))
            if item.added_at > now:
                raise ValueError("added_at is in the future")
            if item.expires_at is not None and item.expires_at <= item.added_at:
                raise ValueError("expires_at must be after added_at")
        except (ValueError, KeyError, TypeError) as exc:
            problems.append((where, f"{line[:200]!r}: {exc}"))
            continue
        if item.key in seen:
            problems.append((where, f"{item.value} is already on line {seen[item.key]}"))
            continue
        seen[item.key] = number
        entries.append(item)
    return entries, problems


def parse_removals(text: str) -> tuple[list[EntryKey], Problems]:
    """The entry keys of a removals file, and every problem."""
    keys: list[EntryKey] = []
    problems: Problems = []
    for number, line in _lines(text):
        try:
            data = _fields(line)
            kind = str(data.get("kind", "")).upper()
            value, algorithm = normalize_entry(kind, str(data["value"]), data.get("algorithm"))
        except (ValueError, KeyError, TypeError) as exc:
            problems.append((f"line {number}", f"{line[:200]!r}: {exc}"))
            continue
        keys.append((kind, value, algorithm))
    return keys, problems


def problems_text(problems: Sequence[tuple[str, str]]) -> str:
    return "\n".join(f"{where}: {why}" for where, why in problems)
