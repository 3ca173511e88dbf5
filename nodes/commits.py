"""Telling every waiter about the consumer's commits, without one waiter hiding one from another.

One shared ``asyncio.Event`` set on each commit needs every waiter to clear it, and a
waiter that clears it swallows the commit another was waiting for (then only a timeout
wakes that one). Here each commit bumps a counter and sets each waiter's own event: a
waiter notes :attr:`CommitSignal.count`, does its work, then :meth:`CommitSignal.wait_after`
that count, which returns at once when a commit came meanwhile.
"""

from __future__ import annotations

import asyncio


class CommitSignal:
    """A counter of commits that waiters can wait on (one event loop)."""

    def __init__(self) -> None:
        self.count = 0
        self._waiters: set[asyncio.Event] = set()

    def notify(self) -> None:
        """A commit happened: wake every waiter."""
        self.count += 1
        for event in self._waiters:
            event.set()

    async def wait_after(self, seen: int, timeout_s: float) -> bool:
        """Wait until a commit after the one numbered ``seen`` (a past :attr:`count`), or
        ``timeout_s``; whether one came."""
        if self.count > seen:
            return True
        event = asyncio.Event()
        self._waiters.add(event)
        try:
            async with asyncio.timeout(timeout_s):
                await event.wait()
        except TimeoutError:
            return self.count > seen
        finally:
            self._waiters.discard(event)
        return True
