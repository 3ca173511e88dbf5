"""Built-in outbound connector: appends each shared record (and each withdrawal) to a JSONL file.

Options: ``path`` (required; relative to the node's config folder). One JSON object a
line: ``{"event": "deliver", "record": {...}}`` or ``{"event": "retract", "message_id": ...}``.
The node only hands over records whose handling code allows onward sharing (the topic's
``onward_sharing_max_handling_code``); this connector writes what it is given.
Writes run in a worker thread so a slow disk never blocks the node's event loop.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from uuid import UUID

from connectors.api import ConnectorContext, SharedRecord


class JsonlConnector:
    """Appends delivered records and retractions to ``options.path``."""

    def __init__(self, context: ConnectorContext) -> None:
        self.path: Path = context.path("path")
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _append(self, line: str) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    async def deliver(self, record: SharedRecord, context: ConnectorContext) -> bool:
        line = json.dumps({"event": "deliver", "record": record.to_json()}, sort_keys=True)
        await asyncio.to_thread(self._append, line)
        return True

    async def retract(self, message_id: UUID, context: ConnectorContext) -> bool:
        line = json.dumps({"event": "retract", "message_id": str(message_id)}, sort_keys=True)
        await asyncio.to_thread(self._append, line)
        return True

    async def close(self) -> None:
        return None
