"""Built-in outbound connector ``stix``: each stored alert as a STIX 2.1 bundle file.

Options: ``dir`` (required; relative to the node's config folder). Each OffenceAlert the node
shares is written as ``<dir>/<message_id>.json``, a bundle made by :mod:`connectors.stix`
(the sender's identity, TLP 2.0 and handling-code markings, one indicator per alert
indicator, a report naming them). A retraction removes the file. Other message types are
not STIX alerts: they are not written (and not counted as disclosed).
"""

from __future__ import annotations

from uuid import UUID

from connectors.api import ConnectorContext, RecordRejected, SharedRecord
from connectors.folder import RecordFolder
from connectors.stix import alert_bundle
from connectors.stix_patterns import PatternRefused


class StixConnector:
    """Writes STIX bundles into ``options.dir``."""

    def __init__(self, context: ConnectorContext) -> None:
        self.folder = RecordFolder(context.path("dir"))

    async def deliver(self, record: SharedRecord, context: ConnectorContext) -> bool:
        if record.message_type != "OffenceAlert":
            return False
        try:
            bundle = alert_bundle(record)
        except (PatternRefused, KeyError, ValueError) as exc:
            raise RecordRejected(f"no STIX bundle for this alert: {exc}") from None
        await self.folder.write(record.message_id, bundle)
        return True

    async def retract(self, message_id: UUID, context: ConnectorContext) -> bool:
        return await self.folder.remove(message_id)

    async def close(self) -> None:
        return None
