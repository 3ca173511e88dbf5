"""``exchange pseudonym``: the index, queries and follow-up decisions.

* ``import --config FILE FILE.csv [--actor NAME]``: fill the local index (columns in
  exchange.pseudonyms.csvfile); bad rows are refused with their line number and reason,
  every problem listed; good rows are kept (exit 1 when any row was refused).
* ``query --config FILE --platform P --handle H [--timeout S] [--to DE,NL]``: send a
  blinded query (the running node publishes it) and print each member's answer as it
  arrives; at the timeout, who has not answered.
* ``details --config FILE --query-id ID --member DE --case REF``: request the details of a
  hit (addressed to that member only; a person there decides).
* ``pending --config FILE``: requests for details waiting for a decision.
* ``approve|deny --config FILE REQUEST --actor NAME --justification TEXT``.
* ``audit-log --config FILE``: the node's pseudonym audit entries as JSON lines (hash
  chain checked first), for ``exchange audit pseudonyms --audit-log NODE=FILE``.

Every command writes its audit entries (actor, justification) to the node's log.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from exchange.errors import InputError
from exchange.ids import NodeId
from exchange.keys import EncryptionKey
from exchange.pseudonyms.csvfile import IndexEntry, RowProblem, parse_rows
from exchange.pseudonyms.keys import keyring_for
from exchange.trust import TrustList
from nodes.config import NodeConfig, load_config
from nodes.pseudonyms.node import service_for
from nodes.pseudonyms.service import PseudonymService
from nodes.store.base import AuditAction, AuditEvent, Store
from nodes.store.opened import opened_store
from nodes.trustfeed import load_pinned

__all__ = ["import_file", "register", "wait_answers"]

T = TypeVar("T")


def _actor(args: argparse.Namespace) -> str:
    return str(getattr(args, "actor", None) or f"cli:{getpass.getuser()}")


async def _with_service(
    config: NodeConfig, fn: Callable[[PseudonymService, Store, TrustList], Awaitable[T]]
) -> T:
    trust = load_pinned(config)
    decrypter = EncryptionKey.load(config.keys.encryption_key)
    ring = keyring_for(trust.pseudonym_keys, NodeId(config.node), decrypter)
    async with opened_store(config.store.url) as store:
        return await fn(service_for(config, store, lambda: ring, lambda: trust), store, trust)


async def import_file(
    service: PseudonymService, store: Store, path: Path, *, actor: str, now: datetime
) -> tuple[int, list[RowProblem]]:
    """Import ``path`` into the index: (rows kept, problems). Good rows are kept."""
    entries: list[IndexEntry] = []
    problems: list[RowProblem] = []
    try:
        with path.open(encoding="utf-8", newline="") as f:
            for item in parse_rows(f):
                if isinstance(item, IndexEntry):
                    entries.append(item)
                else:
                    problems.append(item)
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError([(str(path), f"cannot read: {exc}")]) from exc
    ring = service.keyring()
    kept = await service.repo.import_entries(entries, ring.usable(now))
    await store.append_audit(
        [
            AuditEvent(
                at=now,
                action=AuditAction.COLLECTION,
                actor=actor,
                justification=f"pseudonym index import from {path.name}",
                details={"event": "pseudonym_import", "rows": kept, "refused": len(problems)},
            )
        ]
    )
    return kept, problems


def _import(args: argparse.Namespace) -> int:
    config = load_config(args.config)

    async def work(
        service: PseudonymService, store: Store, _t: TrustList
    ) -> tuple[int, list[RowProblem]]:
        return await import_file(
            service, store, Path(args.file), actor=_actor(args), now=datetime.now(UTC)
        )

    kept, problems = asyncio.run(_with_service(config, work))
    for p in problems:
        print(f"error: {args.file}: {p}", file=sys.stderr)
    print(f"{kept} row(s) imported, {len({p.line for p in problems})} row(s) refused")
    return 1 if problems else 0


def describe(sender: str, payload: Any) -> str:
    outcome = payload.get("outcome") or ("HIT" if payload.get("hit") else "NO_HIT")
    text = f"{sender}: {outcome}"
    if payload.get("case_reference"):
        text += f" case {payload['case_reference']}"
    if payload.get("contact_unit"):
        text += f" contact {payload['contact_unit']}"
    if payload.get("refusal_reason"):
        text += f" ({payload['refusal_reason']})"
    if payload.get("details"):
        text += f"\n    details: {payload['details']}"
    return text


async def wait_answers(
    service: PseudonymService,
    query_id: str,
    expected: set[str],
    timeout_s: float,
    emit: Callable[[str], None],
) -> set[str]:
    """Print each answer to ``query_id`` as it is stored; the members that did not answer."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    while True:
        for sender, _at, payload in await service.repo.responses(service.topic, query_id):
            if sender not in seen:
                seen.add(sender)
                emit(describe(sender, payload))
        missing = expected - seen
        if not missing or time.monotonic() >= deadline:
            return missing
        await asyncio.sleep(0.2)


