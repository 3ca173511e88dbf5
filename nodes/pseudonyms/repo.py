"""The pseudonym tables of a node's store (migration 0007), for SQLite and PostgreSQL.

A small repository on the store's own connection (the store's ``_call``/``_write`` on
SQLite, ``_read``/``_write`` on PostgreSQL), so an answer is ONE transaction: the request
row, the answer's outbox item and the audit entries commit together or not at all (a
crash never answers twice, never loses an answer).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from exchange.pseudonyms.csvfile import IndexEntry
from exchange.pseudonyms.keys import PseudonymKey, blind
from nodes.store import codecs as c
from nodes.store.base import AuditEvent, OutboxItem, Store, StoreError

__all__ = ["Incoming", "IndexHit", "PseudonymRepo", "Request", "repo_for"]


@dataclass(frozen=True, slots=True)
class IndexHit:
    index_id: int
    platform: str
    case_reference: str
    contact_unit: str
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class Incoming:
    """A stored PseudonymQuery this node has not handled yet."""

    sender: str
    message_id: UUID
    received_at: datetime
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Request:
    """A received query or request for details and what became of it."""

    sender: str
    message_id: UUID
    query_id: str
    kind: str  # query | details
    received_at: datetime
    status: str  # hit | no_hit | refused | pending | approved | denied
    reason: str | None
    facts: Mapping[str, Any]
    index_id: int | None = None
    decided_at: datetime | None = None
    actor: str | None = None
    justification: str | None = None


class PseudonymRepo(Protocol):
    async def import_entries(
        self, entries: Sequence[IndexEntry], keys: Sequence[PseudonymKey]
    ) -> int: ...
    async def ensure_blinds(self, keys: Sequence[PseudonymKey]) -> int: ...
    async def count_entries(self) -> int: ...
    async def lookup(self, key_id: str, blinded: bytes) -> IndexHit | None: ...
    async def entry_for_case(self, case_reference: str) -> IndexHit | None: ...
    async def hit_case(self, sender: str, query_id: str) -> str | None:
        """The case reference this node answered ``sender``'s query ``query_id`` with (HIT)."""
        ...

    async def new_queries(self, topic: str, me: str, limit: int) -> list[Incoming]: ...
    async def recent_count(self, sender: str, since: datetime) -> int: ...
    async def settle(
        self,
        request: Request,
        items: Sequence[OutboxItem],
        audit: Sequence[AuditEvent],
        *,
        decide_pending: bool = False,
    ) -> list[int]: ...
    async def requests(self, status: str | None = None, limit: int = 100) -> list[Request]: ...
    async def pending_before(self, before: datetime) -> int: ...
    async def responses(
        self, topic: str, query_id: str
    ) -> list[tuple[str, datetime, Mapping[str, Any]]]: ...
    async def send(self, items: Sequence[OutboxItem], audit: Sequence[AuditEvent]) -> list[int]: ...


def repo_for(store: Store) -> PseudonymRepo:
    """The repository on ``store``'s connection (an opened SQLite or PostgreSQL store)."""
    from nodes.store.sqlite import SqliteStore

    if isinstance(store, SqliteStore):
        from nodes.pseudonyms.repo_sqlite import SqlitePseudonyms

        return SqlitePseudonyms(store)
    from nodes.store.postgres import PostgresStore

    if isinstance(store, PostgresStore):
        from nodes.pseudonyms.repo_postgres import PostgresPseudonyms

        return PostgresPseudonyms(store)
    raise StoreError(f"no pseudonym tables for a {type(store).__name__}")


def blinds_for(
    entries: Sequence[tuple[int, str, str]], keys: Sequence[PseudonymKey]
) -> list[tuple[str, bytes, int]]:
    """(key id, blind, index id) for each (index id, platform, handle) under each key."""
    return [(k.key_id, blind(k.secret, p, h), i) for k in keys for i, p, h in entries]


def outbox_row(i: OutboxItem) -> tuple[Any, ...]:
    return (
        i.topic,
        i.key,
        i.message_type,
        c.dump_json(i.payload, "outbox.payload"),
        c.dump_json(i.handling, "outbox.handling"),
        c.dump_names(i.recipients, "outbox.recipients"),
        i.created_at,
        i.message_id,
        i.payload_avro,
    )


def dump_facts(facts: Mapping[str, Any]) -> str:
    return json.dumps(facts, sort_keys=True, default=str)
