"""The connector plugin API: how police systems plug into a node.

A plugin is registered under the entry-point group ``exchange.connectors``; the entry point
names a *factory* ``factory(context) -> OutboundConnector | InboundConnector`` (a class
whose ``__init__`` takes the context is one). A node's config lists instances::

    [[connectors]]
    name = "case-system"          # unique in the node
    plugin = "jsonl"              # entry-point name, or "package.module:factory"
    topics = ["alerts"]           # what it receives (outbound); default: every topic
    allowed_tlp = ["RED"]         # outbound: RED / AMBER+STRICT it may receive (default: none)
    options = { path = "shared.jsonl" }

- An :class:`OutboundConnector` receives each record the node stored (``deliver``) and each
  retraction of one (``retract``). The node hands it only records its onward-sharing rules
  allow (the topic's ``onward_sharing_max_handling_code`` and ``onward_sharing_max_tlp``;
  TLP:RED and TLP:AMBER+STRICT only when the instance's ``allowed_tlp`` names them), and
  logs a DISCLOSURE audit event for each delivery the connector confirms (returns True).
- Delivery is **at least once**: the node keeps a cursor per connector in its store and
  moves it only after ``deliver``/``retract`` returned, so after a crash a connector may be
  handed the same message id again (make it idempotent, as the JSONL connector is). Any
  exception is taken as transient: the node retries the same record with backoff and never
  skips it. Raise :class:`RecordRejected` to refuse one record for good: the node logs and
  records it (``node status``) and moves on.
- An :class:`InboundConnector` runs as a task for the node's life and files new messages
  with ``await context.submit(...)``: validated, then put in the node's outbox. It may also
  change the node's own blacklists (``context.blacklist_change``: the node normalizes the
  entries and picks the version) and ask pseudonym queries (``context.ask_pseudonym``: the
  node blinds the handle); neither takes a raw delta or query.

A plugin sees only :class:`ConnectorContext` and :class:`SharedRecord`: never the store,
the keys or the node's internals.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from exchange.errors import InputError, Reason
from exchange.ids import NodeId

ENTRY_POINT_GROUP = "exchange.connectors"

#: Connectors shipped with the project (found even when the entry points are not installed).
BUILTIN: Mapping[str, str] = {
    "jsonl": "connectors.jsonl:JsonlConnector",
    "blacklist-export": "connectors.blacklist_export:BlacklistExportConnector",
    "http-inbound": "connectors.http_inbound:HttpInboundConnector",
    "webhook": "connectors.webhook:WebhookConnector",
    "file-drop": "connectors.file_drop:FileDropConnector",
    "stix": "connectors.stix_files:StixConnector",
    "misp": "connectors.misp_files:MispConnector",
    "taxii": "connectors.taxii:TaxiiConnector",
}


@dataclass(frozen=True, slots=True)
class SharedRecord:
    """What a connector learns about a record the node stored."""

    message_id: UUID
    topic: str
    message_type: str
    sender: str
    created_at: datetime
    received_at: datetime
    category: str | None
    tlp: str
    handling_code: str
    recipients: tuple[str, ...]
    payload: Mapping[str, Any]  # JSON-able, after the node's minimisation

    def to_json(self) -> dict[str, Any]:
        return {
            "message_id": str(self.message_id),
            "topic": self.topic,
            "message_type": self.message_type,
            "sender": self.sender,
            "created_at": self.created_at.isoformat(),
            "received_at": self.received_at.isoformat(),
            "category": self.category,
            "tlp": self.tlp,
            "handling_code": self.handling_code,
            "recipients": list(self.recipients),
            "payload": dict(self.payload),
        }


class RecordRejected(Exception):  # noqa: N818 - a verdict, not a malfunction
    """Raised by ``deliver`` or ``retract`` when the system behind the connector refuses this
    record permanently (its format or policy will never accept it). ``reason`` says why; it is
    logged and kept in the node's status. Any other exception means "try again later"."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


