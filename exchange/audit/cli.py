"""``exchange audit replay`` and ``exchange audit export``.

Exit codes: 0 the replay found nothing, 1 violations found, 2 usage, input
(trust list, archive, options) or connection errors.

Trust lists: ``--trust`` names one list, checked against ``--root-fingerprint`` (the
pinned root key) or ``--root-key`` (default ``root.pub`` beside it). Replaying from
Kafka, every list published on ``<prefix>.trust.v1`` (``exchange trust publish``) that the
same root signed is read too, and each record is judged against the list in force at
its append time, so records signed before a rotation still verify after it.
``--trust-state FILE`` keeps the highest version this auditor accepted and refuses a
replay whose newest list is older (a rolled-back list: exit 2).

A cluster with TLS or SASL: ``--kafka-config FILE``, a TOML file with a ``[kafka]`` table
of the same keys as a node's (``bootstrap_servers``, ``security_protocol``, ``sasl_*``,
``ssl_*`` ...; a node's ``node.toml`` will do). Relative paths are relative to the file;
``EXCHANGE_KAFKA__<KEY>`` environment variables override it, as for a node. Secrets come
from the file or the environment, never from the command line. ``--bootstrap`` overrides
the file's servers; ``--prefix`` its ``topic_prefix``. Reports and exports are written
mode 0600.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import tomllib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exchange.audit import pseudonyms_cli as pseudonym_checks
from exchange.audit.archive import ArchiveWriter, read_archive, read_description
from exchange.audit.html import write_html
from exchange.audit.reader import KafkaHistoryReader, RawRecord, truncated_topics
from exchange.audit.replay import from_iterable, replay, replay_kafka
from exchange.audit.report import ProgressBar, build_report, summary_text, write_json
from exchange.audit.verify_pool import VerifyPool
from exchange.bus import (
    KafkaSettings,
    federation_topics,
    load_settings,
    read_trust_lists,
    timestamp_types,
)
from exchange.errors import ExchangeError, InputError, TransientError
from exchange.keys import load_public_key
from exchange.topics import DEFAULT_PREFIX
from exchange.trust import ROOT_PUBLIC_FILE, TrustList, check_version


def _when(text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date-time: {text!r}") from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prefix", help="federation topic prefix (default: --kafka-config's, else ncp)")
    p.add_argument(
        "--kafka-config",
        type=Path,
        metavar="FILE",
        help="TOML file with a [kafka] table (TLS/SASL, as a node's); secrets from it or from"
        " EXCHANGE_KAFKA__* variables",
    )
    p.add_argument(
        "--topic",
        action="extend",
        nargs="+",
        metavar="T",
        help="topics to read (default: the four federation topics of --prefix)",
    )
    p.add_argument(
        "--since", type=_when, help="first record time, ISO 8601 (inclusive; naive = UTC)"
    )
    p.add_argument("--until", type=_when, help="end record time, ISO 8601 (exclusive)")
    p.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the cluster (30)"
    )


def register(subparsers: Any) -> None:
    """Add the ``audit`` command group."""
    audit = subparsers.add_parser(
        "audit", help="replay and check topic history (auditors)", description=__doc__
    )
    sub = audit.add_subparsers(dest="audit_command", metavar="ACTION")
    sub.required = True

    rp = sub.add_parser(
        "replay",
        help="verify every record and check every chain; report violations",
        description="Replay topic history from the cluster or an archive and check it: "
        "signatures against the trust list as of each message's time, placement, handling, "
        "and per (sender, topic) sequence gaps, forks, hash-chain breaks and duplicate ids. "
        "Exit 0 clean, 1 violations, 2 errors.",
    )
    src = rp.add_mutually_exclusive_group()
    src.add_argument("--bootstrap", metavar="HOST:PORT", help="the Kafka cluster to read")
    src.add_argument("--archive", type=Path, metavar="FILE", help="an `audit export` file")
    rp.add_argument("--trust", type=Path, required=True, metavar="TRUST_FILE")
    rp.add_argument(
        "--root-key", type=Path, metavar="FILE", help=f"default: {ROOT_PUBLIC_FILE} beside --trust"
    )
    rp.add_argument(
        "--root-fingerprint",
        metavar="HEX",
        help="the pinned root key (SHA-256, hex): the root key is then read from the list",
    )
    rp.add_argument(
        "--trust-state",
        type=Path,
        metavar="FILE",
        help="remembers the highest trust-list version accepted; a lower one is refused",
    )
    _common(rp)
    rp.add_argument("--report", type=Path, metavar="FILE.json", help="write the JSON report")
    rp.add_argument("--html", type=Path, metavar="FILE.html", help="write the HTML report")
    rp.add_argument(
        "--workers", type=int, metavar="N", help="verification processes (default: all cores)"
    )
    rp.set_defaults(func=run_replay)
    pseudonym_checks.register(sub)

    ex = sub.add_parser(
        "export",
        help="copy topic history into an Avro object container file",
        description="Export records (topic, partition, offset, timestamp, key, value) as they "
        "are on the bus, for an offline `audit replay --archive`.",
    )
    ex.add_argument("--bootstrap", metavar="HOST:PORT", help="default: --kafka-config's")
    _common(ex)
    ex.add_argument("--out", type=Path, required=True, metavar="FILE.avro")
    ex.set_defaults(func=run_export)


def _topics(args: argparse.Namespace) -> tuple[list[str], bool]:
    if args.topic:
        return list(dict.fromkeys(args.topic)), True
    return sorted(federation_topics(args.prefix)), False


def _kafka_file(path: Path) -> dict[str, Any]:
    """The ``[kafka]`` table of ``path``, paths resolved against its folder."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError([("--kafka-config", f"{path}: {exc.strerror or exc}")]) from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError([("--kafka-config", f"{path}: not valid TOML: {exc}")]) from None
    table = data.get("kafka")
    if not isinstance(table, dict):
        raise InputError([("--kafka-config", f"{path}: no [kafka] table")])
    table = dict(table)
    for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "sasl_password_file"):
        if isinstance(table.get(key), str):
            table[key] = str((path.parent / Path(table[key]).expanduser()).resolve())
    return table


