"""Every trust list a federation published, for the auditor's replay (:class:`TrustHistory`):
each list is in force from its publication time until the next one's. Importable from
:mod:`exchange.trust` too.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import TYPE_CHECKING

from exchange.trust_entries import bad

if TYPE_CHECKING:
    from exchange.trust import TrustList


class TrustHistory:
    """Every trust list published, each in force from its publication time (ms since the epoch)
    until the next one's: the auditor verifies each record against the list in force at its
    append time, so records signed before a rotation still verify after it.

    A record appended before the first publication known is judged by the oldest list.
    """

    __slots__ = ("_lists", "_starts")

    def __init__(self, lists: Sequence[tuple[int, TrustList]]) -> None:
        if not lists:
            raise bad("a trust history needs at least one list")
        ordered = sorted(lists, key=lambda p: (p[1].version, p[0]))
        kept: list[tuple[int, TrustList]] = []
        for start, trust in ordered:
            if kept and trust.version == kept[-1][1].version:
                continue  # the same version published twice: the first publication counts
            if kept and start < kept[-1][0]:
                start = kept[-1][0]  # a higher version published earlier than a lower: later
            kept.append((start, trust))
        self._starts = [s for s, _ in kept]
        self._lists = [t for _, t in kept]

    @property
    def latest(self) -> TrustList:
        """The highest version."""
        return self._lists[-1]

    @property
    def lists(self) -> list[TrustList]:
        """Every version, oldest first."""
        return list(self._lists)

    def at(self, ms: int) -> TrustList:
        """The list in force at ``ms`` (the oldest one before the first publication)."""
        if len(self._lists) == 1:
            return self._lists[0]
        i = bisect.bisect_right(self._starts, ms) - 1
        return self._lists[max(i, 0)]
