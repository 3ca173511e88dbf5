"""Feeds the node's outbound connectors from the store's durable queue, at least once.

The consumer's ``commit_batch`` appends a DELIVER event for every record it stores and a
RETRACT event for every record a retraction changed, in the same transaction as the records
(:meth:`nodes.store.base.Store.connector_events`). One delivery loop per connector reads the
events after that connector's cursor, hands them over, then moves the cursor past them
together with the DISCLOSURE audit entry, in one store transaction. A crash anywhere
loses nothing: the next start resumes from the cursor, so a connector may see a message id
twice but never misses one.

- Only records whose handling code is at most the topic's ``onward_sharing_max_handling_code``
  and whose TLP is at most the topic's ``onward_sharing_max_tlp`` leave the node, only to
  connectors configured for the topic, and only while ACTIVE (a record withdrawn or purged
  before its turn is not delivered). TLP:RED and TLP:AMBER+STRICT reach a connector only
  when its config names the level (``allowed_tlp = ["RED"]``). Each delivery withheld by
  these rules is counted in ``exchange_withheld_total{connector, reason}``
  (:func:`nodes.rules.onward_withheld`). Each page of deliveries a
  connector confirms is logged as one DISCLOSURE audit event naming the message ids.
- Retractions are passed to every connector of the retracted record's topic.
- A connector that raises is retried with backoff on the same event, never skipped; one
  that raises :class:`connectors.api.RecordRejected` is logged, its verdict kept in the
  node status (``connector.<name>.rejected``), and the loop moves on.
- A connector configured for the first time starts at the head of the queue (what is stored
  from then on, not the store's history; ``exchange connector backfill`` hands it the
  history). Events every connector has passed are pruned.
- Isolation: each ``deliver``/``retract`` call may take at most the connector's
  ``timeout_s``; a call that hangs past it is abandoned (cancelled, not awaited) and counts
  as a failure. A failing connector is retried with backoff on the same event; its state is
  kept in the node status (``connector.<name>.state``: ``up`` or ``down since ...: error``,
  read by ``node status``) and the metrics (``exchange_connector_up``,
  ``exchange_connector_failures_total``). Other connectors and the node go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from connectors.api import ConnectorContext, OutboundConnector, RecordRejected, SharedRecord
from exchange.errors import ExchangeError
from exchange.topics import MessageType, TopicKind, topic_kind
from nodes.clock import Clock, utc_now
from nodes.config import RulesConfig
from nodes.logging import get_logger
from nodes.metrics import Metrics
from nodes.retry import Backoff
from nodes.rules import onward_withheld
from nodes.store.base import (
    AuditAction,
    AuditEvent,
    ConnectorEvent,
    EventKind,
    RecordState,
    Store,
    StoredRecord,
)

T = TypeVar("T")
PAGE = 200  # events read (and audited) at a time
PRUNE_EVERY_S = 30.0
EVERYTHING = 2**62  # prune bound when no connector is configured

#: ``spawn(name, work)``: run ``work()`` as a long-lived loop (the node's supervisor).
Spawn = Callable[[str, Callable[[], Awaitable[None]]], "asyncio.Task[None]"]


@dataclass(frozen=True)
class Outbound:
    """One configured outbound connector instance."""

    name: str
    topics: frozenset[TopicKind]
    connector: OutboundConnector
    context: ConnectorContext
    #: TLP levels among RED / AMBER_STRICT this connector's config names explicitly.
    allowed_tlp: frozenset[str] = frozenset()
    #: The longest one deliver/retract call may take before it is abandoned and retried.
    timeout_s: float = 30.0


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


class ConnectorDown(Exception):  # noqa: N818 - a state, raised to back off
    """A connector raised on an event: progress before it is kept, the event is retried."""


class ConnectorTimeout(Exception):  # noqa: N818 - a state, raised to back off
    """A connector call did not return within its ``timeout_s``."""


async def bounded(call: Awaitable[T], timeout_s: float, what: str) -> T:
    """Await ``call`` for at most ``timeout_s``; past it the call is cancelled and left
    behind (a plugin that ignores the cancellation cannot hold the loop) and
    ConnectorTimeout is raised."""
    task = asyncio.ensure_future(call)
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        task.cancel()
        task.add_done_callback(_swallow)  # its late outcome is of no interest
        raise ConnectorTimeout(f"{what} did not return within {timeout_s:g} s")
    return task.result()


def _swallow(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


@dataclass
class _Lane:
    """One connector's delivery state."""

    target: Outbound
    cursor: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    last_error: str | None = None