#: ``submit(message_type, payload, handling=..., recipients=...) -> outbox id``
Submit = Callable[..., Awaitable[int]]


@dataclass(frozen=True, slots=True)
class SubmissionStatus:
    """What became of a submitted message (read only): ``status`` is ``pending`` (accepted,
    not yet signed), ``signed`` (signed, on its way to Kafka) or ``sent`` (acknowledged by
    Kafka); ``message_id`` is the id it travels under."""

    outbox_id: int
    status: str
    message_id: UUID | None
    message_type: str
    topic: str
    created_at: datetime
    attempts: int
    last_error: str | None


#: ``submission_status(outbox id) -> SubmissionStatus | None`` (None: no such submission).
StatusLookup = Callable[[int], Awaitable[SubmissionStatus | None]]


@dataclass(frozen=True, slots=True)
class Submission:
    """One message of a :attr:`ConnectorContext.submit_many` batch (``submit``'s arguments)."""

    message_type: str
    payload: Mapping[str, Any]
    handling: Mapping[str, Any] = field(default_factory=dict)
    recipients: tuple[str, ...] = ()
    topic: str | None = None
    key: str | None = None


#: ``submit_many(submissions) -> [(outbox id, message id), ...]``: all or none; InputError
#: lists every problem as ``items[i].<field>``.
SubmitMany = Callable[[Sequence[Submission]], Awaitable[list[tuple[int, UUID]]]]


@dataclass(frozen=True, slots=True)
class BlacklistChange:
    """A change of one of this node's blacklists, put in the outbox as its next delta."""

    list_id: str
    version: int
    outbox_id: int
    message_id: UUID


#: ``blacklist_change(list, add=[{kind, value, category, reason, algorithm?, expires_at?}],
#: remove=[{kind, value, algorithm?}], reason=...) -> BlacklistChange``: every entry
#: normalized like ``exchange blacklist add|remove``, the next version picked by the node;
#: InputError lists every problem (``list``, ``add[i].value``, ``reason``); all or nothing.
BlacklistChanger = Callable[..., Awaitable[BlacklistChange]]


@dataclass(frozen=True, slots=True)
class PseudonymAsked:
    """A pseudonym query put in the outbox (the handle itself only as its blind)."""

    query_id: str
    outbox_id: int
    message_id: UUID


@dataclass(frozen=True, slots=True)
class PseudonymAnswer:
    """One member's answer to a query this node asked."""

    responder: str
    received_at: datetime
    outcome: str  # HIT, NO_HIT, REFUSED (DETAILS, DENIED for requests for details)
    hit: bool
    case_reference: str | None
    contact_unit: str | None
    refusal_reason: str | None


#: ``ask_pseudonym(platform=, handle=, purpose=, legal_basis=, category=, justification=,
#: actor=, recipients=()) -> PseudonymAsked``: the node normalizes and blinds the handle
#: (as ``exchange pseudonym query`` does); InputError names the field (``handle``, ...).
PseudonymAsker = Callable[..., Awaitable[PseudonymAsked]]
#: ``pseudonym_answers(query id) -> [PseudonymAnswer, ...]``: the answers stored so far.
PseudonymAnswers = Callable[[str], Awaitable[list[PseudonymAnswer]]]


async def _no_submit(*_: Any, **__: Any) -> int:
    raise InputError(
        [("connector", "this connector may not submit messages")], reason=Reason.BAD_CONFIG
    )


async def _no_submit_many(_: Sequence[Submission]) -> list[tuple[int, UUID]]:
    return [(await _no_submit(), UUID(int=0))]


async def _no_status(_outbox_id: int) -> SubmissionStatus | None:
    return None


async def _no_blacklist(*_: Any, **__: Any) -> BlacklistChange:
    raise InputError(
        [("connector", "this node offers no blacklist changes to connectors")],
        reason=Reason.BAD_CONFIG,
    )


async def _no_pseudonyms(*_: Any, **__: Any) -> PseudonymAsked:
    raise InputError(
        [("connector", "this node offers no pseudonym queries to connectors")],
        reason=Reason.BAD_CONFIG,
    )


