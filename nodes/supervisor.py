"""Runs the node's long-lived loops and restarts the ones that fail.

Every loop of a node (publisher, consumer, each outbound connector's delivery loop, each
inbound connector, the retention purge) runs as :meth:`Supervisor.spawn` ``(name, work)``:
``work()`` is awaited; when it raises, it is called again after a delay of the node's retry
policy (:mod:`nodes.retry`: capped exponential backoff, full jitter). The loops retry
expected failures (Kafka away, a connector down) themselves; the supervisor is what keeps
a loop alive through the unexpected ones (a bug, an error type nobody caught).

Which failures are **fatal** (:func:`is_fatal`): an :class:`~exchange.errors.ExchangeError`
with reason ``BAD_CONFIG``: a bad setting, a wrong password or a missing ACL
(``exchange.bus.translate`` turns authentication and authorisation failures into it).
Waiting does not fix those, so the loop is not restarted: its state becomes ``failed``,
:attr:`Supervisor.failed` is set, and ``exchange node run`` stops the node and exits 1.
Everything else (transient errors, other exchange errors, any other exception) is restarted.

A loop is **down** from the failure until a restarted run has lasted ``stable_s`` (the
policy's ``max_s`` by default) without failing again; then its backoff starts over.
:meth:`Supervisor.problems` names every loop down for longer than ``unhealthy_after_s``, and
every failed one (``/healthz`` answers 503 with them). The metrics show each loop's state
(``exchange_task_state``, ``exchange_task_up``) and restarts (``exchange_task_restarts_total``).
Time is judged with the clock handed in; the pause before a restart uses ``sleep`` (a test
passes one that only advances its fake clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from exchange.errors import ExchangeError, Reason
from nodes.clock import Clock, utc_now
from nodes.logging import get_logger
from nodes.metrics import Metrics
from nodes.retry import Backoff, RetryPolicy

Work = Callable[[], Awaitable[None]]
Sleep = Callable[[float], Awaitable[None]]


class TaskState(StrEnum):
    RUNNING = "running"
    RESTARTING = "restarting"  # failed; waiting out the backoff before the next run
    STOPPED = "stopped"  # returned, or stopped with the node
    FAILED = "failed"  # a fatal error: not restarted


def is_fatal(exc: BaseException) -> bool:
    """Whether a loop that raised ``exc`` must not be restarted (see the module's doc)."""
    return isinstance(exc, ExchangeError) and exc.reason is Reason.BAD_CONFIG


@dataclass
class Supervised:
    """One supervised loop and what the supervisor knows of it."""

    name: str
    work: Work
    state: TaskState = TaskState.RUNNING
    restarts: int = 0
    started_at: datetime | None = None
    down_since: datetime | None = None
    last_error: str | None = None
    task: asyncio.Task[None] | None = None


class Supervisor:
    """Spawns, restarts and reports the node's loops; :meth:`close` ends the restarts."""

    def __init__(
        self,
        *,
        node: str,
        policy: RetryPolicy,
        unhealthy_after_s: float,
        metrics: Metrics,
        clock: Clock = utc_now,
        sleep: Sleep | None = None,
        stable_s: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.node = node
        self.policy = policy
        self.unhealthy_after = timedelta(seconds=unhealthy_after_s)
        self.stable = timedelta(seconds=policy.max_s if stable_s is None else stable_s)
        self.metrics = metrics
        self.clock = clock
        self._sleep = sleep
        self._rng = rng
        self.log = get_logger(node=node, component="supervisor")
        self.loops: dict[str, Supervised] = {}
        #: Set when a loop failed fatally (see :func:`is_fatal`); ``fatal`` names it.
        self.failed = asyncio.Event()
        self.fatal: Supervised | None = None
        self._closing = asyncio.Event()

    def spawn(self, name: str, work: Work) -> asyncio.Task[None]:
        """Run ``work()`` under supervision as the loop ``name``; the supervising task."""
        if name in self.loops and self.loops[name].task is not None:
            raise ValueError(f"a loop named {name!r} is already supervised")
        loop = Supervised(name, work)
        self.loops[name] = loop
        loop.task = asyncio.create_task(self._supervise(loop), name=f"{self.node}:{name}")
        return loop.task

    def tasks(self, *names: str) -> list[asyncio.Task[None]]:
        """The supervising tasks of ``names`` (every loop when none is given)."""
        chosen = names or tuple(self.loops)
        return [t for n in chosen if (t := self.loops[n].task) is not None]

    def close(self) -> None:
        """No more restarts: a loop failing from now on stays stopped; pending restarts end."""
        self._closing.set()

    # --- reporting -----------------------------------------------------------------------
    def down_for(self, loop: Supervised, now: datetime) -> timedelta | None:
        """How long ``loop`` has been down at ``now`` (None when it is up or stopped)."""
        if loop.down_since is None or loop.state in (TaskState.STOPPED, TaskState.FAILED):
            return None
        if loop.state is TaskState.RUNNING and self._stable(loop, now):
            return None
        return now - loop.down_since

    def problems(self, now: datetime) -> list[str]:
        """The loops that failed fatally or are down for longer than ``unhealthy_after_s``."""
        out = []
        for loop in self.loops.values():
            if loop.state is TaskState.FAILED:
                out.append(f"task {loop.name} failed and is not restarted: {loop.last_error}")
                continue
            down = self.down_for(loop, now)
            if down is not None and down > self.unhealthy_after:
                out.append(
                    f"task {loop.name} down for {down.total_seconds():.0f} s"
                    f" ({loop.restarts} restarts): {loop.last_error}"
                )
        return out

    def _stable(self, loop: Supervised, now: datetime) -> bool:
        return loop.started_at is not None and now - loop.started_at >= self.stable

    def _set_state(self, loop: Supervised, state: TaskState) -> None:
        loop.state = state
        for each in TaskState:
            self.metrics.task_state.set(1.0 if each is state else 0.0, (loop.name, each.value))
        self.metrics.task_up.set(1.0 if state is TaskState.RUNNING else 0.0, loop.name)

    # --- the supervising task ------------------------------------------------------------
    async def _supervise(self, loop: Supervised) -> None:
        backoff = Backoff.of(self.policy, rng=self._rng)
        self.metrics.task_restarts.inc(0, loop.name)  # the series exists from the start
        while True:
            loop.started_at = self.clock()
            self._set_state(loop, TaskState.RUNNING)
            try:
                await loop.work()
            except asyncio.CancelledError:
                self._set_state(loop, TaskState.STOPPED)
                raise
            except Exception as exc:
                if not await self._failed(loop, exc, backoff):
                    return
                continue
            self._set_state(loop, TaskState.STOPPED)  # returned: asked to stop
            return

    async def _failed(self, loop: Supervised, exc: Exception, backoff: Backoff) -> bool:
        """Record a failure of ``loop``; True after the pause when it is to run again."""
        now = self.clock()
        loop.last_error = f"{type(exc).__name__}: {exc}"
        if is_fatal(exc):
            self.log.error("task failed fatally; not restarted", task=loop.name, error=str(exc))
            self._set_state(loop, TaskState.FAILED)
            if self.fatal is None:
                self.fatal = loop
            self.failed.set()
            return False
        if self._closing.is_set():
            self.log.warning("task failed while stopping", task=loop.name, error=loop.last_error)
            self._set_state(loop, TaskState.STOPPED)
            return False
        if loop.down_since is None or self._stable(loop, now):
            loop.down_since = now  # up long enough since the last failure: a new outage
            backoff.reset()
        delay = backoff.next_delay()
        loop.restarts += 1
        self.metrics.task_restarts.inc(1, loop.name)
        self._set_state(loop, TaskState.RESTARTING)
        log: Any = self.log.exception if backoff.failures == 1 else self.log.error
        log(
            "task failed; restarting",
            task=loop.name,
            error=loop.last_error,
            restarts=loop.restarts,
            delay_s=round(delay, 3),
        )
        await self._pause(delay)
        if self._closing.is_set():
            self._set_state(loop, TaskState.STOPPED)
            return False
        return True

    async def _pause(self, seconds: float) -> None:
        if self._sleep is not None:
            await self._sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)
