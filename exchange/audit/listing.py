"""The violations an audit replay lists, bounded: the first by place, the rest counted."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from exchange.audit.checks import Violation


def _place(v: Violation) -> Any:
    return v.sort_key()


class Listing:
    """The violations a replay lists: the first ``limit`` by place (``Violation.sort_key``);
    the rest are counted by kind in ``unlisted``. It holds at most twice ``limit`` at a
    time, so a member that makes a violation of every record it sends (a sequence number
    skipped each time, a fork at every sequence) cannot grow the auditor's memory with
    them, as a flood of refused records cannot (``ChainChecker.add``)."""

    def __init__(self, limit: int, unlisted: Counter[str]) -> None:
        self.limit = max(0, limit)
        self.unlisted = unlisted
        self._items: list[Violation] = []

    def append(self, v: Violation) -> None:
        self._items.append(v)
        if len(self._items) >= 2 * self.limit + 1:
            self._trim()

    def extend(self, violations: Iterable[Violation]) -> None:
        for v in violations:
            self.append(v)

    def listed(self) -> list[Violation]:
        """The first ``limit`` by place, sorted."""
        self._trim()
        return self._items

    def _trim(self) -> None:
        self._items.sort(key=_place)
        for v in self._items[self.limit :]:
            self.unlisted[v.kind] += 1
        del self._items[self.limit :]
