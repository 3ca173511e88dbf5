"""The pseudonym CSV file read by ``exchange pseudonym import``.

UTF-8, a header row naming the columns (any order; other columns refused)::

    platform,handle,case_reference,contact_unit,first_seen,last_seen

``first_seen`` / ``last_seen``: ISO 8601 dates or times (a date is midnight UTC; a time
without offset is UTC); ``last_seen`` may be empty (= first_seen). Each row is checked on
its own: a bad row is refused with its line number and reason, good rows are kept (the
issue's rule: a patrol's file is imported as far as it is right, and every problem is
listed so the file can be fixed and imported again; importing is idempotent). Pure.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache

from exchange.pseudonyms.normalize import HandleError, normalize_handle, normalize_platform

__all__ = ["COLUMNS", "IndexEntry", "ParseResult", "RowProblem", "parse_rows"]

COLUMNS = ("platform", "handle", "case_reference", "contact_unit", "first_seen", "last_seen")
_MAX_TEXT = {"case_reference": 100, "contact_unit": 200}


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One pseudonym as indexed: platform and handle normalized."""

    platform: str
    handle: str
    case_reference: str
    contact_unit: str
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class RowProblem:
    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.reason}"


@dataclass(frozen=True, slots=True)
class ParseResult:
    entries: list[IndexEntry]
    problems: list[RowProblem]


@lru_cache(maxsize=4096)  # a patrol's file repeats its dates
def _time(text: str) -> datetime:
    text = text.strip()
    if len(text) == 10:
        d = date.fromisoformat(text)
        return datetime(d.year, d.month, d.day, tzinfo=UTC)
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


_platform = lru_cache(maxsize=1024)(normalize_platform)


def _row(line: int, row: dict[str, str]) -> IndexEntry | list[RowProblem]:
    problems: list[RowProblem] = []
    values = {k: (row.get(k) or "").strip() for k in COLUMNS}
    platform = handle = ""
    try:
        platform = _platform(values["platform"])
    except HandleError as exc:
        problems.append(RowProblem(line, "platform", str(exc)))
    if platform:
        try:
            handle = normalize_handle(platform, values["handle"])
        except HandleError as exc:
            problems.append(RowProblem(line, "handle", str(exc)))
    for name, limit in _MAX_TEXT.items():
        text = values[name]
        if not text:
            problems.append(RowProblem(line, name, "is empty"))
        elif len(text) > limit or any(ch in text for ch in "\r\n\t"):
            problems.append(RowProblem(line, name, f"one line of at most {limit} characters"))
    first = last = None
    try:
        first = _time(values["first_seen"])
    except ValueError:
        problems.append(
            RowProblem(line, "first_seen", f"not an ISO 8601 time: {values['first_seen']!r}")
        )
    try:
        last = _time(values["last_seen"]) if values["last_seen"] else first
    except ValueError:
        problems.append(
            RowProblem(line, "last_seen", f"not an ISO 8601 time: {values['last_seen']!r}")
        )
    if first is not None and last is not None and last < first:
        problems.append(RowProblem(line, "last_seen", "is before first_seen"))
    if problems or first is None or last is None:
        return problems
    return IndexEntry(
        platform, handle, values["case_reference"], values["contact_unit"], first, last
    )


def parse_rows(lines: Iterable[str]) -> Iterator[IndexEntry | RowProblem]:
    """Each row's entry or its problems, in file order (streaming: a 1M-row file is not held)."""
    reader = csv.DictReader(lines)
    header = reader.fieldnames or []
    missing = [c for c in COLUMNS if c not in header and c != "last_seen"]
    unknown = [c for c in header if c not in COLUMNS]
    if missing or unknown:
        if missing:
            yield RowProblem(1, "header", f"missing column(s): {', '.join(missing)}")
        if unknown:
            yield RowProblem(1, "header", f"unknown column(s): {', '.join(unknown)}")
        return
    for row in reader:
        line = reader.line_num
        if None in row:
            yield RowProblem(line, "row", "more fields than the header names")
            continue
        result = _row(line, row)
        if isinstance(result, IndexEntry):
            yield result
        else:
            yield from result


def parse_text(text: str) -> ParseResult:
    """The whole of a CSV text parsed (tests and small files)."""
    entries: list[IndexEntry] = []
    problems: list[RowProblem] = []
    for item in parse_rows(io.StringIO(text, newline="")):
        (entries if isinstance(item, IndexEntry) else problems).append(item)  # type: ignore[arg-type]
    return ParseResult(entries, problems)
