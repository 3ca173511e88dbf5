"""A sample outbound connector plugin: appends ``deliver <id>`` / ``retract <id>`` lines to
``options.path``, each message id once (the node delivers at least once).

It imports only ``connectors.api`` (the plugin API), as a third-party plugin should."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from connectors.api import ConnectorContext, SharedRecord


class LedgerConnector:
    """Keeps a ledger of what the node shared with it."""

    def __init__(self, context: ConnectorContext) -> None:
        self.path: Path = context.path("path")
        self.seen: set[str] = set()
        if self.path.exists():
            self.seen = set(self.path.read_text(encoding="utf-8").splitlines())

    def _once(self, line: str) -> None:
        if line not in self.seen:
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")
            self.seen.add(line)

    async def deliver(self, record: SharedRecord, context: ConnectorContext) -> bool:
        self._once(f"deliver {record.message_id}")
        return True

    async def retract(self, message_id: UUID, context: ConnectorContext) -> bool:
        self._once(f"retract {message_id}")
        return True

    async def close(self) -> None:
        return None
