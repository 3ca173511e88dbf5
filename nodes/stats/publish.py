"""Count one period from the store and queue its indicator: a new revision only on a change.

:func:`publish_period` counts ``period`` (:mod:`nodes.stats.queries` +
:mod:`nodes.stats.counting`), builds the suppressed indicator
(:func:`exchange.stats.tally.build_indicator`) and compares it with the last one this node
queued for the period (its outbox). Unchanged: nothing is queued (unless ``force``).
Changed or new: it is queued in the outbox with the next revision (the publisher signs and
sends it like any record), and a DISCLOSURE audit entry records the publication: period,
revision, the revision it replaces, the threshold. The outbox item and the audit entry are
two store transactions: a crash between them leaves an indicator queued without its entry
(the next check does not repeat it, the counts being unchanged).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from exchange.ids import NodeId
from exchange.models import StatisticalIndicator
from exchange.stats.period import Period
from exchange.stats.tally import Tally, build_indicator, merge, same_counts
from exchange.topics import MessageType
from nodes.inbound import build_item
from nodes.stats import counting
from nodes.stats.config import StatsConfig
from nodes.stats.queries import PeriodRows, own_latest, period_rows
from nodes.store.base import AuditAction, AuditEvent, Store

_MT = MessageType


@dataclass(frozen=True, slots=True)
class Outcome:
    """What :func:`publish_period` did for one period."""

    period: Period
    indicator: StatisticalIndicator
    queued: bool  # False: the counts equal the last revision queued; nothing sent
    replaces_revision: int | None  # the revision this one corrects, if any
    outbox_id: int | None = None
    message_id: UUID | None = None


def tally_rows(rows: PeriodRows) -> Tally:
    """Every counting function over one period's rows."""
    sent, received = rows.sent, rows.received
    return merge(
        (
            counting.count_alerts(
                sent.get(_MT.OFFENCE_ALERT.value, ()), received.get(_MT.OFFENCE_ALERT.value, ())
            ),
            counting.count_blacklist(
                sent.get(_MT.BLACKLIST_DELTA.value, ()),
                received.get(_MT.BLACKLIST_DELTA.value, ()),
            ),
            counting.count_pseudonyms(
                sent.get(_MT.PSEUDONYM_QUERY.value, ()),
                received.get(_MT.PSEUDONYM_QUERY.value, ()),
                sent.get(_MT.PSEUDONYM_RESPONSE.value, ()),
                received.get(_MT.PSEUDONYM_RESPONSE.value, ()),
                rows.query_categories,
            ),
            counting.count_quarantine(rows.quarantined),
        )
    )


async def count_period(store: Store, node: str, period: Period) -> Tally:
    """What ``node`` sent, received and quarantined during ``period``."""
    start, end = period.bounds()
    rows = await period_rows(store, node, start, end)
    return Counter(tally_rows(rows))


def indicator_key(node: str, period: Period) -> str:
    """The record key of ``node``'s indicator for ``period`` (models.record_key's form)."""
    return f"{node}:{period.start:%Y-%m-%d}"


async def publish_period(
    store: Store,
    *,
    node: NodeId,
    prefix: str,
    stats: StatsConfig,
    period: Period,
    now: datetime,
    actor: str,
    force: bool = False,
) -> Outcome:
    """Count ``period`` and queue its indicator when it is new or its counts changed."""
    tally = await count_period(store, node, period)
    last_payload = await own_latest(store, indicator_key(node, period))
    last = None if last_payload is None else StatisticalIndicator.model_validate(last_payload)
    revision = 1 if last is None else last.revision + 1
    indicator = build_indicator(node, period, tally, threshold=stats.threshold, revision=revision)
    if last is not None and same_counts(last, indicator) and not force:
        return Outcome(period, last, queued=False, replaces_revision=None)
    item = build_item(
        _MT.STATISTICAL_INDICATOR.value,
        indicator.model_dump(mode="json"),
        handling={"tlp": stats.tlp.value, "code": "H0"},
        node=node,
        prefix=prefix,
        trust=None,
        now=now,
    )
    (outbox_id,) = await store.enqueue([item])
    replaces = None if last is None else last.revision
    await store.append_audit(
        [
            AuditEvent(
                at=now,
                action=AuditAction.DISCLOSURE,
                actor=actor,
                justification="statistical indicator: aggregate counts, no personal data",
                recipients=("*",),
                subject=str(item.message_id),
                details={
                    "kind": "statistical_indicator",
                    "period": period.label,
                    "period_start": period.start.isoformat(),
                    "revision": revision,
                    "replaces_revision": replaces,
                    "threshold": stats.threshold,
                    "outbox_id": outbox_id,
                },
            )
        ]
    )
    return Outcome(period, indicator, True, replaces, outbox_id, item.message_id)
