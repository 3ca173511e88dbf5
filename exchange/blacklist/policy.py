"""Which entries a joint list exports: a per-list rule, judged at ``now``.

A joint list (``csam``) is the union of the members' lists of that name (``fr.csam``,
``nl.csam``, ...). Its :class:`ListRule` says how many distinct members must list an entry
before it is exported (``min_members``; INTERPOL's practice for its list is 2, the default
here 1) and which owners are accepted for which offence category (``owners``; a category
not named accepts every owner, ``"*"`` names every category). A listing counts only while
unexpired (``expires_at`` after ``now``) and from an accepted owner.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby

from exchange.blacklist.deltas import EntryKey


@dataclass(frozen=True, slots=True)
class ListRule:
    """The export rule of one joint list."""

    min_members: int = 1
    #: category -> owners accepted for it ("*" as category: every category not named)
    owners: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def accepts(self, owner: str, category: str) -> bool:
        allowed = self.owners.get(category, self.owners.get("*"))
        return allowed is None or owner in allowed or "*" in allowed


@dataclass(frozen=True, slots=True)
class Listing:
    """One member's listing of an entry, as the rule sees it (times in Unix microseconds)."""

    key: EntryKey
    owner: str
    category: str
    expires_at_us: int | None


def live(listing: Listing, now_us: int) -> bool:
    return listing.expires_at_us is None or listing.expires_at_us > now_us


def confirmed(
    listings: Iterable[Listing], rule: ListRule, now_us: int
) -> Iterator[tuple[EntryKey, tuple[str, ...]]]:
    """The entries ``rule`` exports, each with the owners that count for it. ``listings``
    must come grouped by key (sorted); streams, so a million entries need no memory."""
    for key, group in groupby(listings, key=lambda x: x.key):
        owners = sorted(
            {g.owner for g in group if live(g, now_us) and rule.accepts(g.owner, g.category)}
        )
        if len(owners) >= max(rule.min_members, 1):
            yield key, tuple(owners)


def rule_from(min_members: int, owners: Mapping[str, Sequence[str]]) -> ListRule:
    return ListRule(min_members, {cat: frozenset(o) for cat, o in owners.items()})
