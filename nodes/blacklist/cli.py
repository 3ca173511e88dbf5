"""``exchange blacklist add|remove|show|export|snapshot|applied|confirm``.

Every command first brings the node's joint list up to date from its store (the deltas
the daemon stored), then acts. ``add`` and ``remove`` publish the next delta of one of
this node's own lists: an entry file is taken whole or not at all, and every bad line is
listed (``line N: 'entry': reason``). ``export`` writes one format atomically;
``confirm`` records which export an ISP or resolver applied (from the file's header);
``applied`` shows who lags.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from exchange.blacklist.deltas import Entry, EntryKey
from exchange.blacklist.entries_file import parse_additions, parse_removals
from exchange.blacklist.render import ExportFormat
from exchange.errors import InputError, Reason
from exchange.topics import TopicKind, topic_name
from nodes.blacklist.config import BlacklistConfig
from nodes.blacklist.db import BlacklistDB, from_micros, opened
from nodes.blacklist.export import applied, confirm_applied, write_export
from nodes.blacklist.publish import check_owner, publish_delta, publish_snapshot
from nodes.blacklist.state import sync
from nodes.config import NodeConfig, load_config

T = TypeVar("T")


def register(subparsers: Any) -> None:
    """Add the ``blacklist`` command group."""
    group = subparsers.add_parser("blacklist", help="the joint blacklist: lists and exports")
    sub = group.add_subparsers(dest="blacklist_command", metavar="ACTION")
    sub.required = True

    def cmd(name: str, help_text: str, func: Callable[[argparse.Namespace], int]) -> Any:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config", "-c", required=True, type=Path, help="the node's TOML config")
        p.set_defaults(func=func)
        return p

    add = cmd("add", "add entries to one of this node's lists (publishes a delta)", _add)
    add.add_argument("--list", required=True, help="own list id, e.g. fr.csam")
    add.add_argument("--file", required=True, type=Path, help="entries, one a line")
    add.add_argument("--category", default="CHILD_SEXUAL_ABUSE_MATERIAL")
    add.add_argument("--reason", default="listed by the national contact point")
    rem = cmd("remove", "remove entries from one of this node's lists", _remove)
    rem.add_argument("--list", required=True)
    rem.add_argument("--file", required=True, type=Path, help="entries, one a line")
    rem.add_argument("--reason", default="removed by the national contact point")
    show = cmd("show", "list versions and entries with provenance", _show)
    show.add_argument("--joint", help="only this joint list (e.g. csam)")
    show.add_argument("--limit", type=int, default=100)
    exp = cmd("export", "write one export file atomically", _export)
    exp.add_argument("--format", required=True, choices=[f.value for f in ExportFormat])
    exp.add_argument("--out", required=True, type=Path)
    exp.add_argument("--joint", help="joint list (default: the only one configured/held)")
    snap = cmd("snapshot", "publish a full snapshot of one of this node's lists", _snapshot)
    snap.add_argument("--list", required=True)
    cmd("applied", "which export each consumer confirmed applying, and who lags", _applied)
    conf = cmd("confirm", "record that a consumer applied an export file", _confirm)
    conf.add_argument("--consumer", required=True, help="who applied it (isp-a, resolver-1)")
    conf.add_argument("--file", required=True, type=Path, help="the export file it applied")


def _settings(config: NodeConfig) -> BlacklistConfig:
    found = getattr(config, "blacklist", None)
    return found if isinstance(found, BlacklistConfig) else BlacklistConfig()


def _with_db(config: NodeConfig, work: Callable[[BlacklistDB], Awaitable[T]]) -> T:
    async def main() -> T:
        async with opened(config.store.url) as db:
            topic = topic_name(TopicKind.BLACKLIST, config.kafka.topic_prefix)
            await sync(db, topic, config.node, datetime.now(UTC))
            return await work(db)

    return asyncio.run(main())


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError([("file", f"cannot read {path}: {exc}")]) from None


def _publish(args: argparse.Namespace, removing: bool) -> int:
    from nodes.trustfeed import load_pinned

    config = load_config(args.config)
    check_owner(config.node, args.list)
    now = datetime.now(UTC)
    text = _read(args.file)
    added: list[Entry] = []
    removed: list[EntryKey] = []
    if removing:
        removed, problems = parse_removals(text)
    else:
        added, problems = parse_additions(text, category=args.category, reason=args.reason, now=now)
    if problems:
        raise InputError(
            [(f"{args.file}: {where}", why) for where, why in problems], reason=Reason.BAD_INPUT
        )
    if not added and not removed:
        raise InputError([(str(args.file), "no entries in the file")], reason=Reason.BAD_INPUT)
    trust = load_pinned(config)

    async def work(db: BlacklistDB) -> int:
        return await publish_delta(
            db,
            node=config.node,
            prefix=config.kafka.topic_prefix,
            trust=trust,
            list_id=args.list,
            added=added,
            removed=removed,
            reason=args.reason,
            now=now,
        )

    version = _with_db(config, work)
    what = f"{len(removed)} removal(s)" if removing else f"{len(added)} entr(y/ies)"
    print(f"queued {args.list} version {version}: {what}")
    return 0


def _add(args: argparse.Namespace) -> int:
    return _publish(args, removing=False)


def _remove(args: argparse.Namespace) -> int:
    return _publish(args, removing=True)


def _show(args: argparse.Namespace) -> int:
    config = load_config(args.config)

    async def work(db: BlacklistDB) -> dict[str, Any]:
        async with db.transaction() as tx:
            # a fixed clause, never user text (the joint name is a parameter)
            where, params = ("WHERE joint = ?", [args.joint]) if args.joint else ("", [])
            lists = await tx.fetch(
                f"SELECT list_id, version FROM bl_lists {where} ORDER BY 1",  # noqa: S608
                *params,
            )
            rows = await tx.fetch(
                "SELECT list_id, kind, value, algorithm, category, owner, added_at, version,"  # noqa: S608
                f" expires_at FROM bl_entries {where}"
                " ORDER BY joint, kind, value, list_id LIMIT ?",
                *params,
                max(args.limit, 0),
            )
            held = await tx.fetch("SELECT list_id, version FROM bl_held ORDER BY 1, 2")
        return {
            "versions": {str(k): int(v) for k, v in lists},
            "held": [[str(k), int(v)] for k, v in held],
            "entries": [
                {
                    "list": r[0],
                    "kind": r[1],
                    "value": r[2],
                    "algorithm": r[3] or None,
                    "category": r[4],
                    "listed_by": r[5],
                    "since": str(from_micros(int(r[6]))),
                    "in_version": int(r[7]),
                    "expires_at": None if r[8] is None else str(from_micros(int(r[8]))),
                }
                for r in rows
            ],
        }

    print(json.dumps(_with_db(config, work), indent=2))
    return 0


def _export(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    bl = _settings(config)

    async def work(db: BlacklistDB) -> Any:
        joint = args.joint
        if joint is None:
            async with db.transaction() as tx:
                names = sorted(
                    {str(r[0]) for r in await tx.fetch("SELECT joint FROM bl_lists")}
                    | set(bl.lists)
                )
            if len(names) != 1:
                raise InputError([("--joint", f"name the joint list: one of {names}")])
            joint = names[0]
        return await write_export(
            db,
            joint=joint,
            fmt=ExportFormat(args.format),
            out=args.out,
            rule=bl.rule(joint),
            now=datetime.now(UTC),
            zone=bl.rpz_zone,
        )

    result = _with_db(config, work)
    print(f"wrote {result.path}: {result.entries} entries, serial {result.serial}")
    return 0


def _snapshot(args: argparse.Namespace) -> int:
    from nodes.trustfeed import load_pinned

    config = load_config(args.config)
    trust = load_pinned(config)

    async def work(db: BlacklistDB) -> int:
        return await publish_snapshot(
            db,
            node=config.node,
            prefix=config.kafka.topic_prefix,
            trust=trust,
            list_id=args.list,
            now=datetime.now(UTC),
            part_entries=_settings(config).snapshot_part_entries,
        )

    print(f"queued snapshot of {args.list} at version {_with_db(config, work)}")
    return 0


def _applied(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    rows = _with_db(config, applied)
    print(json.dumps(rows, indent=2))
    return 1 if any(int(str(r["lag"])) > 0 for r in rows) else 0


def _confirm(args: argparse.Namespace) -> int:
    config = load_config(args.config)

    async def work(db: BlacklistDB) -> tuple[int, dict[str, int]]:
        try:
            return await confirm_applied(
                db, consumer=args.consumer, export_file=args.file, now=datetime.now(UTC)
            )
        except (OSError, ValueError) as exc:
            raise InputError([("file", str(exc))]) from None

    serial, versions = _with_db(config, work)
    print(f"{args.consumer} applied serial {serial}: {versions}")
    return 0
