"""Built-in outbound connector ``blacklist-export``: keeps the joint list's export files
current for the people who block (ISPs, resolvers).

    [[connectors]]
    name = "isp-exports"
    plugin = "blacklist-export"
    topics = ["blacklist"]
    options = { config = "node.toml", joint = "csam", dir = "exports",
                formats = ["rpz", "hosts", "domains", "urls", "hashes"] }

Each BlacklistDelta the node stores is handed over here; the connector then brings the
joint list up to date (``nodes.blacklist.state.sync``) and rewrites every configured
format atomically (``<dir>/<joint>.<format>``), its serial increasing when the content
changes. So a removal reaches every export in the same cycle as the delta that made it.
Unlike other plugins it reads the node's store (named through the node's ``config``): the
joint list lives there. Re-delivery after a crash only rewrites the same files.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from connectors.api import ConnectorContext, SharedRecord
from exchange.blacklist.render import ExportFormat
from exchange.errors import InputError, Reason
from exchange.topics import TopicKind, topic_name


class BlacklistExportConnector:
    """Rewrites the configured exports of one joint list after each stored delta."""

    def __init__(self, context: ConnectorContext) -> None:
        from nodes.config import load_config

        self.config = load_config(context.path("config"))
        self.joint = str(context.options.get("joint") or "")
        if not self.joint:
            raise InputError(
                [(f"connectors.{context.name}.options.joint", "name the joint list (csam)")],
                reason=Reason.BAD_CONFIG,
            )
        self.dir: Path = context.path("dir", "exports")
        raw: Any = context.options.get("formats", ["rpz"])
        try:
            self.formats = [ExportFormat(str(f)) for f in raw]
        except ValueError:
            raise InputError(
                [
                    (
                        f"connectors.{context.name}.options.formats",
                        f"each one of {[f.value for f in ExportFormat]}",
                    )
                ],
                reason=Reason.BAD_CONFIG,
            ) from None
        self.topic = topic_name(TopicKind.BLACKLIST, self.config.kafka.topic_prefix)
        self.clock = datetime.now
        self._db: Any = None

    async def export_all(self, now: datetime) -> None:
        from nodes.blacklist.db import blacklist_db
        from nodes.blacklist.export import write_export
        from nodes.blacklist.state import sync
        from nodes.store.base import open_store

        if self._db is None:
            store = open_store(self.config.store.url)
            await store.open()
            self._db = blacklist_db(store, self.config.store.url)
        bl = self.config.blacklist
        await sync(self._db, self.topic, self.config.node, now)
        for fmt in self.formats:
            await write_export(
                self._db,
                joint=self.joint,
                fmt=fmt,
                out=self.dir / f"{self.joint}.{fmt.value}",
                rule=bl.rule(self.joint),
                now=now,
                zone=bl.rpz_zone,
            )

    async def deliver(self, record: SharedRecord, context: ConnectorContext) -> bool:
        if record.message_type != "BlacklistDelta":
            return False
        await self.export_all(self.clock(UTC))
        return True

    async def retract(self, message_id: UUID, context: ConnectorContext) -> bool:
        return False

    async def close(self) -> None:
        if self._db is not None:
            store = self._db.store
            await self._db.close()
            await store.close()
            self._db = None
