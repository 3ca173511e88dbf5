"""Writing a joint list's exports: the rule decides, the file is replaced atomically.

:func:`write_export` streams the confirmed entries (``exchange.blacklist.policy``) through
the renderer into a temporary file beside the target, hashing the body; the export's serial
(``bl_exports``) grows by one whenever the body or the version set differs from the last
written, and stays otherwise. The header is then written before the body into a second
temporary file, fsynced and renamed over the target: a reader sees the old file or the new,
never half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from exchange.blacklist.deltas import EntryKey
from exchange.blacklist.policy import Listing, ListRule, confirmed
from exchange.blacklist.render import ExportFormat, Header, parse_header, render
from nodes.blacklist.db import BlacklistDB, Tx, micros

FETCH = 50_000


@dataclass(frozen=True)
class ExportResult:
    path: Path
    serial: int
    versions: dict[str, int]
    entries: int


async def confirmed_keys(tx: Tx, joint: str, rule: ListRule, now: datetime) -> list[EntryKey]:
    """The entries of ``joint`` its rule exports at ``now``, in key order."""
    rows = await tx.fetch(
        "SELECT kind, value, algorithm, owner, category, expires_at FROM bl_entries"
        " WHERE joint = ? ORDER BY kind, value, algorithm",
        joint,
    )
    listings = (
        Listing((str(k), str(v), str(a)), str(o), str(c), None if e is None else int(e))
        for k, v, a, o, c, e in rows
    )
    return [key for key, _ in confirmed(listings, rule, micros(now))]


def _body(fmt: ExportFormat, header: Header, keys: list[EntryKey]) -> Iterator[str]:
    lines = render(fmt, header, keys)
    for _ in range(4):  # the comment header: written apart, not hashed
        next(lines)
    if fmt is ExportFormat.RPZ:  # the SOA carries the serial: not part of the content
        next(lines)
        yield "$TTL 300"
        next(lines)
        next(lines)
        yield "@ IN NS localhost."
    yield from lines


def atomic_write(path: Path, chunks: Iterator[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


async def write_export(
    db: BlacklistDB,
    *,
    joint: str,
    fmt: ExportFormat,
    out: Path,
    rule: ListRule,
    now: datetime,
    zone: str = "rpz.ncp.invalid.",
) -> ExportResult:
    """Render ``joint`` as ``fmt`` into ``out`` atomically; the serial grows with changes."""
    name = f"{joint}:{fmt.value}"
    async with db.transaction() as tx:
        keys = await confirmed_keys(tx, joint, rule, now)
        vrows = await tx.fetch("SELECT list_id, version FROM bl_lists WHERE joint = ?", joint)
        versions = {str(k): int(v) for k, v in vrows}
        last = await tx.fetch("SELECT serial, digest FROM bl_exports WHERE name = ?", name)
        probe = Header(joint, 0, versions, now, zone)
        digest = hashlib.sha256()
        digest.update(json.dumps(sorted(versions.items())).encode())
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile("w+", encoding="utf-8", dir=out.parent) as body:
            for line in _body(fmt, probe, keys):
                text = line + "\n"
                digest.update(text.encode())
                body.write(text)
            hexdigest = digest.hexdigest()
            serial = int(last[0][0]) if last else 0
            if not last or str(last[0][1]) != hexdigest:
                serial += 1
            header = Header(joint, serial, versions, now, zone)
            head = list(render(fmt, header, []))
            body.seek(0)

            def chunks() -> Iterator[str]:
                yield "\n".join(head) + "\n"
                if fmt is ExportFormat.RPZ:  # the SOA and NS lines came with the head
                    body.readline()
                    body.readline()
                while block := body.read(1 << 20):
                    yield block

            atomic_write(out, chunks())
        await tx.execute(
            "INSERT INTO bl_exports (name, serial, digest, versions, written_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET serial = excluded.serial,"
            " digest = excluded.digest, versions = excluded.versions,"
            " written_at = excluded.written_at",
            name,
            serial,
            hexdigest,
            json.dumps(versions, sort_keys=True),
            micros(now),
        )
    return ExportResult(out, serial, versions, len(keys))


async def confirm_applied(
    db: BlacklistDB, *, consumer: str, export_file: Path, now: datetime
) -> tuple[int, dict[str, int]]:
    """Record that ``consumer`` applied the export in ``export_file`` (its header says which)."""
    with export_file.open(encoding="utf-8") as fh:
        first = [next(fh, "") for _ in range(4)]
    serial, versions = parse_header(first)
    joint_fmt = first[0].split("joint blacklist ", 1)[-1].strip()  # "csam (rpz)"
    joint, _, fmt = joint_fmt.partition(" ")
    if serial is None:
        raise ValueError(f"{export_file}: no export header (serial) in its first lines")
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO bl_applied (consumer, export_name, serial, versions, confirmed_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (consumer) DO UPDATE SET"
            " export_name = excluded.export_name, serial = excluded.serial,"
            " versions = excluded.versions, confirmed_at = excluded.confirmed_at",
            consumer,
            f"{joint}:{fmt.strip('()')}",
            serial,
            json.dumps(versions, sort_keys=True),
            micros(now),
        )
    return serial, versions


async def applied(db: BlacklistDB) -> list[dict[str, object]]:
    """Each consumer's confirmed serial beside the export's current one; lag > 0: behind."""
    async with db.transaction() as tx:
        rows = await tx.fetch(
            "SELECT a.consumer, a.export_name, a.serial, a.versions, a.confirmed_at, e.serial,"
            " e.versions, e.written_at FROM bl_applied a"
            " LEFT JOIN bl_exports e ON e.name = a.export_name"
            " ORDER BY a.consumer"
        )
    out: list[dict[str, object]] = []
    for consumer, name, serial, vers, at, current, cur_vers, written in rows:
        cur = int(current) if current is not None else int(serial)
        out.append(
            {
                "consumer": consumer,
                "export": name,
                "applied_serial": int(serial),
                "current_serial": cur,
                "lag": max(cur - int(serial), 0),
                "applied_versions": json.loads(vers),
                "current_versions": json.loads(cur_vers) if cur_vers else {},
                "confirmed_at_us": int(at),
                "current_since_us": int(written) if written is not None else int(at),
            }
        )
    return out


__all__ = ["shutil"]
