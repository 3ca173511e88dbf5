"""``exchange node ...`` and ``exchange alert ...`` (registered through the ``exchange.commands``
entry point, so ``exchange`` never imports ``nodes``).

    exchange node run     --config FILE          run the daemon until SIGTERM/SIGINT (exit 0)
    exchange node status  --config FILE [--json] lag per topic, outbox, quarantine, last error
    exchange alert publish --config FILE (--title ... --category ... --url ... | --jsonl FILE)
    exchange alert list    --config FILE [--topic alerts] [--sender FR] [--json]
    exchange alert retract --config FILE MESSAGE_ID [--reason WITHDRAWN] [--topic alerts]

Exit codes: 0 done, 2 bad config or input (every problem printed as ``error: path: reason``).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from exchange.errors import ExchangeError, InputError
from exchange.topics import MessageType, TopicKind, topic_name
from nodes.config import NodeConfig, load_config
from nodes.inbound import alert_payload, build_item, items_from_jsonl
from nodes.logging import configure
from nodes.pseudonyms.node import overdue_count
from nodes.store.base import AuditAction, AuditEvent, OutboxItem, Store
from nodes.store.opened import with_store
from nodes.trustfeed import load_pinned


def register(subparsers: Any) -> None:
    """Add the ``node`` and ``alert`` command groups."""
    _register_node(subparsers)
    _register_alert(subparsers)


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", required=True, type=Path, help="the node's TOML config")


def _register_node(subparsers: Any) -> None:
    node = subparsers.add_parser("node", help="run and inspect this Member State's node")
    sub = node.add_subparsers(dest="node_command", metavar="ACTION")
    sub.required = True
    run = sub.add_parser("run", help="run the node daemon until SIGTERM/SIGINT")
    _config_arg(run)
    run.set_defaults(func=_run)
    status = sub.add_parser("status", help="lag, outbox depth, quarantine counts, last error")
    _config_arg(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=_status)


def _register_alert(subparsers: Any) -> None:
    alert = subparsers.add_parser("alert", help="publish and list offence alerts")
    sub = alert.add_subparsers(dest="alert_command", metavar="ACTION")
    sub.required = True

    pub = sub.add_parser(
        "publish", help="queue alerts for publishing (the running node sends them)"
    )
    _config_arg(pub)
    pub.add_argument("--jsonl", type=Path, help="a JSONL file of messages (all or nothing)")
    pub.add_argument("--title")
    pub.add_argument("--category", help="e.g. FRAUDULENT_SALES")
    pub.add_argument("--description")
    for name, what in (
        ("url", "a URL"),
        ("domain", "a domain name"),
        ("ip", "an IP address"),
        ("email", "an e-mail address"),
        ("hash", "a file hash as ALG:HEX (SHA256:...)"),
        ("wallet", "a crypto wallet as CURRENCY:ADDRESS"),
        ("handle", "an online handle as PLATFORM:NAME"),
    ):
        pub.add_argument(f"--{name}", action="append", help=f"indicator: {what} (repeatable)")
    pub.add_argument("--tlp", help="CLEAR, GREEN, AMBER (default), AMBER_STRICT, RED")
    pub.add_argument("--handling-code", help="H0..H3 (default H1)")
    pub.add_argument("--restriction", help="the restriction text (handling code H3)")
    pub.add_argument("--source-reliability", help="A, B, C or X (default)")
    pub.add_argument("--information-reliability", help="1..4 (default 4)")
    pub.add_argument("--to", default="", help="recipients, e.g. DE,NL (empty: every member)")
    pub.add_argument("--source", help="reporting source, e.g. HOTLINE (default LAW_ENFORCEMENT)")
    pub.add_argument("--language", default="en")
    pub.add_argument("--country", help="country of origin (default: this node)")
    pub.add_argument("--case-reference")
    pub.add_argument("--observed-at", help="ISO 8601 time (default: now)")
    pub.set_defaults(func=_publish)

    lst = sub.add_parser("list", help="list stored records (logged as a CONSULTATION)")
    _config_arg(lst)
    lst.add_argument("--topic", default="alerts", help="alerts, blacklist, pseudonyms, indicators")
    lst.add_argument("--sender")
    lst.add_argument("--limit", type=int, default=100)
    lst.add_argument("--include-withdrawn", action="store_true")
    lst.add_argument("--include-retractions", action="store_true", help="also list Retractions")
    lst.add_argument("--json", action="store_true")
    lst.add_argument("--actor", default=f"cli:{getpass.getuser()}")
    lst.add_argument("--justification", default="operator consultation")
    lst.set_defaults(func=_list)

    ret = sub.add_parser("retract", help="retract a message this node published")
    _config_arg(ret)
    ret.add_argument("message_id", type=UUID)
    ret.add_argument(
        "--reason", default="WITHDRAWN", help="WITHDRAWN, CORRECTED, REMOVED_AFTER_REVIEW"
    )
    ret.add_argument("--note")
    ret.add_argument("--superseded-by", type=UUID)
    ret.add_argument("--topic", help="the retracted message's topic (default: from the store)")
    ret.add_argument("--key", help="the retracted message's record key (default: from the store)")
    ret.add_argument("--tlp", help="default AMBER")
    ret.add_argument("--to", default="", help="recipients of the retracted message, if restricted")
    ret.set_defaults(func=_retract)


# --- node ----------------------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    configure(config.log)
    from nodes.run import run_node

    return asyncio.run(run_node(config))


def _status(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    from nodes.consumer import end_offsets

    topics = [topic_name(k, config.kafka.topic_prefix) for k in TopicKind]

    async def gather(store: Store) -> dict[str, Any]:
        offsets = await store.load_offsets(config.consumer_group)
        report: dict[str, Any] = {
            "node": config.node_id,
            "outbox_depth": await store.outbox_depth(),
            "quarantine": await store.quarantine_counts(),
            "status": await store.get_status(),
            "records": {t: await store.count_records(t) for t in topics},
            "pseudonym_details_overdue": await overdue_count(config, store, datetime.now(UTC)),
        }
        try:
            ends = await end_offsets(config.kafka.settings(), topics)
            lag: dict[str, int] = {t: 0 for t in topics}
            for (topic, partition), end in ends.items():
                lag[topic] += max(0, end - offsets.get((topic, partition), 0))
            report["lag"] = lag
        except ExchangeError as exc:
            report["lag"] = None
            report["kafka_error"] = str(exc)
        return report

    report = asyncio.run(with_store(config, gather))
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
        return 0
    print(f"node {report['node']}")
    for topic in topics:
        lag = "?" if report["lag"] is None else report["lag"][topic]
        print(f"  {topic:<32} stored {report['records'][topic]:>8}   lag {lag}")
    if report.get("kafka_error"):
        print(f"  kafka: {report['kafka_error']}")
    print(f"  outbox not yet sent: {report['outbox_depth']}")
    quarantine = report["quarantine"] or {}
    print(
        "  quarantine: " + (", ".join(f"{k} {v}" for k, v in sorted(quarantine.items())) or "empty")
    )
    for key, value in sorted(report["status"].items()):
        print(f"  {key}: {value}")
    hours = config.rules.pseudonyms.details_decision_timeout_h
    print(
        f"  pseudonym requests for details undecided > {hours:g} h:"
        f" {report['pseudonym_details_overdue']}"
    )
    return 0


# --- alert ---------------------------------------------------------------------------------


def _recipients(text: str) -> list[str]:
    return [r.strip().upper() for r in text.split(",") if r.strip()]


def _handling(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "tlp": args.tlp,
        "code": getattr(args, "handling_code", None),
        "restriction": getattr(args, "restriction", None),
        "source_reliability": getattr(args, "source_reliability", None),
        "information_reliability": getattr(args, "information_reliability", None),
    }


def _enqueue(config: NodeConfig, items: list[OutboxItem]) -> list[int]:
    async def work(store: Store) -> list[int]:
        ids: list[int] = await store.enqueue(items)
        return ids

    result: list[int] = asyncio.run(with_store(config, work))
    return result


def _publish(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    now = datetime.now(UTC)
    trust = load_pinned(config)
    if args.jsonl is not None:
        items = items_from_jsonl(
            args.jsonl, node=config.node, prefix=config.kafka.topic_prefix, trust=trust, now=now
        )
    else:
        if not args.title:
            raise InputError([("--title", "required (or give --jsonl FILE)")])
        payload = alert_payload(vars(args), node=config.node, now=now)
        items = [
            build_item(
                MessageType.OFFENCE_ALERT.value,
                payload,
                handling=_handling(args),
                recipients=_recipients(args.to),
                node=config.node,
                prefix=config.kafka.topic_prefix,
                trust=trust,
                now=now,
            )
        ]
    ids = _enqueue(config, items)
    for outbox_id, item in zip(ids, items, strict=True):
        to = ",".join(item.recipients) or "all members"
        print(
            f"queued {item.message_type} {item.message_id} key {item.key} (outbox {outbox_id})"
            f" on {item.topic} for {to}"
        )
    return 0


def _retract(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    now = datetime.now(UTC)
    trust = load_pinned(config)
    payload = {
        "retracted_message_id": str(args.message_id),
        "reason": args.reason.upper(),
        "note": args.note,
        "superseded_by": str(args.superseded_by) if args.superseded_by else None,
    }
    topic, key = args.topic, args.key
    if topic is None or key is None:  # the node stores what it published when it reads it back

        async def lookup(store: Store) -> Any:
            return await store.get_record(args.message_id)

        original = asyncio.run(with_store(config, lookup))
        if original is None:
            raise InputError(
                [("message_id", f"{args.message_id} is not in the store: give --topic and --key")]
            )
        if original.sender != config.node_id:
            raise InputError(
                [("message_id", f"sent by {original.sender}: only its sender may retract it")]
            )
        topic = topic or TopicKind(original.topic.split(".")[-2]).value
        key = key or original.key
        if not args.to and original.recipients:
            args.to = ",".join(original.recipients)
    item = build_item(
        MessageType.RETRACTION.value,
        payload,
        handling=_handling(args),
        recipients=_recipients(args.to),
        node=config.node,
        prefix=config.kafka.topic_prefix,
        trust=trust,
        now=now,
        topic=topic,
        key=key,
    )
    (outbox_id,) = _enqueue(config, [item])
    print(f"queued retraction {item.message_id} of {args.message_id} (outbox {outbox_id})")
    return 0


def _list(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    try:
        topic = topic_name(TopicKind(args.topic), config.kafka.topic_prefix)
    except ValueError:
        raise InputError([("--topic", f"one of {[k.value for k in TopicKind]}")]) from None

    async def work(store: Store) -> list[Any]:
        records = await store.list_records(
            topic=topic,
            sender=args.sender.upper() if args.sender else None,
            include_withdrawn=args.include_withdrawn,
            limit=args.limit,
        )
        if not args.include_retractions:
            records = [r for r in records if r.message_type != MessageType.RETRACTION.value]
        await store.append_audit(
            [
                AuditEvent(
                    at=datetime.now(UTC),
                    action=AuditAction.CONSULTATION,
                    actor=args.actor,
                    justification=args.justification,
                    details={
                        "topic": topic,
                        "sender": args.sender,
                        "message_ids": [str(r.message_id) for r in records],
                    },
                )
            ]
        )
        return records

    records = asyncio.run(with_store(config, work))
    if args.json:
        rows = [
            {
                "message_id": str(r.message_id),
                "sender": r.sender,
                "message_type": r.message_type,
                "category": r.category,
                "tlp": r.tlp,
                "handling_code": r.handling_code,
                "created_at": r.created_at.isoformat(),
                "payload": dict(r.payload),
            }
            for r in records
        ]
        print(json.dumps(rows, indent=2, sort_keys=True))
        return 0
    print(f"{'message id':<36}  {'from':<4} {'tlp':<12} {'category':<30} title")
    for r in records:
        title = str(r.payload.get("title", ""))[:60]
        print(f"{r.message_id!s:<36}  {r.sender:<4} {r.tlp:<12} {r.category or '-':<30} {title}")
    print(f"{len(records)} record(s)", file=sys.stderr)
    return 0
