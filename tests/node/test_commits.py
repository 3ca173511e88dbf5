"""CommitSignal: every waiter hears every commit; none can swallow one meant for another."""

from __future__ import annotations

import asyncio

from nodes.commits import CommitSignal


async def test_one_commit_wakes_every_waiter() -> None:
    """Two waiters on the same count are both woken by a single commit."""
    signal = CommitSignal()
    seen = signal.count
    waiters = [asyncio.create_task(signal.wait_after(seen, 30)) for _ in "ab"]
    await asyncio.sleep(0)  # one turn of the loop: both tasks reach their wait
    assert len(signal._waiters) == 2
    signal.notify()
    assert await asyncio.gather(*waiters) == [True, True]


async def test_a_commit_during_the_work_is_not_lost() -> None:
    """A commit between noting the count and waiting makes the wait return at once."""
    signal = CommitSignal()
    seen = signal.count
    signal.notify()  # came while the waiter was busy
    assert await signal.wait_after(seen, 30) is True


async def test_without_a_commit_the_wait_ends_at_its_timeout() -> None:
    """No commit: the wait says so after its timeout and leaves no waiter behind."""
    signal = CommitSignal()
    assert await signal.wait_after(signal.count, 0.01) is False
    assert signal._waiters == set()
