"""Built-in outbound connector: appends each shared record (and each withdrawal) to a JSONL file.

Options: ``path`` (required; relative to the node's config folder). One JSON object a
line: ``{"event": "deliver", "record": {...}}`` or ``{"event": "retract", "message_id": ...}``.
The node only hands over records that its onward-sharing rules allow (the topic's
``onward_sharing_max_handling_code`` and ``onward_sharing_max_tlp``; TLP:RED and
TLP:AMBER+STRICT only when the connector's ``allowed_tlp`` names them); this connector
writes what it is given.

The node delivers at least once (after a crash it hands over again what it had not yet
confirmed), so this connector is idempotent: on first use it scans its file for the message
ids already written, and skips a delivery or retraction it already wrote. A last line cut
short by a crash is cut off (it is written again in full).
Writes run in a worker thread so a slow disk never blocks the node's event loop.
The file holds decrypted content: it is created with mode 0600 (an existing one is
tightened to 0600 on first use), whatever the process's umask.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from uuid import UUID

from connectors.api import ConnectorContext, SharedRecord

#: Owner read/write only: the file holds decrypted records.
PRIVATE_MODE = 0o600


class JsonlConnector:
    """Appends delivered records and retractions to ``options.path``, each at most once."""

    def __init__(self, context: ConnectorContext) -> None:
        self.path: Path = context.path("path")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._written: dict[str, set[str]] | None = None  # event -> message ids in the file
        self._lock = asyncio.Lock()

    def _scan(self) -> dict[str, set[str]]:
        """The message ids already written, by event; truncates a torn last line."""
        written: dict[str, set[str]] = {"deliver": set(), "retract": set()}
        if not self.path.exists():
            return written
        os.chmod(self.path, PRIVATE_MODE)  # written by an older version, or by hand
        data = self.path.read_bytes()
        complete = data.rfind(b"\n") + 1  # a crash mid-write leaves a torn tail: drop it
        if complete < len(data):
            with self.path.open("r+b") as fh:
                fh.truncate(complete)
        for line in data[:complete].splitlines():
            try:
                entry = json.loads(line)
                event = entry["event"]
                mid = entry["record"]["message_id"] if event == "deliver" else entry["message_id"]
            except (ValueError, KeyError, TypeError):
                continue  # torn or foreign line: not a record of ours
            if event in written and isinstance(mid, str):
                written[event].add(mid)
        return written

    def _append(self, line: str) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_MODE)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    async def _write_once(self, event: str, message_id: UUID, line: str) -> None:
        async with self._lock:
            if self._written is None:
                self._written = await asyncio.to_thread(self._scan)
            seen = self._written[event]
            mid = str(message_id)
            if mid in seen:
                return
            await asyncio.to_thread(self._append, line)
            seen.add(mid)

    async def deliver(self, record: SharedRecord, context: ConnectorContext) -> bool:
        line = json.dumps({"event": "deliver", "record": record.to_json()}, sort_keys=True)
        await self._write_once("deliver", record.message_id, line)
        return True  # written now or before a crash: shared either way

    async def retract(self, message_id: UUID, context: ConnectorContext) -> bool:
        line = json.dumps({"event": "retract", "message_id": str(message_id)}, sort_keys=True)
        await self._write_once("retract", message_id, line)
        return True

    async def close(self) -> None:
        return None
