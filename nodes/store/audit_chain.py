"""The audit log's hash chain, computed the same way by every backend.

Entry ``n`` has ``hash_n = SHA-256(previous_hash || canonical_json)`` where
``previous_hash`` is ``hash_{n-1}`` (32 zero bytes for the first entry) and
``canonical_json`` is the UTF-8 JSON array
``[seq, at, action, actor, justification, recipients, subject, details]`` with
``at`` in ISO 8601 UTC with microseconds (``2026-11-28T19:55:49.123456+00:00``),
object keys sorted, no spaces, non-ASCII kept as UTF-8. Editing any field of any
entry, or removing or reordering entries, breaks the chain from that entry on;
removing entries at the tail is only visible against a copy of the last hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nodes.store.base import AuditEntry, AuditEvent, StoreError

GENESIS = bytes(32)


def iso_utc(at: datetime) -> str:
    """``at`` as ISO 8601 in UTC with microseconds; refuses a naive datetime."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise StoreError("audit.at: must be a timezone-aware datetime")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical_details(details: Mapping[str, Any]) -> str:
    """The details mapping as canonical JSON text (this exact text is stored)."""
    try:
        return _CANONICAL.encode(details)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"audit.details: not JSON-serialisable ({exc})") from exc


def entry_hash(
    previous_hash: bytes, seq: int, event: AuditEvent, details_json: str | None = None
) -> bytes:
    """The hash of entry ``seq`` holding ``event`` after ``previous_hash``. ``details_json``:
    the event's canonical details when already computed."""
    if details_json is None:
        details_json = canonical_details(event.details)
    head = [
        seq,
        iso_utc(event.at),
        str(event.action),
        event.actor,
        event.justification,
        list(event.recipients),
        event.subject,
    ]
    try:
        text = f"{_CANONICAL.encode(head)[:-1]},{details_json}]"
    except (TypeError, ValueError) as exc:
        raise StoreError(f"audit: not JSON-serialisable ({exc})") from exc
    return hashlib.sha256(previous_hash + text.encode("utf-8")).digest()


@dataclass(frozen=True, slots=True)
class Chained:
    """An event with its place in the chain, ready to be inserted."""

    seq: int
    event: AuditEvent
    details_json: str
    previous_hash: bytes
    hash: bytes


def extend(last_seq: int, last_hash: bytes, events: Iterable[AuditEvent]) -> list[Chained]:
    """Chain ``events`` after the entry (``last_seq``, ``last_hash``); seq 0 = empty log."""
    out: list[Chained] = []
    seq, previous = last_seq, last_hash
    for event in events:
        seq += 1
        details_json = canonical_details(event.details)
        digest = entry_hash(previous, seq, event, details_json)
        out.append(Chained(seq, event, details_json, previous, digest))
        previous = digest
    return out


class ChainVerifier:
    """Checks entries fed in seq order, page after page, from the first entry on."""

    def __init__(self) -> None:
        self.next_seq = 1
        self.previous = GENESIS

    def feed(self, entries: Iterable[AuditEntry]) -> int | None:
        """The seq of the first entry that does not chain, or None when all of them do."""
        for entry in entries:
            if entry.seq != self.next_seq or entry.previous_hash != self.previous:
                return entry.seq
            if entry_hash(self.previous, entry.seq, entry.event) != entry.hash:
                return entry.seq
            self.next_seq, self.previous = entry.seq + 1, entry.hash
        return None