def _kafka_settings(args: argparse.Namespace) -> KafkaSettings:
    """The cluster's settings: ``--kafka-config``, then ``EXCHANGE_KAFKA__*`` variables, then
    ``--bootstrap``. Sets ``args.bootstrap`` and ``args.prefix`` to what is used."""
    table: dict[str, Any] = {"client_id": "ncp-audit"}
    if args.kafka_config is not None:
        table |= _kafka_file(args.kafka_config)
    prefix = table.pop("topic_prefix", None)
    fields = {name.upper(): name for name in (*KafkaSettings.model_fields, "topic_prefix")}
    for var, value in os.environ.items():
        head, _, key = var.upper().partition("EXCHANGE_KAFKA__")
        if head == "" and key in fields:
            if fields[key] == "topic_prefix":
                prefix = value
            else:
                table[fields[key]] = value
    if args.bootstrap is not None:
        table["bootstrap_servers"] = args.bootstrap
    if "bootstrap_servers" not in table:
        raise InputError([("--bootstrap", "name the cluster: --bootstrap or --kafka-config")])
    args.prefix = args.prefix or prefix or DEFAULT_PREFIX
    try:
        settings = load_settings(table)
    except InputError as exc:
        if args.kafka_config is None and args.bootstrap is not None:
            raise InputError(
                [("--bootstrap", f"expected HOST:PORT[,HOST:PORT...], got {args.bootstrap!r}")]
            ) from None
        raise InputError([(f"kafka.{f}", why) for f, why in exc.problems]) from None
    args.bootstrap = settings.bootstrap_servers
    return settings


def _reader(args: argparse.Namespace) -> KafkaHistoryReader:
    if args.timeout <= 0:
        raise InputError([("--timeout", "must be > 0")])
    if args.since and args.until and args.since >= args.until:
        raise InputError([("--until", "must be after --since")])
    settings = _kafka_settings(args)
    topics, required = _topics(args)
    return KafkaHistoryReader(
        settings,
        topics,
        since=args.since,
        until=args.until,
        required=required,
        timeout_s=args.timeout,
    )


