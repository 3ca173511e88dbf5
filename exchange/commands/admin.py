"""``exchange admin provision``: the federation's topics and ACLs on its Kafka cluster.

    exchange admin provision --kafka-config operator.toml --trust trust.list \\
        [--root-fingerprint HEX | --root-key root.pub] [--partitions 3] \\
        [--replication-factor 3] [--min-insync-replicas 2] [--retention-days N] \\
        [--reader User:auditor ...] [--dry-run]

Run with the operator's principal (a super user of the brokers; its password in the
``[kafka]`` table's ``sasl_password_file`` or ``EXCHANGE_KAFKA__SASL_PASSWORD``, never on
the command line). Reads the trust list (verified against the root key), the cluster's
topics and ACLs, prints the plan (:mod:`exchange.provision`), and applies it unless
``--dry-run``. Idempotent: a second run finds nothing to change and says so. Exit codes:
0 done (or nothing to do), 2 usage, input or connection errors.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from exchange.audit.cli import _kafka_settings
from exchange.bus import KafkaSettings
from exchange.errors import InputError
from exchange.provision import Plan, Policy, desired_acls, desired_topics, plan
from exchange.provision_kafka import apply, read_cluster
from exchange.topics import TopicKind
from exchange.trust import TrustList, load_trust_list

__all__ = ["provision", "register"]

_DAY_MS = 86_400_000


async def provision(
    settings: KafkaSettings,
    policy: Policy,
    trust: TrustList,
    readers: list[str],
    *,
    dry_run: bool = False,
) -> Plan:
    """Compare the cluster with the trust list and policy, apply the difference (unless
    ``dry_run``), and return the plan that was (or would be) applied."""
    topics = desired_topics(policy)
    acls = desired_acls(policy, sorted(trust.members), readers)
    existing_topics, existing_acls = await read_cluster(settings, [t.name for t in topics])
    changes = plan(policy, topics, acls, existing_topics, existing_acls)
    if not dry_run and not changes.empty:
        await apply(settings, changes)
    return changes


def _policy(args: argparse.Namespace, settings: KafkaSettings) -> Policy:
    problems = []
    rf = args.replication_factor or settings.topic_replication_factor
    if args.partitions < 1:
        problems.append(("--partitions", f"must be >= 1, got {args.partitions}"))
    if args.min_insync_replicas is not None and not 1 <= args.min_insync_replicas <= rf:
        problems.append(("--min-insync-replicas", f"must be 1..{rf} (the replication factor)"))
    if args.retention_days is not None and args.retention_days < 1:
        problems.append(("--retention-days", "must be >= 1 (omit it to keep every record)"))
    if "{node}" not in args.principal_format:
        problems.append(("--principal-format", "must contain {node}"))
    if problems:
        raise InputError(problems)
    retention = -1 if args.retention_days is None else args.retention_days * _DAY_MS
    return Policy(
        prefix=args.prefix,
        partitions=args.partitions,
        replication_factor=rf,
        min_insync_replicas=(
            args.min_insync_replicas if args.min_insync_replicas is not None else min(2, rf)
        ),
        compression_type=settings.topic_compression_type.value,
        retention_ms={kind: retention for kind in TopicKind},
        principal_format=args.principal_format,
    )


def _provision(args: argparse.Namespace) -> int:
    args.bootstrap = None
    settings = _kafka_settings(args)
    trust = load_trust_list(
        args.trust,
        args.root_key,
        root_fingerprint=args.root_fingerprint,
    )
    policy = _policy(args, settings)
    changes = asyncio.run(
        provision(settings, policy, trust, list(args.reader or []), dry_run=args.dry_run)
    )
    members = ", ".join(sorted(trust.members))
    where = f"{settings.bootstrap_servers} (prefix {policy.prefix}; members {members})"
    if changes.empty:
        print(f"nothing to change: {where} is provisioned")
        for line in changes.lines():  # warnings only
            print(line)
        return 0
    verb = "would apply" if args.dry_run else "applied"
    print(f"{verb} {len(changes.lines()) - len(changes.warnings)} changes on {where}:")
    for line in changes.lines():
        print(f"  {line}")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``admin`` command group."""
    p = subparsers.add_parser("admin", help="the operator's cluster administration")
    sub = p.add_subparsers(dest="admin_command", metavar="SUBCOMMAND")
    sub.required = True
    pr = sub.add_parser(
        "provision",
        help="create the federation's topics and ACLs (idempotent)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pr.add_argument(
        "--kafka-config",
        type=Path,
        required=True,
        metavar="FILE",
        help="TOML file with a [kafka] table for the operator's principal",
    )
    pr.add_argument("--trust", type=Path, required=True, metavar="TRUST_FILE")
    pr.add_argument("--root-key", type=Path, help="root public key (default: root.pub beside it)")
    pr.add_argument("--root-fingerprint", metavar="HEX", help="the pinned root key's fingerprint")
    pr.add_argument("--prefix", help="topic prefix (default: --kafka-config's, else ncp)")
    pr.add_argument("--partitions", type=int, default=3, help="of each topic but blacklist (1)")
    pr.add_argument(
        "--replication-factor",
        type=int,
        help="default: the [kafka] table's topic_replication_factor",
    )
    pr.add_argument("--min-insync-replicas", type=int, help="default: 2, at most the RF")
    pr.add_argument(
        "--retention-days", type=int, help="of the data topics (default: keep every record)"
    )
    pr.add_argument(
        "--reader",
        action="append",
        metavar="PRINCIPAL",
        help="a read-only principal (an auditor), e.g. User:auditor; repeatable",
    )
    pr.add_argument(
        "--principal-format",
        default="User:{node}",
        help="a member's principal from its node id (default: User:{node})",
    )
    pr.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    pr.set_defaults(func=_provision)