class Dispatcher:
    """Delivers the store's connector queue to each outbound connector (:meth:`start`,
    :meth:`wake` after a commit, :meth:`stop`, :meth:`close`)."""

    def __init__(
        self,
        *,
        node: str,
        outbound: Sequence[Outbound],
        rules: RulesConfig,
        prefix: str,
        store: Store,
        metrics: Metrics,
        clock: Clock = utc_now,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        poll_s: float = 1.0,
    ) -> None:
        self.node = node
        self.outbound = list(outbound)
        self.rules = rules
        self.prefix = prefix
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.backoff = (backoff_initial_s, backoff_max_s)
        self.poll_s = poll_s
        self.actor = f"node:{node}/outbound"
        self.log = get_logger(node=node, component="outbound")
        self.lanes = [_Lane(t) for t in self.outbound]
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._pruned_at = 0.0

    # --- life cycle ----------------------------------------------------------------------
    async def open(self) -> None:
        """Load (or create at the queue's head) every connector's cursor. Call before the
        consumer commits anything, so a new connector misses nothing stored after it."""
        for lane in self.lanes:
            lane.cursor = await self.store.open_cursor(lane.target.name, self.clock())
            await self._state(lane, "up")  # until a call fails

    async def start(self, spawn: Spawn | None = None) -> None:
        """:meth:`open`, then run one delivery loop per connector (``outbound:<name>``),
        through ``spawn`` when given (the node's supervisor restarts a loop that fails)."""
        await self.open()
        if spawn is None:
            spawn = self._create_task
        for lane in self.lanes:
            self._tasks.append(
                spawn(f"outbound:{lane.target.name}", functools.partial(self._run, lane))
            )
        if not self.lanes:  # nobody reads the queue: keep it empty
            self._tasks.append(spawn("outbound:prune", self._prune_only))

    def _create_task(self, name: str, work: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        async def run() -> None:
            await work()

        return asyncio.create_task(run(), name=f"{self.node}:{name}")

    async def drain(self) -> None:
        """Deliver everything queued to every connector now, without the loops (tests, tools);
        ConnectorDown when a connector raises (the progress before it is kept)."""
        for lane in self.lanes:
            while await self.deliver_page(lane) == PAGE:
                pass

    def wake(self) -> None:
        """New events were committed."""
        for lane in self.lanes:
            lane.wake.set()

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Finish the page in hand, then end the loops (cancelled after ``timeout_s``)."""
        self._stopping.set()
        self.wake()
        tasks, self._tasks = self._tasks, []
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for task in pending:
            self.log.warning("delivery loop did not stop in time; cancelled", task=task.get_name())
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)

    async def close(self) -> None:
        for target in self.outbound:
            try:
                await target.connector.close()
            except Exception as exc:
                self.log.warning("connector close failed", connector=target.name, error=str(exc))

    def problems(self) -> list[str]:
        """What `health` reports: connectors that are failing right now."""
        return [f"connector {x.target.name}: {x.last_error}" for x in self.lanes if x.last_error]

    # --- the loop ------------------------------------------------------------------------
    async def _run(self, lane: _Lane) -> None:
        backoff = Backoff(*self.backoff)
        while True:
            try:
                lane.wake.clear()
                handled = await self.deliver_page(lane)
                if lane.last_error is not None:
                    self.log.info("connector delivering again", connector=lane.target.name)
                    lane.last_error = None
                    backoff.reset()
                    await self._state(lane, "up")
                await self._maybe_prune()
                if self._stopping.is_set():
                    return
                if handled < PAGE:
                    await self._sleep(lane.wake, self.poll_s)
            except Exception as exc:  # connector down, store away, or a bug: retry, never die
                error = str(exc) if isinstance(exc, ConnectorDown | ExchangeError) else repr(exc)
                self.metrics.connector_failures.inc(1, lane.target.name)
                if error != lane.last_error:  # once per state change, not per retry
                    self.log.error(
                        "delivery paused, will retry", connector=lane.target.name, error=error
                    )
                    lane.last_error = error
                    with contextlib.suppress(Exception):  # the store may be what failed
                        await self._state(lane, f"down since {self.clock().isoformat()}: {error}")
                lane.last_error = error
                if self._stopping.is_set():
                    return
                await self._sleep(self._stopping, backoff.next_delay())

    async def _state(self, lane: _Lane, state: str) -> None:
        """Publish a connector's state: metrics, and the store's status for ``node status``.
        Down shows in the metrics even when the store is what failed; up only once the
        status says so too."""
        up = state == "up"
        if not up:
            self.metrics.connector_up.set(0.0, lane.target.name)
        await self.store.set_status(f"connector.{lane.target.name}.state", state)
        if up:
            self.metrics.connector_up.set(1.0, lane.target.name)

    async def _prune_only(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(ExchangeError):
                await self._maybe_prune()
            await self._sleep(self._stopping, PRUNE_EVERY_S)

    @staticmethod
    async def _sleep(event: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)

    async def _maybe_prune(self) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = now
        bound = min((lane.cursor for lane in self.lanes), default=EVERYTHING)
        if bound > 0:
            await self.store.prune_connector_events(bound)

    async def deliver_page(self, lane: _Lane) -> int:
        """Hand the next page of events after ``lane``'s cursor to its connector, then move
        the cursor past those handled (with their DISCLOSURE entry). The number of events
        handled; ConnectorDown (after saving the progress before it) when the connector
        raised."""
        events = await self.store.connector_events(lane.cursor, PAGE)
        delivered: list[str] = []
        withheld: list[str] = []
        last = lane.cursor
        failure: tuple[ConnectorEvent, Exception] | None = None
        for event in events:
            try:
                if await self._hand_over(lane.target, event, withheld):
                    delivered.append(str(event.message_id))
            except RecordRejected as exc:
                await self._rejected(lane.target, event, exc)
            except Exception as exc:  # a plugin's failure: retried, never fatal, never skipped
                failure = (event, exc)
                break
            last = event.seq
        if last > lane.cursor:
            await self._advance(lane, last, delivered)
            for reason in withheld:  # counted once the cursor is past them
                self.metrics.withheld.inc(1, (lane.target.name, reason))
        if failure is not None:
            failed, error = failure
            raise ConnectorDown(
                f"{failed.kind.value} {failed.message_id} failed: {type(error).__name__}: {error}"
            )
        return len(events)

    async def _hand_over(
        self, target: Outbound, event: ConnectorEvent, withheld: list[str]
    ) -> bool:
        """Deliver or retract one event; True when a delivery was confirmed (to audit). The
        reason of a delivery the onward-sharing rules withhold is appended to ``withheld``."""
        if event.kind is EventKind.RETRACT:
            if self._kind_for(event.topic, target) is not None:
                await bounded(
                    target.connector.retract(event.message_id, target.context),
                    target.timeout_s,
                    f"retract of {event.message_id}",
                )
            return False
        record = event.record
        if record is None or record.state is not RecordState.ACTIVE:
            return False  # purged, expired or withdrawn before its turn
        if (
            self._kind_for(record.topic, target) is None  # not one of this connector's topics
            or record.message_type == MessageType.RETRACTION.value  # told through retract()
        ):
            return False
        reason = self.withheld(record, target)
        if reason is not None:
            withheld.append(reason)
            return False
        return bool(
            await bounded(
                target.connector.deliver(shared(record), target.context),
                target.timeout_s,
                f"deliver of {record.message_id}",
            )
        )

    def _kind_for(self, topic: str, target: Outbound) -> TopicKind | None:
        kind = topic_kind(topic, self.prefix)
        return kind if kind is not None and kind in target.topics else None

    def withheld(self, record: StoredRecord, target: Outbound) -> str | None:
        """Why the onward-sharing rules keep ``record`` from ``target`` (None: they do not)."""
        kind = topic_kind(record.topic, self.prefix)
        if kind is None:
            return "unknown_topic"
        rules = self.rules.for_kind(kind)
        return onward_withheld(
            handling_code=record.handling_code,
            tlp=record.tlp,
            max_code=rules.onward_sharing_max_handling_code,
            max_tlp=rules.onward_sharing_max_tlp,
            connector_allows=target.allowed_tlp,
        )

    async def backfill(self, records: Sequence[StoredRecord], lane: int = 0) -> tuple[int, int]:
        """Hand ``records`` (the store's history) to connector ``lane`` under the same rules
        as live deliveries, auditing each page it confirms as one DISCLOSURE; the counts of
        records delivered and withheld. The cursor is not moved. Raises what the connector
        raises (the progress before it is audited)."""
        target = self.lanes[lane].target
        delivered_total = withheld_total = 0
        for start in range(0, len(records), PAGE):
            delivered: list[str] = []
            withheld: list[str] = []
            try:
                for record in records[start : start + PAGE]:
                    event = ConnectorEvent(
                        0, EventKind.DELIVER, record.message_id, record.topic, record
                    )
                    if await self._hand_over(target, event, withheld):
                        delivered.append(str(record.message_id))
            finally:
                if delivered:
                    await self.store.append_audit([self._disclosure(target.name, delivered)])
                    self.metrics.disclosed.inc(len(delivered), target.name)
            delivered_total += len(delivered)
            withheld_total += len(withheld)
        return delivered_total, withheld_total

    def _disclosure(self, name: str, delivered: list[str]) -> AuditEvent:
        return AuditEvent(
            at=self.clock(),
            action=AuditAction.DISCLOSURE,
            actor=self.actor,
            justification="onward sharing allowed by the records' handling codes",
            recipients=(f"connector:{name}",),
            details={"message_ids": delivered},
        )

    async def _rejected(self, target: Outbound, event: ConnectorEvent, exc: RecordRejected) -> None:
        at = self.clock()
        self.log.error(
            "connector rejected a record for good; moving on",
            connector=target.name,
            kind=event.kind.value,
            message_id=str(event.message_id),
            reason=exc.reason,
        )
        await self.store.set_status(
            f"connector.{target.name}.rejected",
            f"{at.isoformat()} {event.kind.value} {event.message_id}: {exc.reason}",
        )

    async def _advance(self, lane: _Lane, last: int, delivered: list[str]) -> None:
        at = self.clock()
        audit = [self._disclosure(lane.target.name, delivered)] if delivered else []
        await self.store.advance_cursor(lane.target.name, last, at, audit)
        lane.cursor = last
        if delivered:  # counted once audited
            self.metrics.disclosed.inc(len(delivered), lane.target.name)
