"""A folder of one JSON file per shared record, for the file-writing format connectors.

``<dir>/<message_id>.json`` is written atomically (a temporary file renamed over it, mode
0600: it holds decrypted content), so a crash leaves the old file or the new one, never half
of one; writing the same record again rewrites the same bytes (the node delivers at least
once). A retraction removes the file. Disk work runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any
from uuid import UUID

PRIVATE_MODE = 0o600


class RecordFolder:
    """One file per message id under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, message_id: UUID) -> Path:
        return self.root / f"{message_id}.json"

    def _write(self, message_id: UUID, data: bytes) -> None:
        final = self.path(message_id)
        tmp = final.with_suffix(".json.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)

    async def write(self, message_id: UUID, document: Any) -> None:
        data = json.dumps(document, sort_keys=True, indent=1).encode("utf-8") + b"\n"
        await asyncio.to_thread(self._write, message_id, data)

    async def remove(self, message_id: UUID) -> bool:
        """Remove the record's file; whether there was one."""
        path = self.path(message_id)
        try:
            await asyncio.to_thread(path.unlink)
        except FileNotFoundError:
            return False
        return True