def _private(path: Path, option: str) -> Path:
    """Create ``path`` (or tighten it) with mode 0600 before a report or an export is written
    to it: they hold what the bus carried, decrypted content included where readable."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
    except OSError as exc:
        raise InputError([(option, f"{path}: {exc.strerror or exc}")]) from None
    return path


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fo:
        for chunk in iter(lambda: fo.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _trust(args: argparse.Namespace) -> tuple[bytes, bytes, list[tuple[int, bytes]]]:
    """(signed trust-list bytes, root public key, published history), verified: a bad list,
    a root key other than the pinned one, or a rolled-back list stops here."""
    try:
        signed_trust: bytes = args.trust.read_bytes()
    except OSError as exc:
        raise InputError([("--trust", f"{args.trust}: {exc.strerror or exc}")]) from None
    if args.root_fingerprint:
        trust = TrustList.from_signed_pinned(signed_trust, args.root_fingerprint)
        root = trust.root_public_key
    else:
        root = load_public_key(args.root_key or args.trust.parent / ROOT_PUBLIC_FILE)
        trust = TrustList.from_signed(signed_trust, root)
    history: list[tuple[int, bytes]] = []
    newest = trust
    if args.archive is None:  # from Kafka: the lists published on the trust topic too
        settings = _kafka_settings(args)
        try:
            published = asyncio.run(read_trust_lists(settings, args.prefix, args.timeout))
        except TransientError as exc:  # the replay's own reader says more, or gets through
            print(f"warning: trust topic not read: {exc}", file=sys.stderr)
            published = []
        for ms, data in published:
            try:
                listed = TrustList.from_signed(data, root)
            except ExchangeError as exc:
                print(f"warning: a trust-topic record is refused: {exc}", file=sys.stderr)
                continue
            if listed.federation == trust.federation:
                history.append((ms, data))
                if listed.version > newest.version:
                    newest = listed
        if history and not any(
            TrustList.from_signed(d, root).version == trust.version for _, d in history
        ):
            history.append((int(trust.issued_at.timestamp() * 1000), signed_trust))
    if args.trust_state is not None:
        _check_state(args.trust_state, newest)
    return signed_trust, root, history


def _check_state(path: Path, newest: TrustList) -> None:
    """Refuse ``newest`` when older than the version kept in ``path``; then keep the higher."""
    highest: int | None = None
    if path.exists():
        try:
            highest = int(json.loads(path.read_text())["highest_version"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError([("--trust-state", f"{path}: unreadable ({exc})")]) from None
    check_version(newest, highest)
    if highest is None or newest.version > highest:
        tmp = path.with_name(path.name + ".tmp")
        state = {"federation": newest.federation, "highest_version": newest.version}
        tmp.write_text(json.dumps(state) + "\n")
        os.replace(tmp, path)


@dataclass
class _Source:
    """Where the records come from, as the report describes it."""

    describe: dict[str, Any]
    batches: Callable[[], AsyncIterator[list[RawRecord]]]
    late_start: Callable[[], set[str]]  # topics whose oldest records are gone
    anchored: bool
    reader: KafkaHistoryReader | None = None

    def total(self) -> int | None:
        if self.reader is None:
            return None
        return sum(e - s for p in self.reader.plan.ranges.values() for s, e in p.values())


def _source(args: argparse.Namespace) -> _Source:
    times = {"since": _iso(args.since), "until": _iso(args.until)}
    if args.archive is None:
        reader = _reader(args)
        return _Source(
            {"kind": "kafka", "bootstrap": args.bootstrap, **times},
            reader.batches,
            reader.plan.truncated_topics,
            args.since is not None,
            reader,
        )
    export = read_description(args.archive)
    topics = args.topic or None
    offsets = export.get("source", {}).get("offsets", {})
    return _Source(
        {
            "kind": "archive",
            "archive": str(args.archive),
            "archive_sha256": _sha256(args.archive),
            "export": export,
            "topics": sorted(topics) if topics else "all in the archive",
            **times,
        },
        lambda: from_iterable(
            read_archive(args.archive, topics=topics, since=args.since, until=args.until)
        ),
        lambda: truncated_topics(offsets),
        args.since is not None or export.get("since") is not None,
    )


def run_replay(args: argparse.Namespace) -> int:
    """``exchange audit replay``."""
    if args.workers is not None and args.workers < 0:
        raise InputError([("--workers", "must be >= 0")])
    if args.archive is not None and args.kafka_config is not None:
        raise InputError([("--kafka-config", "not with --archive (read offline)")])
    signed_trust, root, history = _trust(args)
    source = _source(args)
    now = datetime.now(UTC)
    with VerifyPool(signed_trust, root, now=now, workers=args.workers, history=history) as pool:
        bar = ProgressBar()

        def progress(done: int) -> None:
            if bar.total is None:
                bar.total = source.total()
            bar(done)

        try:
            outcome = asyncio.run(
                replay(
                    source.batches(),
                    pool,
                    anchored=source.anchored,
                    anchored_topics=source.late_start,
                    progress=progress,
                )
                if source.reader is None
                else replay_kafka(
                    source.reader,
                    pool,
                    anchored=source.anchored,
                    anchored_topics=source.late_start,
                    progress=progress,
                )
            )
        finally:
            bar.close()
        if source.reader is not None:
            source.describe |= source.reader.plan.as_dict()
            producer_timed = _producer_timed(source.reader, args)
            if producer_timed:
                source.describe["producer_timed_topics"] = producer_timed
        report = build_report(
            outcome,
            source=source.describe,
            trust=pool.trust,
            replayed_at=now.isoformat(),
            anchored=source.anchored,
        )
    if args.report is not None:
        write_json(report, _private(args.report, "--report"))
    if args.html is not None:
        write_html(report, outcome.tally.times, _private(args.html, "--html"))
    print(summary_text(report))
    rate = outcome.tally.records / max(outcome.elapsed_s, 1e-9)
    print(
        f"replayed {outcome.tally.records:,} records in {outcome.elapsed_s:.1f} s "
        f"({rate:,.0f} msgs/s, {pool.workers} workers)",
        file=sys.stderr,
    )
    return outcome.exit_status


def _producer_timed(reader: KafkaHistoryReader, args: argparse.Namespace) -> list[str]:
    """Topics read whose record times are the producers' (CreateTime), with a warning: there
    keys and created_at were judged against a time the sender chose."""
    try:
        types = asyncio.run(timestamp_types(reader.settings, reader.plan.topics))
    except TransientError as exc:
        print(f"warning: topic configs not read: {exc}", file=sys.stderr)
        return []
    found = sorted(t for t, kind in types.items() if kind != "LogAppendTime")
    if found:
        print(
            "warning: record times on "
            + ", ".join(found)
            + " are the producers' (CreateTime), not the broker's: keys and created_at"
            " were judged against times the senders chose",
            file=sys.stderr,
        )
    return found


async def _export(reader: KafkaHistoryReader, out: Path, description: dict[str, Any]) -> int:
    batches = reader.batches()
    first = await anext(batches, None)  # connects and plans before the file is created
    description |= {"source": {**description["source"], **reader.plan.as_dict()}}
    try:
        fo = _private(out, "--out").open("wb")  # the records as on the bus: mode 0600
    except OSError as exc:
        raise InputError([("--out", f"{out}: {exc.strerror or exc}")]) from None
    with fo:
        writer = ArchiveWriter(fo, description)
        if first is not None:
            writer.write_batch(first)
        async for batch in batches:
            writer.write_batch(batch)
        writer.close()
    return writer.count


def run_export(args: argparse.Namespace) -> int:
    """``exchange audit export``."""
    reader = _reader(args)
    description: dict[str, Any] = {
        "format": "ncp-exchange/audit-export",
        "format_version": 1,
        "exported_at": datetime.now(UTC).isoformat(),
        "source": {"kind": "kafka", "bootstrap": args.bootstrap},
        "since": _iso(args.since),
        "until": _iso(args.until),
    }
    count = asyncio.run(_export(reader, args.out, description))
    print(f"exported {count:,} records to {args.out}", file=sys.stderr)
    return 0
