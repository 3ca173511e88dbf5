"""Files holding decrypted content are readable and writable by their owner only (0600).

A node's store holds the payloads of records addressed to it, decrypted; an outbound
connector's file holds what it shares. :func:`make_private` creates such a file with mode
0600 (and tightens an existing one), whatever the process's umask. :func:`secure_sqlite`
does it for a SQLite database before SQLite opens it: SQLite creates the database's
``-wal``, ``-shm`` and ``-journal`` files with the mode of the database file itself, so
those follow; any left by an earlier run are tightened too.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PRIVATE_MODE = 0o600
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def make_private(path: Path) -> None:
    """Create ``path`` empty (mode 0600) if missing; else set its mode to 0600.

    An existing file is changed by path, never opened: closing any descriptor of a SQLite
    database drops every POSIX lock this process holds on it, those of its other open
    connections included (and another process may then corrupt it).
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    except FileExistsError:
        os.chmod(path, PRIVATE_MODE)
    else:
        os.close(fd)


def secure_sqlite(path: str | Path) -> None:
    """Before SQLite opens ``path``: the database file exists with mode 0600, and so do the
    companion files an earlier run left (SQLite gives new ones the database's mode)."""
    make_private(Path(path))
    for suffix in SQLITE_COMPANIONS:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(f"{path}{suffix}", PRIVATE_MODE)
