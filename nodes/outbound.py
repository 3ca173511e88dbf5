"""Hands stored records to the node's outbound connectors, honouring the onward-sharing rule.

Only records whose handling code is at most the topic's ``onward_sharing_max_handling_code``
leave the node, and only to connectors configured for that topic. Each delivery a
connector confirms is logged as one DISCLOSURE audit event per (connector, batch) naming
the message ids. Retractions are passed to every connector of the topic. A failing
connector is logged and never stops the consumer. Delivery happens after the store
commit: a crash between the two loses that batch's deliveries (at most once), never
the records themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from connectors.api import ConnectorContext, OutboundConnector, SharedRecord
from exchange.topics import MessageType, TopicKind, topic_kind
from nodes.config import RulesConfig
from nodes.logging import get_logger
from nodes.metrics import Metrics
from nodes.rules import may_share_onward
from nodes.store.base import AuditAction, AuditEvent, RetractionOrder, Store, StoredRecord


@dataclass(frozen=True)
class Outbound:
    """One configured outbound connector instance."""

    name: str
    topics: frozenset[TopicKind]
    connector: OutboundConnector
    context: ConnectorContext


def shared(record: StoredRecord) -> SharedRecord:
    return SharedRecord(
        message_id=record.message_id,
        topic=record.topic,
        message_type=record.message_type,
        sender=record.sender,
        created_at=record.created_at,
        received_at=record.received_at,
        category=record.category,
        tlp=record.tlp,
        handling_code=record.handling_code,
        recipients=record.recipients,
        payload=record.payload,
    )


class Dispatcher:
    """Delivers each committed batch to the outbound connectors."""

    def __init__(
        self,
        *,
        node: str,
        outbound: Sequence[Outbound],
        rules: RulesConfig,
        prefix: str,
        store: Store,
        metrics: Metrics,
    ) -> None:
        self.node = node
        self.outbound = list(outbound)
        self.rules = rules
        self.prefix = prefix
        self.store = store
        self.metrics = metrics
        self.log = get_logger(node=node, component="outbound")

    def allowed(self, record: StoredRecord, target: Outbound) -> bool:
        kind = topic_kind(record.topic, self.prefix)
        if kind is None or kind not in target.topics:
            return False
        if record.message_type == MessageType.RETRACTION.value:
            return False
        limit = self.rules.for_kind(kind).onward_sharing_max_handling_code
        return may_share_onward(record.handling_code, limit)

    async def dispatch(
        self, records: Sequence[StoredRecord], retractions: Sequence[RetractionOrder], at: datetime
    ) -> None:
        if not self.outbound or not (records or retractions):
            return
        events: list[AuditEvent] = []
        counts: list[tuple[str, int]] = []
        for target in self.outbound:
            delivered: list[str] = []
            for record in records:
                if not self.allowed(record, target):
                    continue
                try:
                    if await target.connector.deliver(shared(record), target.context):
                        delivered.append(str(record.message_id))
                except Exception as exc:  # a plugin's failure is logged, never fatal
                    self.log.error(
                        "connector delivery failed",
                        connector=target.name,
                        message_id=str(record.message_id),
                        error=f"{type(exc).__name__}: {exc}",
                    )
            for order in retractions:
                try:
                    await target.connector.retract(order.retracted_message_id, target.context)
                except Exception as exc:
                    self.log.error(
                        "connector retraction failed",
                        connector=target.name,
                        message_id=str(order.retracted_message_id),
                        error=f"{type(exc).__name__}: {exc}",
                    )
            if delivered:
                counts.append((target.name, len(delivered)))
                events.append(
                    AuditEvent(
                        at=at,
                        action=AuditAction.DISCLOSURE,
                        actor=f"node:{self.node}/outbound",
                        justification="onward sharing allowed by the records' handling codes",
                        recipients=(f"connector:{target.name}",),
                        details={"message_ids": delivered},
                    )
                )
        if events:
            await self.store.append_audit(events)
        for name, count in counts:  # counted once audited
            self.metrics.disclosed.inc(count, name)

    async def close(self) -> None:
        for target in self.outbound:
            try:
                await target.connector.close()
            except Exception as exc:
                self.log.warning("connector close failed", connector=target.name, error=str(exc))
