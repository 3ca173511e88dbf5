"""The store interface every backend implements (SQLite by default, PostgreSQL for production).

The consumer writes each batch of records, quarantine entries, retractions,
audit events and the consumed offsets in ONE transaction (:meth:`Store.commit_batch`),
so a crash never stores a record without its offset or the other way round.
The publisher's outbox lives here too, so an alert exists in the store before
it is ever sent.

All times are timezone-aware UTC datetimes. Backends raise
``exchange.errors.TransientError`` for a store that is unavailable for now, and
``StoreError`` for anything else; no driver exception leaks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol
from uuid import UUID

from exchange.errors import ExchangeError, Reason
from exchange.quickinit import quick_init

#: The identity of a message (wire v2): (sender node id, message id).
MessageKey = tuple[str, UUID]

TopicPartition = tuple[str, int]


class StoreError(ExchangeError):
    """A store operation failed for a reason other than unavailability."""

    def __init__(self, detail: str) -> None:
        super().__init__(Reason.UNAVAILABLE, detail)


class OutboxStatus(StrEnum):
    PENDING = "pending"  # accepted, not yet signed
    SIGNED = "signed"  # sequence assigned and signed; bytes fixed; not yet acknowledged by Kafka
    SENT = "sent"  # acknowledged by Kafka (acks=all)


class RecordState(StrEnum):
    ACTIVE = "active"
    WITHDRAWN = "withdrawn"  # retracted by its sender; kept, marked


@quick_init
@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A verified, decoded record that passed the rules, as stored (after minimisation)."""

    message_id: UUID
    topic: str
    partition: int
    offset: int
    sender: str
    message_type: str
    key: str
    sequence: int
    created_at: datetime
    received_at: datetime
    category: str | None  # offence category, when the payload has one
    tlp: str
    handling_code: str
    recipients: tuple[str, ...]
    # JSON-able dict (fields dropped by rules already removed); datetimes, UUIDs, enums and
    # Decimals are stored as their ISO/str form and read back as strings
    payload: Mapping[str, Any]
    envelope_hash: bytes
    expires_at: datetime | None  # retention; None = keep
    state: RecordState = RecordState.ACTIVE  # WITHDRAWN once its sender retracts it


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A record retracted (``withdrawn`` or ``purged``) or erased (``expired``): its id is
    remembered so that a copy published again is never stored or delivered."""

    sender: str
    message_id: UUID
    at: datetime
    reason: str


@quick_init
@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    topic: str
    partition: int
    offset: int
    reason: str  # exchange.errors.Reason value
    detail: str
    raw: bytes  # the first 4 KiB of the record value (kept for review; never treated as valid)
    received_at: datetime
    message_id: UUID | None = None
    sender: str | None = None
    size: int | None = None  # of the whole value; None on entries from before schema v5
    sha256: bytes | None = None  # of the whole value


@dataclass(frozen=True, slots=True)
class RetractionOrder:
    """Apply a verified Retraction: mark the retracted record withdrawn, or purge it."""

    retracted_message_id: UUID
    by_sender: str  # only the original sender may retract; the store checks sender matches
    purge: bool
    retraction_message_id: UUID
    at: datetime
    # who applies it, named in the ERASURE audit entry of a purge; None: "sender:<by_sender>"
    actor: str | None = None


class AuditAction(StrEnum):
    COLLECTION = "collection"
    CONSULTATION = "consultation"
    DISCLOSURE = "disclosure"
    ERASURE = "erasure"


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One Article 25 LED log entry. The store adds sequence, previous hash and hash."""

    at: datetime
    action: AuditAction
    actor: str  # person or system that acted ("node:FR/consumer", "cli:alice")
    justification: str
    recipients: tuple[str, ...] = ()
    subject: str | None = None  # usually a message id
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    event: AuditEvent
    previous_hash: bytes
    hash: bytes


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    topic: str
    key: str
    message_type: str
    payload: Mapping[str, Any]  # the payload as accepted (JSON-able)
    handling: Mapping[str, Any]
    recipients: tuple[str, ...]
    created_at: datetime
    status: OutboxStatus
    message_id: UUID | None = None
    sequence: int | None = None
    value: bytes | None = None  # the signed SignedEnvelope bytes once SIGNED
    envelope_hash: bytes | None = None
    attempts: int = 0
    last_error: str | None = None
    # The payload's Avro single-object encoding (exchange.seal.encode_payload), made when the
    # item was accepted, so the publisher signs it without validating the payload again. None
    # for items enqueued before schema version 3 (sealed from ``payload``). When it is set,
    # :meth:`Store.pending` does not decode the JSON ``payload`` and returns it as ``{}``.
    payload_avro: bytes | None = None


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The publisher's own chain on a topic: last sequence and hash signed."""

    topic: str
    sequence: int
    envelope_hash: bytes | None


class EventKind(StrEnum):
    DELIVER = "deliver"  # a record was stored: hand it to the connectors the rules allow
    RETRACT = "retract"  # a stored record was withdrawn or purged by its sender


