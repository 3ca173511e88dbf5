"""Built-in connector ``taxii``: a TAXII 2.1 server in the node, both outbound and inbound.

Config::

    [[connectors]]
    name = "taxii"
    plugin = "taxii"
    topics = ["alerts"]
    options = { listen = "127.0.0.1:9445", index = "taxii.db", api_root = "ncp",
                max_page = 1000, tokens = [ ... see connectors.tokens ... ] }

- **Outbound** (``deliver`` / ``retract``): each alert the node shares is turned into STIX
  objects (:mod:`connectors.stix`) and kept in the connector's own index
  (:mod:`connectors.taxii.index`, ``options.index``, relative to the config's folder): the
  connector never sees the node's store. A redelivery changes nothing; a retraction removes
  the message's objects.
- **Inbound** (``run``): serves :mod:`connectors.taxii.app` with uvicorn in the node's event
  loop, on a socket bound here (loopback by default), so a busy port is an error the node's
  supervisor retries, never an exit. A TAXII POST is imported as alerts
  (:func:`connectors.stix.objects_to_alerts`) and filed with ``context.submit_many`` (one
  outbox transaction an envelope; the node's own refusals are taken out and the rest
  filed again); the
  status lists every object accepted or refused, with the reason. A token with the REPORT
  role only may file alerts of its own categories.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import uuid
from collections import OrderedDict
from collections.abc import Generator, Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import uvicorn

from connectors.api import ConnectorContext, RecordRejected, SharedRecord, Submission
from connectors.stix import NAMESPACE, Defaults, alert_objects, objects_to_alerts
from connectors.stix_patterns import PatternRefused
from connectors.taxii.app import Collection, build_app
from connectors.taxii.index import Index, NewObject
from connectors.tokens import Grant, Role, TokenTable
from exchange.errors import InputError, Reason

KINDS = ("alerts",)  # topics whose records have a STIX form
MAX_STATUSES = 1000


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the node owns SIGTERM and SIGINT."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()


def _listen(value: Any, name: str) -> tuple[str, int]:
    host, _, port = str(value or "").rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise InputError(
            [(f"connectors.{name}.options.listen", "HOST:PORT is required, e.g. 127.0.0.1:9445")],
            reason=Reason.BAD_CONFIG,
        )
    return host.strip("[]"), int(port)


class TaxiiConnector:
    """The TAXII 2.1 server and the index it serves."""

    def __init__(self, context: ConnectorContext) -> None:
        options = context.options
        self.context = context
        self.host, self.port = _listen(options.get("listen"), context.name)
        self.tokens = TokenTable.from_options(
            options.get("tokens"), f"connectors.{context.name}.options.tokens"
        )
        self.root = str(options.get("api_root", "ncp"))
        self.max_page = options.get("max_page", 1000)
        if not isinstance(self.max_page, int) or not 1 <= self.max_page <= 10_000:
            raise InputError(
                [(f"connectors.{context.name}.options.max_page", "an integer, 1 to 10000")],
                reason=Reason.BAD_CONFIG,
            )
        self.index = Index(context.path("index", "taxii.db"))
        self.collections = [
            Collection(str(uuid.uuid5(NAMESPACE, f"{context.node_id}:{k}")), k, k) for k in KINDS
        ]
        self.statuses: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._owners: dict[str, str] = {}
        self._server: _Server | None = None
        self.started = asyncio.Event()

    # --- outbound ------------------------------------------------------------------------
    async def deliver(self, record: SharedRecord, context: ConnectorContext) -> bool:
        parts = record.topic.split(".")  # <prefix>.<kind>.<version>
        kind = parts[-2] if len(parts) >= 3 else ""
        if record.message_type != "OffenceAlert" or kind not in KINDS:
            return False
        try:
            objects = alert_objects(record)
        except (PatternRefused, KeyError, ValueError) as exc:
            raise RecordRejected(f"no STIX objects for this alert: {exc}") from None
        rows = [
            NewObject(
                o["id"],
                o.get("modified", o.get("created", "")),
                o["type"],
                _dumps(o),
                o["type"] in ("identity", "marking-definition"),
            )
            for o in objects
        ]
        collection = next(c.id for c in self.collections if c.kind == kind)
        await asyncio.to_thread(
            self.index.add,
            collection,
            str(record.message_id),
            rows,
            tlp=record.tlp,
            code=record.handling_code,
            category=record.category,
            now=datetime.now(UTC),
        )
        return True

    async def retract(self, message_id: UUID, context: ConnectorContext) -> bool:
        return bool(await asyncio.to_thread(self.index.remove, str(message_id)))

    # --- inbound -------------------------------------------------------------------------
    async def run(self, context: ConnectorContext) -> None:
        app = build_app(
            title=f"NCP {context.node_id} TAXII",
            root=self.root,
            collections=self.collections,
            tokens=self.tokens,
            index=self.index,
            add=self.add_objects,
            statuses=self.statuses,
            owners=self._owners,
            max_page=self.max_page,
        )
        config = uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="off", server_header=False
        )
        server = _Server(config)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP
        # (as connectors.http_inbound does), else each response waits for a delayed ACK
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self._server = server
        serving = asyncio.ensure_future(server.serve(sockets=[sock]))
        try:
            ready = asyncio.ensure_future(server.ready.wait())
            await asyncio.wait([serving, ready], return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
            if serving.done():  # failed to start: the supervisor retries with backoff
                serving.result()
                raise RuntimeError("the TAXII server stopped at its start")
            self.started.set()
            context.log.info("TAXII server listening", host=self.host, port=self.port)
            await asyncio.shield(serving)
        finally:
            self.started.clear()
            server.should_exit = True
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(serving, 10)
            sock.close()

    async def add_objects(
        self, kind: str, envelope: Mapping[str, Any], grant: Grant
    ) -> dict[str, Any]:
        """TAXII POST: import the envelope's objects as alerts, submit each; the status."""
        now = datetime.now(UTC)
        defaults = Defaults(country_of_origin=str(self.context.node_id))
        objects = envelope["objects"]
        result = await asyncio.to_thread(objects_to_alerts, objects, defaults, now=now)
        successes = [{"id": sid} for sid in result.context]
        failures = [{"id": sid, "message": why} for sid, why in result.refused]
        accepted = []
        for alert in result.alerts:
            category = alert.payload.get("category")
            if not grant.may(Role.SUBMIT) and not grant.category_allowed(category):
                failures.append({"id": alert.source, "message": f"category {category} refused"})
            else:
                accepted.append(alert)
        while accepted:  # all or none: take out the refused ones, file the rest
            batch = [Submission("OffenceAlert", a.payload, a.handling) for a in accepted]
            try:
                await self.context.submit_many(batch)
            except InputError as exc:
                refused = _by_item(exc.problems)
                if not refused:  # not about one message: every one fails with it
                    failures.extend({"id": a.source, "message": exc.detail} for a in accepted)
                    break
                for i, why in sorted(refused.items()):
                    failures.append({"id": accepted[i].source, "message": why})
                accepted = [a for i, a in enumerate(accepted) if i not in refused]
                continue
            successes.extend({"id": a.source} for a in accepted)
            break
        status_id = str(uuid.uuid4())
        status = {
            "id": status_id,
            "status": "complete",
            "request_timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "total_count": len(successes) + len(failures),
            "success_count": len(successes),
            "successes": successes,
            "failure_count": len(failures),
            "failures": failures,
            "pending_count": 0,
        }
        self.statuses[status_id] = status
        self._owners[status_id] = grant.name
        while len(self.statuses) > MAX_STATUSES:
            old, _ = self.statuses.popitem(last=False)
            self._owners.pop(old, None)
        return status

    async def close(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        await asyncio.to_thread(self.index.close)


_ITEM = re.compile(r"^items\[(\d+)\]\.(.*)$")


def _by_item(problems: list[tuple[str, str]]) -> dict[int, str]:
    """``submit_many``'s problems (``items[3].payload.title``) by message index; {} when one
    is not about a message."""
    found: dict[int, list[str]] = {}
    for where, reason in problems:
        m = _ITEM.match(where)
        if m is None:
            return {}
        found.setdefault(int(m.group(1)), []).append(f"{m.group(2)}: {reason}")
    return {i: "; ".join(reasons) for i, reasons in found.items()}


def _dumps(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)
