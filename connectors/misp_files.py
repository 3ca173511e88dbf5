"""Built-in outbound connector ``misp``: each stored alert as a MISP event JSON file.

Options: ``dir`` (required; relative to the node's config folder). Each OffenceAlert the node
shares is written as ``<dir>/<message_id>.json`` in MISP's event format (made by
:mod:`connectors.misp`), ready for MISP's "import from JSON" or a feed; a retraction removes
the file. Other message types are not written (and not counted as disclosed). The file
handling is :class:`connectors.folder.AlertFileConnector`'s.
"""

from __future__ import annotations

from typing import Any

from connectors.api import SharedRecord
from connectors.folder import AlertFileConnector
from connectors.misp import alert_event


class MispConnector(AlertFileConnector):
    """Writes MISP events into ``options.dir``."""

    document = "MISP event"

    def render(self, record: SharedRecord) -> dict[str, Any]:
        return alert_event(record)
