"""Versioned schema migrations, one folder per backend dialect (``sqlite/``, ``postgres/``).

Files are named ``NNNN_description.sql``; versions start at 1 and have no gaps, and both
dialects carry the same versions (version N means the same schema on either backend).
A backend applies each pending file inside its own transaction and records it in the
``schema_migrations`` table (version, name, SHA-256 of the file, applied_at).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from nodes.store.base import StoreError

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

#: Created before anything else, outside the numbered files (same text on both dialects).
SCHEMA_MIGRATIONS_DDL = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " checksum TEXT NOT NULL,"
    " applied_at TEXT NOT NULL)"
)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str
    checksum: str  # hex SHA-256 of the file's bytes


@cache
def load(dialect: str) -> tuple[Migration, ...]:
    """The migrations of ``dialect`` ("sqlite" or "postgres") in version order."""
    folder = resources.files(__name__).joinpath(dialect)
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match is None:
            continue
        data = entry.read_bytes()
        found.append(
            Migration(
                version=int(match.group(1)),
                name=match.group(2),
                sql=data.decode("utf-8"),
                checksum=hashlib.sha256(data).hexdigest(),
            )
        )
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise StoreError(
                f"migrations/{dialect}: expected version {expected:04d}, "
                f"found {migration.version:04d}_{migration.name}.sql"
            )
    return tuple(found)


def latest(dialect: str) -> int:
    """The newest schema version this code knows for ``dialect``."""
    migrations = load(dialect)
    return migrations[-1].version if migrations else 0


def too_new_message(found: int, known: int) -> str:
    return (
        f"store schema version {found} is newer than this software supports ({known}); "
        "upgrade the node software (a downgrade of the store is not supported)"
    )
