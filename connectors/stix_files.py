"""Built-in outbound connector ``stix``: each stored alert as a STIX 2.1 bundle file.

Options: ``dir`` (required; relative to the node's config folder). Each OffenceAlert the node
shares is written as ``<dir>/<message_id>.json``, a bundle made by :mod:`connectors.stix`
(the sender's identity, TLP 2.0 and handling-code markings, one indicator per alert
indicator, a report naming them). A retraction removes the file. Other message types are
not STIX alerts: they are not written (and not counted as disclosed). The file handling is
:class:`connectors.folder.AlertFileConnector`'s.
"""

from __future__ import annotations

from typing import Any

from connectors.api import SharedRecord
from connectors.folder import AlertFileConnector
from connectors.stix import alert_bundle
from connectors.stix_patterns import PatternRefused


class StixConnector(AlertFileConnector):
    """Writes STIX bundles into ``options.dir``."""

    document = "STIX bundle"
    refused = (PatternRefused, KeyError, ValueError)

    def render(self, record: SharedRecord) -> dict[str, Any]:
        return alert_bundle(record)
