"""A folder of one JSON file per shared record, and the outbound connector that fills one.

:class:`AlertFileConnector` is what the file-writing format connectors (``stix``, ``misp``)
share: each OffenceAlert the node shares is rendered by the subclass's ``render`` and written
to ``<dir>/<message_id>.json``; a retraction removes the file; other message types are not
written (and not counted as disclosed). An alert the format cannot express is refused with
:class:`~connectors.api.RecordRejected`.

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
from typing import Any, ClassVar
from uuid import UUID

from connectors.api import ConnectorContext, RecordRejected, SharedRecord

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


class AlertFileConnector:
    """Writes each shared OffenceAlert, as :meth:`render` makes it, into ``options.dir``."""

    #: What one file holds, for the refusal's message ("STIX bundle").
    document: ClassVar[str]
    #: What :meth:`render` raises for an alert the format cannot express.
    refused: ClassVar[tuple[type[Exception], ...]] = (KeyError, ValueError)

    def __init__(self, context: ConnectorContext) -> None:
        self.folder = RecordFolder(context.path("dir"))

    def render(self, record: SharedRecord) -> dict[str, Any]:
        raise NotImplementedError

    async def deliver(self, record: SharedRecord, context: ConnectorContext) -> bool:
        if record.message_type != "OffenceAlert":
            return False
        try:
            document = self.render(record)
        except self.refused as exc:
            raise RecordRejected(f"no {self.document} for this alert: {exc}") from None
        await self.folder.write(record.message_id, document)
        return True

    async def retract(self, message_id: UUID, context: ConnectorContext) -> bool:
        return await self.folder.remove(message_id)

    async def close(self) -> None:
        return None
