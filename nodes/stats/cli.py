"""``exchange stats ...`` (registered through the ``exchange.commands`` entry point).

    exchange stats publish --config FILE [--period 2026-11] [--force]
        count the period (default: the last closed one) from the node's store and queue its
        indicator; a period already published is queued again, as the next revision, only
        when its counts changed (or with --force). The running node sends it.
    exchange stats report --config FILE [--since ISO] [--until ISO] [--out FILE.{csv,json,png,html}]
                          [--measure ALERTS_SENT ...]
        the federation's indicators in force (latest revision per member and period) as a
        table on the terminal, and in FILE when given.

Exit codes: 0 done, 2 bad config or input.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exchange.errors import InputError
from exchange.models import IndicatorMeasure
from exchange.stats.period import Period, parse_period, period_containing
from exchange.stats.tally import shown
from nodes.config import NodeConfig, load_config
from nodes.stats import render
from nodes.stats.publish import Outcome, publish_period
from nodes.stats.report import Report, load_report
from nodes.store.base import AuditAction, AuditEvent, Store
from nodes.store.opened import with_store


def register(subparsers: Any) -> None:
    """Add the ``stats`` command group."""
    stats = subparsers.add_parser("stats", help="statistical indicators: publish and report")
    sub = stats.add_subparsers(dest="stats_command", metavar="ACTION")
    sub.required = True
    pub = sub.add_parser("publish", help="queue this node's indicator for a period")
    pub.add_argument("--config", "-c", required=True, type=Path, help="the node's TOML config")
    pub.add_argument("--period", help="e.g. 2026-11 (month), 2026-W48, 2026-11-30; default: last")
    pub.add_argument("--force", action="store_true", help="queue even when nothing changed")
    pub.add_argument("--actor", default=f"cli:{getpass.getuser()}")
    pub.set_defaults(func=_publish)
    rep = sub.add_parser("report", help="the federation's indicators: table, CSV, JSON, charts")
    rep.add_argument("--config", "-c", required=True, type=Path, help="the node's TOML config")
    rep.add_argument("--since", help="ISO date or time (UTC unless given): periods ending after")
    rep.add_argument("--until", help="ISO date or time: periods starting before")
    rep.add_argument("--out", type=Path, help="FILE.csv, .json, .png or .html")
    rep.add_argument(
        "--measure",
        action="append",
        help="measure charted (repeatable; PNG: the first; default ALERTS_SENT)",
    )
    rep.add_argument("--actor", default=f"cli:{getpass.getuser()}")
    rep.set_defaults(func=_report)


def _period(config: NodeConfig, text: str | None, now: datetime) -> Period:
    if text is None:
        return period_containing(now.date(), config.stats.period).previous()
    return parse_period(text, config.stats.period)


def _publish(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    now = datetime.now(UTC)
    period = _period(config, args.period, now)

    async def work(store: Store) -> Outcome:
        return await publish_period(
            store,
            node=config.node,
            prefix=config.kafka.topic_prefix,
            stats=config.stats,
            period=period,
            now=now,
            actor=args.actor,
            force=args.force,
        )

    outcome: Outcome = asyncio.run(with_store(config, work))
    ind = outcome.indicator
    if not outcome.queued:
        print(f"{period.label}: unchanged since revision {ind.revision}; nothing queued")
        return 0
    what = "" if outcome.replaces_revision is None else f", replaces r{outcome.replaces_revision}"
    print(
        f"queued indicator {outcome.message_id} for {period.label} revision {ind.revision}{what}"
        f" (outbox {outcome.outbox_id})"
    )
    for m in ind.measures:
        if m.count != 0:
            label = m.category.value if m.category else (m.reason or "-")
            print(f"  {m.measure.value:<27} {label:<31} {shown(m):>7}")
    return 0


def _when(text: str | None, field: str) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InputError([(field, f"{text!r} is not an ISO 8601 date or time")]) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _measures(names: list[str] | None) -> list[IndicatorMeasure]:
    found = []
    for name in names or ["ALERTS_SENT"]:
        try:
            found.append(IndicatorMeasure(name.strip().upper()))
        except ValueError:
            known = ", ".join(
                m.value for m in IndicatorMeasure if m is not IndicatorMeasure.UNKNOWN
            )
            raise InputError([("--measure", f"unknown {name!r}; one of {known}")]) from None
    return found


def _report(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    since, until = _when(args.since, "--since"), _when(args.until, "--until")
    measures = _measures(args.measure)
    if args.out is not None and args.out.suffix.lower() not in render.SUFFIXES:
        raise InputError(
            [("--out", f"{args.out.name}: the suffix must be one of {render.SUFFIXES}")]
        )
    now = datetime.now(UTC)

    async def work(store: Store) -> Report:
        report = await load_report(store, now=now, since=since, until=until)
        await store.append_audit(
            [
                AuditEvent(
                    at=now,
                    action=AuditAction.CONSULTATION,
                    actor=args.actor,
                    justification="statistical indicators report",
                    details={"indicators": len(report.current), "out": str(args.out or "")},
                )
            ]
        )
        return report

    report: Report = asyncio.run(with_store(config, work))
    print(render.table(report), end="")
    if args.out is not None:
        render.write(report, args.out, measures)
        print(f"wrote {args.out}")
    return 0
