"""``exchange federation init``: a new federation's keys, trust list and node configs.

Layout written under DIR::

    root.key (0600)  root.pub  trust.list
    <NODE>/signing.key (0600)  <NODE>/signing.pub
    <NODE>/encryption.key (0600)  <NODE>/encryption.pub
    <NODE>/node.toml      a ready-to-run node configuration (format owned by ``nodes``)

The library function :func:`init_federation` does the work; tests use it through
``tests.helpers.federation``.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exchange.errors import InputError
from exchange.ids import NODE_ID_RE, NodeId
from exchange.keys import EncryptionKey, SigningKey
from exchange.pseudonyms.keys import new_key, wrap
from exchange.pseudonyms.rotation import recipients_of
from exchange.topics import DEFAULT_PREFIX
from exchange.trust import KeyEntry, Member, TrustList, root_fingerprint

__all__ = ["FederationFiles", "NodeFiles", "init_federation", "node_toml", "register"]

_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9][A-Za-z0-9_-]*)*$")


@dataclass(frozen=True)
class NodeFiles:
    """One node's keys and where they were written."""

    node_id: NodeId
    signing: SigningKey
    encryption: EncryptionKey
    directory: Path
    config: Path


@dataclass(frozen=True)
class FederationFiles:
    """Everything ``federation init`` made."""

    directory: Path
    root: SigningKey
    trust: TrustList
    trust_bytes: bytes
    trust_path: Path
    root_public_path: Path
    nodes: dict[NodeId, NodeFiles]


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def node_toml(node: NodeId, *, bootstrap: str, prefix: str, root_fingerprint: str) -> str:
    """The node configuration written beside a node's keys (paths relative to it)."""
    return f"""\
# Node configuration for {node}, written by `exchange federation init`.
# Relative paths are relative to this file.
node_id = {_toml_str(node)}

[keys]
signing_key = "signing.key"
encryption_key = "encryption.key"
trust_list = "../trust.list"
# the federation root key, pinned (SHA-256 of the key, hex): a list signed by any other
# root is refused, whatever files lie beside it
root_fingerprint = "{root_fingerprint}"

[kafka]
bootstrap_servers = {_toml_str(bootstrap)}
topic_prefix = {_toml_str(prefix)}

[store]
url = "sqlite:///node.db"           # relative sqlite path: beside this file

[http]
listen = "127.0.0.1:0"              # health and metrics; "" disables

# Example data-sharing rules per topic (alerts, blacklist, pseudonyms, indicators);
# uncomment and adapt. Without them every member and category is accepted.
# [rules.alerts]
# accept_senders = ["DE", "NL"]              # or ["*"]
# categories_kept = ["ATTACK_ON_INFORMATION_SYSTEMS", "IDENTITY_THEFT"]
# drop_fields = ["description"]              # minimisation before storing
# retention_days = 365
# on_retraction = "withdraw"                 # or "purge"
# onward_sharing_max_handling_code = "H1"    # highest code outbound connectors may pass on

[rules.pseudonyms]                  # who may ask this node about pseudonyms, and how often
query_allowed_from = ["*"]          # every member; narrow it, e.g. ["DE", "FR"]; [] = nobody
max_queries_per_hour = 60           # per member; more are refused as rate_limited
details_decision_timeout_h = 48     # requests for details undecided longer are reported
"""


