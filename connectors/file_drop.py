"""Built-in inbound connector ``file-drop``: submits each row of JSONL and CSV files dropped
into a folder.

Options::

    [[connectors]]
    name = "drop"
    plugin = "file-drop"
    [connectors.options]
    folder = "drop"                # watched (relative to the config's folder)
    processed = "drop/processed"   # where files go once handled (default: <folder>/processed)
    poll_interval_s = 2
    settle_s = 2                   # a file unchanged this long is complete

**When a file is taken.** Only ``*.jsonl`` and ``*.csv`` files are read, and only once
complete: either a marker ``<file>.done`` exists beside it (taken at the next poll; the
marker is removed), or its size and modification time have not changed for ``settle_s``.
Names starting with ``.`` and ending in ``.part`` or ``.tmp`` are never read: write to
``x.csv.part`` and rename to ``x.csv`` (atomic on one file system), or write ``x.csv`` then
``x.csv.done``.

**Rows.** JSONL: one message a line, as ``exchange alert publish --jsonl`` reads it
(``message_type``, ``payload``, ``handling``, ``recipients``, ``topic``, ``key``). CSV: a
header line, then one OffenceAlert a row; columns ``title``, ``category``, ``observed_at``,
``description``, ``reporting_source``, ``language``, ``country_of_origin``,
``case_reference``, ``tlp``, ``handling_code``, ``recipients``, and indicator columns
``url``, ``domain``, ``ip``, ``email`` (several values separated by ``;``).

**Each row on its own.** Every row is validated and submitted by itself: a bad row does not
hold back the good ones. When the file is done it is moved to ``processed/<UTC time>-<name>``
and the rejected rows go beside it in ``<that name>.rejected.jsonl``, one line each:
``{"line": 3, "problems": [{"field": "payload.title", "reason": "..."}], "row": "..."}``.

**Crashes.** The line numbers already submitted are appended to
``processed/.<name>.progress`` as they are submitted; a restart skips them, so a crash in
the middle of a file loses no row, and repeats at most the one row in flight when it came.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connectors.api import ConnectorContext
from exchange.errors import InputError, Reason

SUFFIXES = (".jsonl", ".csv")
INDICATORS = {"url": "URL", "domain": "DOMAIN", "ip": "IP_ADDRESS", "email": "EMAIL"}
Row = tuple[str, dict[str, Any]]  # message type, submit() keyword arguments


def csv_row(row: dict[str, str]) -> Row:
    """One CSV row as an OffenceAlert submission."""
    value = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
    indicators = [
        {"type": kind, "value": item.strip()}
        for column, kind in INDICATORS.items()
        for item in value.get(column, "").split(";")
        if item.strip()
    ]
    payload = {
        "title": value.get("title") or None,
        "category": value.get("category", "").upper() or None,
        "observed_at": value.get("observed_at") or None,
        "indicators": indicators,
        "description": value.get("description", ""),
        "reporting_source": (value.get("reporting_source") or "LAW_ENFORCEMENT").upper(),
        "language": value.get("language") or "en",
        "country_of_origin": value.get("country_of_origin") or None,
        "case_reference": value.get("case_reference") or None,
    }
    handling = {"tlp": value.get("tlp") or None, "code": value.get("handling_code") or None}
    recipients = [r.strip() for r in value.get("recipients", "").split(";") if r.strip()]
    return "OffenceAlert", {"payload": payload, "handling": handling, "recipients": recipients}


def jsonl_row(line: str) -> Row:
    """One JSONL line as a submission; InputError naming the field otherwise."""
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError([("json", f"not JSON: {exc.msg}")]) from None
    if not isinstance(entry, dict) or not isinstance(entry.get("payload"), dict):
        raise InputError([("payload", "each line is an object with a 'payload' object")])
    recipients = entry.get("recipients") or []
    if not isinstance(recipients, list) or not all(isinstance(r, str) for r in recipients):
        raise InputError([("recipients", "must be a list of node ids")])
    handling = entry.get("handling") or {}
    if not isinstance(handling, dict):
        raise InputError([("handling", "must be an object")])
    return str(entry.get("message_type") or "OffenceAlert"), {
        "payload": entry["payload"],
        "handling": handling,
        "recipients": recipients,
        "topic": entry.get("topic"),
        "key": entry.get("key"),
    }


def read_rows(path: Path) -> list[tuple[int, str, Row | InputError]]:
    """Each data row of ``path``: (line number, raw text, the submission or its problems)."""
    text = path.read_text(encoding="utf-8")
    out: list[tuple[int, str, Row | InputError]] = []
    if path.suffix == ".jsonl":
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    out.append((number, line, jsonl_row(line)))
                except InputError as exc:
                    out.append((number, line, exc))
        return out
    lines = text.splitlines()
    reader = csv.DictReader(io.StringIO(text))
    for row in reader:
        number = reader.line_num
        raw = lines[number - 1] if 0 < number <= len(lines) else ""
        if None in row:
            out.append((number, raw, InputError([("csv", "more fields than the header")])))
            continue
        out.append((number, raw, csv_row(row)))
    return out


class FileDropConnector:
    """Polls ``options.folder``; see the module's doc for the conventions."""

    def __init__(self, context: ConnectorContext) -> None:
        self.folder = context.path("folder")
        processed = context.options.get("processed")
        self.processed = context.path("processed") if processed else self.folder / "processed"
        where = f"connectors.{context.name}.options"
        self.poll_s = self._positive(context, "poll_interval_s", 2.0, where)
        self.settle_s = self._positive(context, "settle_s", 2.0, where)
        self._seen: dict[Path, tuple[int, int, float]] = {}  # size, mtime_ns, first seen

    @staticmethod
    def _positive(context: ConnectorContext, name: str, default: float, where: str) -> float:
        value = context.options.get(name, default)
        if not isinstance(value, int | float) or value <= 0:
            raise InputError([(f"{where}.{name}", "a positive number")], reason=Reason.BAD_CONFIG)
        return float(value)

    async def run(self, context: ConnectorContext) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.processed.mkdir(parents=True, exist_ok=True)
        while True:
            for path in await asyncio.to_thread(self.ready, asyncio.get_running_loop().time()):
                await self.process(path, context)
            await asyncio.sleep(self.poll_s)

    def ready(self, now: float) -> list[Path]:
        """The files complete by now (marker, or unchanged for ``settle_s``)."""
        out = []
        for path in sorted(self.folder.iterdir()):
            name = path.name
            if name.startswith(".") or not name.endswith(SUFFIXES) or not path.is_file():
                continue
            if path.with_name(name + ".done").exists():
                out.append(path)
                continue
            stat = path.stat()
            size, mtime = stat.st_size, stat.st_mtime_ns
            seen = self._seen.get(path)
            if seen is None or seen[:2] != (size, mtime):
                self._seen[path] = (size, mtime, now)
            elif now - seen[2] >= self.settle_s:
                out.append(path)
        return out

    async def process(self, path: Path, context: ConnectorContext) -> None:
        """Submit each row not yet submitted, then move the file and write its rejects."""
        progress = self.processed / f".{path.name}.progress"
        done = await asyncio.to_thread(_done_lines, progress)
        try:
            rows = await asyncio.to_thread(read_rows, path)
        except (OSError, UnicodeDecodeError) as exc:
            rows = [(0, "", InputError([("file", f"cannot read: {exc}")]))]
        rejected: list[dict[str, Any]] = []
        accepted = 0
        for number, raw, row in rows:
            if number in done:
                continue
            if isinstance(row, tuple):
                message_type, kwargs = row
                try:
                    await context.submit(message_type, kwargs.pop("payload"), **kwargs)
                except InputError as exc:
                    row = exc
                else:
                    accepted += 1
                    await asyncio.to_thread(_append, progress, f"{number}\n")
                    continue
            problems = [{"field": f, "reason": r} for f, r in row.problems]
            rejected.append({"line": number, "problems": problems, "row": raw})
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target = self.processed / f"{stamp}-{path.name}"
        if rejected:
            lines = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rejected)
            await asyncio.to_thread(
                _append, target.with_name(target.name + ".rejected.jsonl"), lines
            )
        await asyncio.to_thread(_finish, path, target, progress)
        self._seen.pop(path, None)
        context.log.info(
            "file processed",
            file=path.name,
            accepted=accepted,
            rejected=len(rejected),
            moved_to=str(target),
        )

    async def close(self) -> None:
        return None


def _done_lines(progress: Path) -> set[int]:
    if not progress.exists():
        return set()
    return {int(x) for x in progress.read_text().split() if x.isdigit()}


def _append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _finish(path: Path, target: Path, progress: Path) -> None:
    os.replace(path, target)
    marker = path.with_name(path.name + ".done")
    marker.unlink(missing_ok=True)
    progress.unlink(missing_ok=True)
