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
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from exchange.blacklist.deltas import EntryKey
from exchange.blacklist.policy import Listing, ListRule, confirmed
from exchange.blacklist.render import (
    ExportFormat,
    Header,
    parse_header,
    render_entries,
    render_head,
)
from nodes.blacklist.db import BlacklistDB, Tx, micros

FETCH = 50_000


@dataclass(frozen=True)
class ExportResult:
    path: Path
    serial: int
    versions: dict[str, int]
    entries: int


async def confirmed_pages(
    tx: Tx, joint: str, rule: ListRule, now: datetime
) -> AsyncIterator[list[EntryKey]]:
    """The entries of ``joint`` its rule exports at ``now``, in key order, a page at a time
    (keyset paging on the entry key and list id: a million entries never sit in memory; the
    listings of the key at a page's end are carried into the next page)."""
    now_us = micros(now)
    carry: list[Listing] = []
    after: tuple[Any, ...] | None = None
    while True:
        if after is None:
            rows = await tx.fetch(SELECT_LISTINGS + ORDER, joint, FETCH)
        else:
            rows = await tx.fetch(
                SELECT_LISTINGS + " AND (kind, value, algorithm, list_id) > (?, ?, ?, ?)" + ORDER,
                joint,
                *after,
                FETCH,
            )
        listings = carry + [
            Listing((str(k), str(v), str(a)), str(o), str(c), None if e is None else int(e))
            for k, v, a, _l, o, c, e in rows
        ]
        if len(rows) < FETCH:
            yield [key for key, _ in confirmed(listings, rule, now_us)]
            return
        last = listings[-1].key
        cut = len(listings)
        while cut > 0 and listings[cut - 1].key == last:
            cut -= 1
        carry = listings[cut:]
        yield [key for key, _ in confirmed(listings[:cut], rule, now_us)]
        after = tuple(rows[-1][:4])


SELECT_LISTINGS = (
    "SELECT kind, value, algorithm, list_id, owner, category, expires_at FROM bl_entries"
    " WHERE joint = ?"
)
ORDER = " ORDER BY kind, value, algorithm, list_id LIMIT ?"


async def confirmed_keys(tx: Tx, joint: str, rule: ListRule, now: datetime) -> list[EntryKey]:
    """Every confirmed entry of ``joint`` at ``now`` (small lists; exports page instead)."""
    return [key async for page in confirmed_pages(tx, joint, rule, now) for key in page]


def atomic_write(path: Path, chunks: Iterator[str]) -> None:
    """Write ``chunks`` to a temporary file beside ``path``, fsync, then rename over it."""
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
    count = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    async with db.transaction() as tx:
        vrows = await tx.fetch("SELECT list_id, version FROM bl_lists WHERE joint = ?", joint)
        versions = {str(k): int(v) for k, v in vrows}
        last = await tx.fetch("SELECT serial, digest FROM bl_exports WHERE name = ?", name)
        digest = hashlib.sha256(json.dumps(sorted(versions.items())).encode())
        with tempfile.TemporaryFile("w+", encoding="utf-8", dir=out.parent) as body:
            async for page in confirmed_pages(tx, joint, rule, now):
                count += len(page)
                text = "".join(line + "\n" for line in render_entries(fmt, page, zone))
                digest.update(text.encode())
                body.write(text)
            hexdigest = digest.hexdigest()
            serial = int(last[0][0]) if last else 0
            if not last or str(last[0][1]) != hexdigest:
                serial += 1
            head = "".join(
                line + "\n" for line in render_head(fmt, Header(joint, serial, versions, now, zone))
            )
            body.seek(0)

            def chunks() -> Iterator[str]:
                yield head
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
    return ExportResult(out, serial, versions, count)


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