def init_federation(
    directory: Path,
    nodes: list[str] | tuple[str, ...],
    *,
    federation: str = "ncp",
    bootstrap: str = "127.0.0.1:9092",
    prefix: str = DEFAULT_PREFIX,
    now: datetime,
    names: dict[str, str] | None = None,
) -> FederationFiles:
    """Write a root key, node keys, a signed trust list and node configs into ``directory``."""
    problems: list[tuple[str, str]] = []
    if not nodes:
        problems.append(("nodes", "at least one node is needed"))
    for n in nodes:
        if not NODE_ID_RE.match(n):
            problems.append(("nodes", f"{n!r} is not an upper-case ISO 3166-1 alpha-2 code"))
    if len(set(nodes)) != len(nodes):
        problems.append(("nodes", "a node is listed twice"))
    if not _PREFIX_RE.match(prefix):
        problems.append(("prefix", f"{prefix!r} is not a valid topic prefix"))
    if not federation:
        problems.append(("federation", "must not be empty"))
    directory = Path(directory)
    if (directory / "trust.list").exists() or (directory / "root.key").exists():
        problems.append(("DIR", f"{directory} already holds a federation"))
    if problems:
        raise InputError(problems)
    directory.mkdir(parents=True, exist_ok=True)
    root = SigningKey.generate()
    root.save(directory / "root.key", directory / "root.pub")
    files: dict[NodeId, NodeFiles] = {}
    members: list[Member] = []
    for n in nodes:
        node = NodeId(n)
        d = directory / n
        d.mkdir(exist_ok=True)
        sk = SigningKey.generate()
        ek = EncryptionKey.generate()
        sk.save(d / "signing.key", d / "signing.pub")
        ek.save(d / "encryption.key", d / "encryption.pub")
        config = d / "node.toml"
        config.write_text(
            node_toml(
                node,
                bootstrap=bootstrap,
                prefix=prefix,
                root_fingerprint=root_fingerprint(root.public_bytes),
            )
        )
        files[node] = NodeFiles(node, sk, ek, d, config)
        members.append(
            Member(
                node,
                (names or {}).get(n, f"National contact point {n}"),
                (KeyEntry.for_key(sk.public_bytes, now),),
                (KeyEntry.for_key(ek.public_bytes, now),),
            )
        )
    trust = TrustList(
        federation=federation,
        version=1,
        issued_at=now,
        root_public_key=root.public_bytes,
        members=members,
    )
    # the first pseudonym key, wrapped for every member, in version 1 itself
    trust = TrustList(
        federation=federation,
        version=1,
        issued_at=now,
        root_public_key=root.public_bytes,
        members=members,
        pseudonym_keys=[wrap(new_key(now), recipients_of(trust, now))],
    )
    signed = trust.sign(root)
    trust_path = directory / "trust.list"
    trust_path.write_bytes(signed)
    return FederationFiles(
        directory, root, trust, signed, trust_path, directory / "root.pub", files
    )


def _init(args: argparse.Namespace) -> int:
    nodes = [n.strip() for n in args.nodes.split(",") if n.strip()]
    out = init_federation(
        Path(args.dir),
        nodes,
        federation=args.federation,
        bootstrap=args.bootstrap,
        prefix=args.prefix,
        now=datetime.now(UTC),
    )
    print(f"federation {out.trust.federation!r}: root key {out.root.key_id}, trust list v1")
    print(f"root fingerprint (pinned in each node.toml): {root_fingerprint(out.root.public_bytes)}")
    for n, f in out.nodes.items():
        print(
            f"  {n}: signing {f.signing.key_id}, encryption {f.encryption.key_id},"
            f" config {f.config}"
        )
    return 0


def register(subparsers: Any) -> None:
    """Add the ``federation`` command group."""
    p = subparsers.add_parser("federation", help="create and manage a federation's files")
    sub = p.add_subparsers(dest="federation_command", metavar="SUBCOMMAND")
    sub.required = True
    init = sub.add_parser(
        "init", help="generate root and node keys, a signed trust list and node configs"
    )
    init.add_argument("dir", metavar="DIR", help="directory to write (must not hold a federation)")
    init.add_argument("--nodes", required=True, help="comma-separated node ids, e.g. FR,DE,NL")
    init.add_argument("--federation", default="ncp", help="federation name (default: ncp)")
    init.add_argument(
        "--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers for node configs"
    )
    init.add_argument("--prefix", default=DEFAULT_PREFIX, help="topic prefix (default: ncp)")
    init.set_defaults(func=_init)