@dataclass(frozen=True, slots=True)
class ConnectorEvent:
    """One entry of the durable queue the outbound connectors are fed from (see
    :meth:`Store.connector_events`)."""

    seq: int  # increasing, never reused; commit order
    kind: EventKind
    message_id: UUID  # the stored record, or the record a retraction withdrew
    topic: str  # that record's topic
    # DELIVER: the record as stored now (it may be WITHDRAWN since); None once it was purged
    # or expired. RETRACT: always None.
    record: StoredRecord | None = None


@dataclass(frozen=True, slots=True)
class BatchResult:
    stored: int
    # message ids already stored (or twice in the batch): the caller quarantines them as `replayed`
    duplicates: tuple[UUID, ...]
    retractions_applied: int


class Store(Protocol):
    """What the node needs of a store. One instance per node; safe for one asyncio task at a time
    per method family (the consumer, the publisher and the CLI each hold their own instance)."""

    async def open(self) -> None:
        """Connect and apply pending migrations (versioned, idempotent)."""

    async def close(self) -> None: ...

    async def schema_version(self) -> int: ...

    # --- consumer --------------------------------------------------------
    async def load_offsets(self, group: str) -> dict[TopicPartition, int]:
        """Next offset to read per (topic, partition) for this consumer group."""

    async def commit_batch(
        self,
        group: str,
        *,
        records: Sequence[StoredRecord],
        quarantined: Sequence[QuarantineEntry],
        retractions: Sequence[RetractionOrder],
        audit: Sequence[AuditEvent],
        offsets: Mapping[TopicPartition, int],
    ) -> BatchResult:
        """One transaction: insert records (a message id already present, or met earlier in
        the same batch, is NOT inserted and is reported in ``duplicates``, in batch order),
        quarantine entries, apply retractions (after this batch's records, so a retraction may
        follow its record in one batch; only when ``by_sender`` is the record's sender; purge
        deletes and appends an ERASURE entry, otherwise the record turns WITHDRAWN; the count of
        records changed is ``retractions_applied``), append the audit events (then the
        erasures) to the hash chain, upsert offsets (next offset to read), and append to the
        connector queue one DELIVER event per record inserted (batch order) then one RETRACT
        event per record a retraction changed. Any failure rolls everything back."""

    async def seen_message_ids(self, ids: Sequence[MessageKey]) -> set[MessageKey]:
        """Which (sender, message id) of ``ids`` are already stored (records): replay detection
        before a batch. Wire v2: a message is (sender, message id); one id from two senders
        is two messages."""

    # --- queries ---------------------------------------------------------
    async def list_records(
        self,
        *,
        topic: str | None = None,
        sender: str | None = None,
        include_withdrawn: bool = False,
        limit: int = 100,
    ) -> list[StoredRecord]:
        """Newest first (by message id, a UUIDv7); WITHDRAWN records only on request."""

    async def get_record(self, message_id: UUID) -> StoredRecord | None: ...

    async def page_records(
        self,
        topics: Sequence[str],
        *,
        since: datetime | None = None,
        after: MessageKey | None = None,
        include_withdrawn: bool = False,
        limit: int = 100,
    ) -> list[StoredRecord]:
        """Up to ``limit`` records on ``topics`` received at or after ``since``, oldest first
        by message id (then sender), from just past ``after`` (the (sender, message id) of the
        last record of the previous page): a keyset walk of the message-id index, so memory
        and each page's cost stay bounded by the page. WITHDRAWN records only on request.
        See :mod:`nodes.store.record_pages`."""

    async def count_records(self, topic: str | None = None) -> int:
        """Records stored (ACTIVE and WITHDRAWN), on ``topic`` or all."""

    async def quarantine_counts(self) -> dict[str, int]:
        """Quarantined entries by reason."""

    async def list_quarantine(self, limit: int = 100) -> list[QuarantineEntry]:
        """Newest first."""

    # --- retention -------------------------------------------------------
    async def purge_expired(self, now: datetime, actor: str) -> list[UUID]:
        """Delete records whose expires_at <= now, logging one ERASURE audit event each and
        leaving a tombstone each, in one transaction. Returns the erased message ids. Each
        erased record also gets a RETRACT event on the connector queue (same transaction), so
        every connector that was handed it is told to drop it."""

    async def purge_quarantine(self, before: datetime, now: datetime, actor: str) -> int:
        """Delete quarantine entries received before ``before``; when any, log one ERASURE
        audit event saying how many, of which reasons, in the same transaction. Returns
        how many were deleted."""

    async def reseal(self, items: Sequence[OutboxItem]) -> None:
        """Replace the bytes (``value``, ``envelope_hash``) of SIGNED items signed again with a
        fresh time (a broker outage outlived the receivers' skew), keeping their message id
        and sequence; a chain head at one of their sequences takes the new hash. All or
        none; StoreError naming an item that is not SIGNED or does not keep its id and
        sequence."""

    async def envelope_hash_at(self, topic: str, sequence: int) -> bytes | None:
        """The envelope hash of this node's outbox item at ``sequence`` on ``topic`` (signed
        or sent), or None: the link a re-sealed item's previous hash points to."""

    async def outbox_envelope_hashes(self, hashes: Sequence[bytes]) -> set[bytes]:
        """Which of ``hashes`` are envelope hashes of this node's outbox items (signed or
        sent): the records it reads back from the bus that it wrote itself."""

    async def tombstones(self, limit: int = 100) -> list[Tombstone]:
        """The newest tombstones first: ids of records retracted or erased, never stored
        again (a re-published copy is refused like a replay)."""

    # --- outbox (publisher) -----------------------------------------------
    async def enqueue(self, items: Sequence[OutboxItem]) -> list[int]:
        """Add PENDING items atomically (all or none); returns their ids in order. The items'
        ``id``, ``status``, ``sequence``, ``value`` and ``envelope_hash`` are ignored; a
        ``message_id`` given is kept (it is the id the message will travel under)."""

    async def pending(self, limit: int, *, signed_after: int | None = None) -> list[OutboxItem]:
        """SIGNED items first (to resend their exact bytes), then PENDING, oldest first.

        ``signed_after``: leave out SIGNED items whose id is <= it (the publisher's batch in
        flight, already on its way); PENDING items are all returned whatever their id. Items
        carrying ``payload_avro`` come with ``payload={}`` (the JSON text is not decoded)."""

    async def chain_head(self, topic: str) -> ChainHead | None: ...

    async def mark_signed(self, items: Sequence[OutboxItem], heads: Sequence[ChainHead]) -> None:
        """Store message id, sequence, value, envelope hash and status SIGNED for each item and the
        new chain heads, in one transaction (so a sequence number is never assigned twice).
        StoreError, and nothing changes, when an item is not PENDING, lacks a signing field,
        carries another message id than the one it was enqueued with, reuses a (topic,
        sequence), or a head does not advance past the stored one; the error names the first
        offending item (``outbox[id]``) or head. Backends update the items set-based and
        look for the culprit only when the update did not change every item."""

    async def mark_sent(self, ids: Sequence[int], at: datetime) -> None:
        """SIGNED -> SENT (idempotent for SENT items); StoreError naming the first PENDING or
        unknown id, and nothing changes."""

    async def record_publish_error(self, ids: Sequence[int], error: str) -> None:
        """Count a failed attempt and keep the error text; the status does not change."""

    async def outbox_depth(self) -> int:
        """Items not yet SENT."""

    async def outbox_item(self, outbox_id: int) -> OutboxItem | None:
        """The outbox item ``outbox_id`` (its status: pending, signed, sent), or None: what an
        inbound connector answers about a submission (read only)."""

    # --- outbound connectors: a durable queue and one cursor per connector ----------
    # Delivery is at least once: a connector is handed the events after its cursor, then
    # the cursor moves past them (with the DISCLOSURE audit entries, in one transaction).
    async def open_cursor(self, connector: str, at: datetime) -> int:
        """The seq of the last event ``connector`` was handed. A connector never seen before
        gets a cursor at the current head of the queue (it receives what is stored from now
        on, not the store's history), written at once so a restart resumes from it."""

    async def connector_events(self, after_seq: int, limit: int) -> list[ConnectorEvent]:
        """Queue entries with seq > ``after_seq``, in seq order, at most ``limit``; each
        DELIVER entry carries its record as stored now (None once purged)."""

    async def advance_cursor(
        self, connector: str, last_seq: int, at: datetime, audit: Sequence[AuditEvent] = ()
    ) -> None:
        """Move ``connector``'s cursor to ``last_seq`` and append ``audit`` to the hash chain,
        in one transaction. StoreError, and nothing changes, for a connector without a cursor
        (call :meth:`open_cursor` first) or a cursor that would move backwards."""

    async def prune_connector_events(self, up_to_seq: int) -> int:
        """Delete queue entries with seq <= ``up_to_seq`` (every connector has passed them);
        how many were deleted. Seqs are never reused afterwards."""

    # --- audit log ---------------------------------------------------------
    async def append_audit(self, events: Sequence[AuditEvent]) -> None:
        """Append to the hash chain (nodes.store.audit_chain) in one transaction."""

    async def audit_entries(self, since_seq: int = 0, limit: int = 1000) -> list[AuditEntry]:
        """Entries with seq > ``since_seq``, in seq order."""

    async def verify_audit_chain(self) -> int | None:
        """None when the hash chain is intact, else the seq of the first entry that does not
        match."""

    # --- status ----------------------------------------------------------
    async def set_status(self, key: str, value: str) -> None:
        """Small key/value facts for `node status` (last error, last batch time)."""

    async def get_status(self) -> dict[str, str]: ...


def open_store(url: str) -> Store:
    """A store for ``sqlite:///path/to.db`` or ``postgresql://user@host:port/db``."""
    if url.startswith("sqlite:"):
        from nodes.store.sqlite import SqliteStore

        return SqliteStore(url)
    if url.startswith(("postgresql:", "postgres:")):
        from nodes.store.postgres import PostgresStore

        return PostgresStore(url)
    raise StoreError(f"store url: unsupported scheme in {url!r} (sqlite:/// or postgresql://)")