def _query(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    to = [r.strip().upper() for r in (args.to or "").split(",") if r.strip()]

    async def work(service: PseudonymService, _s: Store, trust: TrustList) -> set[str]:
        details = args.follow_up_of is not None
        query_id = await service.ask(
            platform=args.platform,
            handle=args.handle,
            actor=_actor(args),
            justification=args.justification,
            purpose=args.purpose,
            legal_basis=args.legal_basis,
            category=args.category,
            now=datetime.now(UTC),
            recipients=to,
            follow_up_of=args.follow_up_of,
            case_reference=args.case,
        )
        print(f"{'request for details' if details else 'query'} {query_id} sent", flush=True)
        expected = set(to) or {m for m in trust.members if m != config.node}
        return await wait_answers(
            service, query_id, expected, args.timeout, lambda t: print(t, flush=True)
        )

    missing = asyncio.run(_with_service(config, work))
    if missing:
        print(f"no answer from: {', '.join(sorted(missing))}")
    return 0


def _pending(args: argparse.Namespace) -> int:
    config = load_config(args.config)

    async def work(service: PseudonymService, _s: Store, _t: TrustList) -> int:
        rows = await service.repo.requests("pending", limit=10_000)
        now = datetime.now(UTC)
        for r in rows:
            late = " OVERDUE" if now - r.received_at > service.decision_timeout else ""
            print(
                f"{r.query_id}  from {r.sender}  received {r.received_at.isoformat()}{late}"
                f"  case {r.facts.get('case_reference')}  purpose: {r.facts.get('purpose')}"
                f"  legal basis: {r.facts.get('legal_basis')}"
            )
        if not rows:
            print("no requests for details pending")
        return 0

    return asyncio.run(_with_service(config, work))


def _decide(approve: bool) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        config = load_config(args.config)

        async def work(service: PseudonymService, _s: Store, _t: TrustList) -> int:
            decided = await service.decide(
                args.request,
                approve=approve,
                actor=args.actor,
                justification=args.justification,
                now=datetime.now(UTC),
            )
            print(f"{decided.query_id} from {decided.sender}: {decided.status} by {decided.actor}")
            return 0

        return asyncio.run(_with_service(config, work))

    return run


async def audit_log(store: Store) -> list[dict[str, Any]]:
    """This node's audit entries about pseudonyms, as JSON-ready dicts (for the auditor's
    ``exchange audit pseudonyms --audit-log NODE=FILE``)."""
    out: list[dict[str, Any]] = []
    since = 0
    while True:
        page = await store.audit_entries(since, 1000)
        if not page:
            return out
        for entry in page:
            e = entry.event
            if str(e.details.get("event", "")).startswith("pseudonym_"):
                out.append(
                    {
                        "seq": entry.seq,
                        "at": e.at.isoformat(),
                        "action": str(e.action),
                        "actor": e.actor,
                        "justification": e.justification,
                        "recipients": list(e.recipients),
                        "subject": e.subject,
                        "details": dict(e.details),
                        "hash": entry.hash.hex(),
                    }
                )
        since = page[-1].seq


def _audit_log(args: argparse.Namespace) -> int:
    config = load_config(args.config)

    async def work(_svc: PseudonymService, store: Store, _t: TrustList) -> list[dict[str, Any]]:
        problem = await store.verify_audit_chain()
        if problem is not None:
            raise InputError([("audit log", f"the hash chain breaks at entry {problem}")])
        return await audit_log(store)

    for line in asyncio.run(_with_service(config, work)):
        print(json.dumps(line, sort_keys=True, default=str))
    return 0


def register(subparsers: Any) -> None:
    """Add the ``pseudonym`` command group."""
    p = subparsers.add_parser("pseudonym", help="pseudonym index, hit/no-hit queries, follow-ups")
    sub = p.add_subparsers(dest="pseudonym_command", metavar="ACTION")
    sub.required = True

    def cfg(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument("--config", "-c", required=True, type=Path, help="the node's TOML config")

    imp = sub.add_parser("import", help="fill the local pseudonym index from a CSV file")
    cfg(imp)
    imp.add_argument("file", metavar="FILE.csv")
    imp.add_argument("--actor", help="who imports (default: cli:<user>)")
    imp.set_defaults(func=_import)
    q = sub.add_parser("query", help="ask the members whether they know a handle (blinded)")
    cfg(q)
    q.add_argument("--platform", required=True)
    q.add_argument("--handle", required=True)
    q.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for answers")
    q.add_argument("--to", help="ask only these members (comma-separated); default: all")
    q.add_argument("--actor", help="who asks (default: cli:<user>)")
    q.add_argument("--justification", default="cyber patrol finding", help="why (logged)")
    q.add_argument("--purpose", default="cyber patrol", help="what the query serves")
    q.add_argument("--legal-basis", default="national law", help="the legal basis")
    q.add_argument("--category", default="OTHER", help="offence category")
    q.add_argument("--follow-up-of", help="request the details of this query's hit")
    q.add_argument("--case", help="with --follow-up-of: the member's case reference")
    q.set_defaults(func=_query)
    pend = sub.add_parser("pending", help="requests for details waiting for a decision")
    cfg(pend)
    pend.set_defaults(func=_pending)
    log = sub.add_parser("audit-log", help="this node's pseudonym audit entries, JSON lines")
    cfg(log)
    log.set_defaults(func=_audit_log)
    for name, approve in (("approve", True), ("deny", False)):
        d = sub.add_parser(name, help=f"{name} a pending request for details")
        cfg(d)
        d.add_argument("request", metavar="REQUEST", help="the request's query id")
        d.add_argument("--actor", required=True, help="who decides")
        d.add_argument("--justification", required=True, help="why")
        d.set_defaults(func=_decide(approve))
