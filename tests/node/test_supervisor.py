"""The supervisor restarts failing loops with the retry policy, reports the ones down too
long, and gives up on fatal (configuration) errors. Time is a fake clock: nothing sleeps."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

from exchange.errors import ExchangeError, Reason, TransientError
from nodes.metrics import Metrics
from nodes.retry import RetryPolicy
from nodes.supervisor import Supervisor, TaskState

START = datetime(2026, 11, 30, tzinfo=UTC)


class FakeTime:
    """A clock that only moves when the supervisor "sleeps"; it records every pause."""

    def __init__(self) -> None:
        self.now = START
        self.pauses: list[float] = []

    def clock(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += timedelta(seconds=seconds)
        await asyncio.sleep(0)


def supervisor(time: FakeTime, metrics: Metrics, **kwargs: float) -> Supervisor:
    return Supervisor(
        node="FR",
        policy=RetryPolicy(0.5, 30.0),
        unhealthy_after_s=kwargs.get("unhealthy_after_s", 60.0),
        metrics=metrics,
        clock=time.clock,
        sleep=time.sleep,
        rng=random.Random(3),
    )


async def test_a_loop_failing_ten_thousand_times_is_restarted_within_the_cap() -> None:
    """A loop that raises 10,000 times in a row is restarted each time after a jittered
    delay never above the cap (no overflow), counted in the metrics, then runs to its end."""
    time, metrics = FakeTime(), Metrics()
    sup = supervisor(time, metrics)
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls <= 10_000:
            raise RuntimeError(f"bug number {calls}")

    await asyncio.wait_for(sup.spawn("retention", flaky), 60)
    assert calls == 10_001
    assert len(time.pauses) == 10_000
    assert all(0.0 <= p <= 30.0 for p in time.pauses)
    assert min(time.pauses[100:]) < 3.0
    assert max(time.pauses[100:]) > 27.0
    loop = sup.loops["retention"]
    assert (loop.state, loop.restarts) == (TaskState.STOPPED, 10_000)
    assert metrics.task_restarts.value("retention") == 10_000
    assert metrics.task_state.value(("retention", "stopped")) == 1
    assert metrics.task_up.value("retention") == 0


async def test_health_names_a_loop_down_longer_than_the_threshold() -> None:
    """A loop crashing again right after every restart is reported once it has been down
    longer than unhealthy_after_s, and no longer once a restart has lasted long enough."""
    time, metrics = FakeTime(), Metrics()
    sup = supervisor(time, metrics, unhealthy_after_s=60.0)
    healthy = asyncio.Event()
    failures = 0

    async def consumer() -> None:
        nonlocal failures
        if time.now - START < timedelta(seconds=120):
            failures += 1
            raise TransientError("broker gone")
        healthy.set()
        await asyncio.Event().wait()  # runs until cancelled

    task = sup.spawn("consumer", consumer)
    await asyncio.wait_for(healthy.wait(), 10)
    loop = sup.loops["consumer"]
    assert loop.state is TaskState.RUNNING
    assert loop.down_since is not None
    assert loop.started_at is not None
    (problem,) = sup.problems(loop.started_at)  # just restarted: still counted as down
    assert problem.startswith("task consumer down for ")
    assert "broker gone" in problem
    assert f"({failures} restarts)" in problem
    assert sup.problems(START + timedelta(seconds=59)) == []  # not yet past the threshold
    assert sup.problems(loop.started_at + timedelta(seconds=30)) == []  # stable again
    assert metrics.task_up.value("consumer") == 1
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert loop.state is TaskState.STOPPED


async def test_a_configuration_error_is_fatal_and_not_restarted() -> None:
    """A BAD_CONFIG error (wrong password, missing ACL) ends the loop for good, sets
    ``failed`` and is named by the health check; other errors are restarted."""
    time, metrics = FakeTime(), Metrics()
    sup = supervisor(time, metrics)

    async def publisher() -> None:
        raise ExchangeError(Reason.BAD_CONFIG, "SaslAuthenticationFailed: wrong password")

    await asyncio.wait_for(sup.spawn("publisher", publisher), 10)
    assert sup.failed.is_set()
    assert sup.fatal is sup.loops["publisher"]
    assert sup.loops["publisher"].state is TaskState.FAILED
    assert time.pauses == []
    (problem,) = sup.problems(time.now)
    assert "task publisher failed" in problem
    assert "wrong password" in problem
    assert metrics.task_state.value(("publisher", "failed")) == 1


async def test_no_restart_after_close() -> None:
    """Once the supervisor is closed (the node stops), a failing loop stays stopped."""
    time, metrics = FakeTime(), Metrics()
    sup = supervisor(time, metrics)
    sup.close()

    async def broken() -> None:
        raise RuntimeError("during shutdown")

    await asyncio.wait_for(sup.spawn("inbound:x", broken), 10)
    assert sup.loops["inbound:x"].state is TaskState.STOPPED
    assert time.pauses == []
    assert not sup.failed.is_set()