async def _no_answers(_query_id: str) -> list[PseudonymAnswer]:
    return []


@dataclass(frozen=True)
class ConnectorContext:
    """All a plugin may use: who it runs for, its options, a logger, a folder, and (inbound)
    a way to submit messages. ``submit`` validates like ``exchange alert publish``."""

    node_id: NodeId
    name: str
    options: Mapping[str, Any]
    log: Any  # a structlog BoundLogger bound to connector=name
    base_dir: Path  # relative paths in options are relative to this (the config's folder)
    submit: Submit = field(default=_no_submit)
    #: Read-only: the status of a message this node accepted (inbound connectors' GETs).
    submission_status: StatusLookup = field(default=_no_status)
    #: Many messages in one store transaction (validated off the event loop): all or none.
    submit_many: SubmitMany = field(default=_no_submit_many)
    #: The next delta of one of this node's own blacklists (versions kept by the node).
    blacklist_change: BlacklistChanger = field(default=_no_blacklist)
    #: A hit/no-hit query: the node blinds the handle; it never goes out in clear.
    ask_pseudonym: PseudonymAsker = field(default=_no_pseudonyms)
    #: Read-only: the answers received so far to a query this node asked.
    pseudonym_answers: PseudonymAnswers = field(default=_no_answers)

    def path(self, option: str, default: str | None = None) -> Path:
        """The option ``option`` as a path, relative ones resolved against ``base_dir``."""
        value = self.options.get(option, default)
        if not isinstance(value, str) or not value:
            raise InputError(
                [(f"connectors.{self.name}.options.{option}", "a file path is required")],
                reason=Reason.BAD_CONFIG,
            )
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path


@runtime_checkable
class OutboundConnector(Protocol):
    """Receives what the node stored; tells the systems behind it about withdrawals."""

    async def deliver(self, record: SharedRecord, context: ConnectorContext) -> bool:
        """Hand ``record`` on; True when it was actually shared (audited as DISCLOSURE)."""

    async def retract(self, message_id: UUID, context: ConnectorContext) -> bool:
        """Tell the systems behind it that ``message_id`` was withdrawn by its sender."""

    async def close(self) -> None: ...


@runtime_checkable
class InboundConnector(Protocol):
    """Feeds the node's outbox from a police system."""

    async def run(self, context: ConnectorContext) -> None:
        """Run until cancelled, calling ``context.submit`` for each new message."""

    async def close(self) -> None: ...


Factory = Callable[[ConnectorContext], OutboundConnector | InboundConnector]


def load_factory(plugin: str) -> Factory:
    """The factory for ``plugin``: an entry point of ``exchange.connectors``, a built-in, or
    ``"module:attr"``. Raises InputError(BAD_CONFIG) when it cannot be found."""
    spec: str | None = None
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == plugin:
            spec = ep.value
            break
    if spec is None:
        spec = BUILTIN.get(plugin, plugin if ":" in plugin else None)
    if spec is None:
        known = sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)} | set(BUILTIN))
        raise InputError(
            [("plugin", f"unknown connector {plugin!r}; known: {known}")], reason=Reason.BAD_CONFIG
        )
    module, _, attr = spec.partition(":")
    try:
        factory: Factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise InputError(
            [("plugin", f"cannot load {spec}: {exc}")], reason=Reason.BAD_CONFIG
        ) from None
    return factory


def instantiate(plugin: str, context: ConnectorContext) -> OutboundConnector | InboundConnector:
    """Load and build one connector; it must implement one of the two protocols."""
    connector = load_factory(plugin)(context)
    if not isinstance(connector, OutboundConnector | InboundConnector):
        raise InputError(
            [
                (
                    f"connectors.{context.name}.plugin",
                    f"{plugin} is neither an outbound nor an inbound connector",
                )
            ],
            reason=Reason.BAD_CONFIG,
        )
    return connector
