"""``exchange audit pseudonyms``: the pseudonym checks (exchange.audit.pseudonyms) over the
pseudonym topic and, with ``--audit-log NODE=FILE``, over members' audit logs.

    exchange audit pseudonyms --bootstrap HOST:PORT --trust trust.list [--prefix ncp]
        [--audit-log DE=de-log.jsonl ...]

Records are judged against the trust list given and every list the same root published
on the trust topic, each in force from its append time. Exit 0 clean, 1 violations found,
2 usage, input or connection errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from exchange.audit.pseudonyms import PseudonymRecord, check_log, check_topic, summarize
from exchange.audit.reader import KafkaHistoryReader
from exchange.bus import KafkaSettings, read_trust_lists
from exchange.errors import ExchangeError, InputError
from exchange.keys import load_public_key
from exchange.topics import TopicKind, topic_name
from exchange.trust import ROOT_PUBLIC_FILE, TrustHistory, TrustList

__all__ = ["read_topic", "register"]


async def read_topic(
    settings: KafkaSettings, prefix: str, trust: TrustList, root: bytes
) -> list[PseudonymRecord]:
    """The verified records of ``<prefix>.pseudonyms.v1``."""
    lists = [(int(trust.issued_at.timestamp() * 1000), trust)]
    for ms, data in await read_trust_lists(settings, prefix):
        try:
            listed = TrustList.from_signed(data, root)
        except ExchangeError:
            continue
        if listed.federation == trust.federation and listed.version != trust.version:
            lists.append((ms, listed))
    judge = TrustHistory(sorted(lists, key=lambda x: x[1].version)) if len(lists) > 1 else trust
    reader = KafkaHistoryReader(settings, [topic_name(TopicKind.PSEUDONYMS, prefix)])
    out: list[PseudonymRecord] = []
    async for batch in reader.batches():
        out.extend(r for raw in batch if (r := summarize(raw, judge)) is not None)
    return out


def _logs(specs: list[str]) -> dict[str, list[dict[str, Any]]]:
    logs: dict[str, list[dict[str, Any]]] = {}
    for spec in specs:
        node, sep, path = spec.partition("=")
        if not sep or not node:
            raise InputError([("--audit-log", f"{spec!r}: expected NODE=FILE")])
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
            logs[node] = [json.loads(line) for line in lines if line.strip()]
        except (OSError, ValueError) as exc:
            raise InputError([("--audit-log", f"{path}: {exc}")]) from None
    return logs


def _run(args: argparse.Namespace) -> int:
    root = load_public_key(args.root_key or args.trust.parent / ROOT_PUBLIC_FILE)
    try:
        trust = TrustList.from_signed(args.trust.read_bytes(), root)
    except OSError as exc:
        raise InputError([("--trust", f"{args.trust}: {exc}")]) from None
    logs = _logs(args.audit_log or [])
    settings = KafkaSettings(bootstrap_servers=args.bootstrap, client_id="ncp-audit")
    records = asyncio.run(read_topic(settings, args.prefix, trust, root))
    found = check_topic(records)
    for node, log in logs.items():
        found.extend(check_log(node, log, records))
    for v in found:
        print(f"{v.kind}: {v.topic}[{v.partition}]@{v.offset} {v.sender}: {v.reason}")
    print(
        f"{len(records)} pseudonym record(s), {len(logs)} audit log(s): {len(found)} violation(s)"
    )
    return 1 if found else 0


def register(sub: Any) -> None:
    """Add ``audit pseudonyms`` to the ``audit`` group's subparsers."""
    p = sub.add_parser(
        "pseudonyms",
        help="check that answers follow queries and disclosures follow approvals",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--bootstrap", required=True, metavar="HOST:PORT")
    p.add_argument("--prefix", default="ncp", help="federation topic prefix (ncp)")
    p.add_argument("--trust", type=Path, required=True, metavar="TRUST_FILE")
    p.add_argument("--root-key", type=Path, metavar="FILE", help="default: root.pub beside --trust")
    p.add_argument(
        "--audit-log",
        action="append",
        metavar="NODE=FILE",
        help="a member's audit log (exchange pseudonym audit-log), JSON lines; repeatable",
    )
    p.set_defaults(func=_run)
