"""Built-in outbound connector ``misp``: each stored alert as a MISP event JSON file.

Options: ``dir`` (required; relative to the node's config folder). Each OffenceAlert the node
shares is written as ``<dir>/<message_id>.json`` in MISP's event format (made by
:mod:`connectors.misp`), ready for MISP's "import from JSON" or a feed; a retraction removes
the file. Other message types are not written (and not counted as disclosed).
"""

from __future__ import annotations

from uuid import UUID

from connectors.api import ConnectorContext, RecordRejected, SharedRecord
from connectors.folder import RecordFolder
from connectors.misp import alert_event


class MispConnector:
    """Writes MISP events into ``options.dir``."""

    def __init__(self, context: ConnectorContext) -> None:
        self.folder = RecordFolder(context.path("dir"))

    async def deliver(self, record: SharedRecord, context: ConnectorContext) -> bool:
        if record.message_type != "OffenceAlert":
            return False
        try:
            event = alert_event(record)
        except (KeyError, ValueError) as exc:
            raise RecordRejected(f"no MISP event for this alert: {exc}") from None
        await self.folder.write(record.message_id, event)
        return True

    async def retract(self, message_id: UUID, context: ConnectorContext) -> bool:
        return await self.folder.remove(message_id)

    async def close(self) -> None:
        return None
