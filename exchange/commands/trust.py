"""``exchange trust``: show, verify and revoke keys in a trust-list file.

* ``show FILE [--root-key root.pub] [--json]``: members, keys with validity, revocations.
* ``verify FILE [--root-key root.pub]``: exit 0 when the root signature holds, 1 with the
  reason when it does not.
* ``revoke FILE --key-id ID --reason TEXT [--at ISO-TIME] [--root-private root.key]``:
  write the next version with the key revoked, re-signed by the root key.
* ``add FILE --node XX [--name N] [--signing-key PUB] [--encryption-key PUB]
  [--valid-from ISO] [--valid-until ISO]``: add a member, or keys to one (key rotation).

* ``rotate-pseudonym-key FILE [--grace-h 24]``: write the next version with a new
  federation pseudonym key wrapped for every member; the previous key is still answered
  for the grace period.

* ``publish FILE --bootstrap HOST:PORT [--prefix ncp] [--root-fingerprint HEX]``: write
  the signed list to the compacted topic ``<prefix>.trust.v1``, which running nodes follow
  live and the auditor reads; refused when the topic already holds a higher version.

``--root-key`` defaults to ``root.pub`` beside FILE, ``--root-private`` to ``root.key``;
``--root-fingerprint`` (publish) checks the list's own root key against a pin instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from exchange import bus
from exchange.errors import ExchangeError, InputError, Reason, TrustListError
from exchange.ids import NODE_ID_RE, KeyId, NodeId
from exchange.keys import SigningKey, load_public_key
from exchange.pseudonyms.rotation import rotate
from exchange.topics import trust_topic
from exchange.trust import (
    KeyEntry,
    Member,
    TrustList,
    check_version,
    load_trust_list,
    root_fingerprint,
)

__all__ = ["register", "trust_as_dict"]


def _root(args: argparse.Namespace) -> Path | None:
    return Path(args.root_key) if args.root_key else None


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat().replace("+00:00", "Z")


def trust_as_dict(trust: TrustList) -> dict[str, Any]:
    """A JSON-ready view of a trust list (public keys in hex)."""

    def key(k: KeyEntry) -> dict[str, Any]:
        r = trust.revocations.get(k.key_id)
        return {
            "key_id": k.key_id,
            "public_key": k.public_key.hex(),
            "valid_from": _iso(k.valid_from),
            "valid_until": _iso(k.valid_until),
            "revoked_at": _iso(r.revoked_at) if r else None,
        }

    return {
        "federation": trust.federation,
        "version": trust.version,
        "issued_at": _iso(trust.issued_at),
        "root_key_id": trust.root_key_id,
        "root_fingerprint": root_fingerprint(trust.root_public_key),
        "members": [
            {
                "node_id": m.node_id,
                "name": m.name,
                "signing_keys": [key(k) for k in m.signing_keys],
                "encryption_keys": [key(k) for k in m.encryption_keys],
            }
            for m in sorted(trust.members.values(), key=lambda m: m.node_id)
        ],
        "revocations": [
            {"key_id": r.key_id, "revoked_at": _iso(r.revoked_at), "reason": r.reason}
            for r in trust.revocations.values()
        ],
    }


def _show(args: argparse.Namespace) -> int:
    trust = load_trust_list(Path(args.file), _root(args))
    view = trust_as_dict(trust)
    if args.json:
        print(json.dumps(view, indent=2))
        return 0
    print(
        f"federation {view['federation']}  version {view['version']}  issued {view['issued_at']}"
        f"  root key {view['root_key_id']}"
    )
    print(f"root fingerprint {view['root_fingerprint']}  (pin it: [keys] root_fingerprint)")
    rows = [("NODE", "KIND", "KEY ID", "VALID FROM", "VALID UNTIL", "REVOKED AT")]
    for m in view["members"]:
        for kind in ("signing", "encryption"):
            for k in m[f"{kind}_keys"]:
                rows.append(
                    (
                        m["node_id"],
                        kind,
                        k["key_id"],
                        k["valid_from"],
                        k["valid_until"] or "-",
                        k["revoked_at"] or "-",
                    )
                )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    names = {m["node_id"]: m["name"] for m in view["members"]}
    print("members: " + ", ".join(f"{n} ({name})" for n, name in names.items()))
    if view["revocations"]:
        print("revocations:")
        for r in view["revocations"]:
            print(f"  {r['key_id']} at {r['revoked_at']}: {r['reason']}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    try:
        trust = load_trust_list(Path(args.file), _root(args))
    except TrustListError as exc:
        print(f"BAD: {exc}", file=sys.stderr)
        return 1
    print(
        f"OK: {trust.federation} version {trust.version}, {len(trust.members)} members,"
        f" signed by root key {trust.root_key_id}"
    )
    return 0


def _parse_time(text: str | None, field: str) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise InputError([(field, f"{text!r} is not an ISO 8601 time")]) from None
    if t.tzinfo is None:
        raise InputError([(field, "give a time zone (e.g. 2026-11-28T20:00:00Z)")])
    return t.astimezone(UTC)


def _revoke(args: argparse.Namespace) -> int:
    path = Path(args.file)
    trust = load_trust_list(path, _root(args))
    at = _parse_time(args.at, "--at")
    new = trust.revoke(KeyId(args.key_id), at, args.reason, issued_at=datetime.now(UTC))
    out = _write_signed(new, path, args.out, args.root_private)
    revoked_at = new.revocations[KeyId(args.key_id)].revoked_at
    print(f"{out}: version {new.version}, key {args.key_id} revoked from {_iso(revoked_at)}")
    return 0


def _write_signed(trust: TrustList, path: Path, out: str | None, root_private: str | None) -> Path:
    """Sign ``trust`` with the root key and write it (atomically) to ``out`` or ``path``."""
    root = SigningKey.load(Path(root_private) if root_private else path.parent / "root.key")
    target = Path(out) if out else path
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(trust.sign(root))
    os.replace(tmp, target)
    return target


def _add(args: argparse.Namespace) -> int:
    path = Path(args.file)
    trust = load_trust_list(path, _root(args))
    if not NODE_ID_RE.match(args.node):
        raise InputError([("--node", f"{args.node!r} is not an upper-case alpha-2 code")])
    node = NodeId(args.node)
    current = trust.members.get(node)
    if current is not None and not (args.signing_key or args.encryption_key or args.name):
        raise InputError([("--signing-key", f"{node} is a member already: give keys to add")])
    valid_from = _parse_time(args.valid_from, "--valid-from")
    valid_until = _parse_time(args.valid_until, "--valid-until") if args.valid_until else None
    signing = list(current.signing_keys) if current else []
    encryption = list(current.encryption_keys) if current else []
    if args.signing_key:
        public = load_public_key(Path(args.signing_key))
        signing.append(KeyEntry.for_key(public, valid_from, valid_until))
    if args.encryption_key:
        public = load_public_key(Path(args.encryption_key))
        encryption.append(KeyEntry.for_key(public, valid_from, valid_until))
    name = args.name or (current.name if current else f"National contact point {node}")
    new = trust.with_member(
        Member(node, name, tuple(signing), tuple(encryption)), issued_at=datetime.now(UTC)
    )
    out = _write_signed(new, path, args.out, args.root_private)
    print(
        f"{out}: version {new.version}, member {node}: {len(signing)} signing and"
        f" {len(encryption)} encryption keys"
    )
    return 0


def _rotate_pseudonym_key(args: argparse.Namespace) -> int:
    path = Path(args.file)
    trust = load_trust_list(path, _root(args))
    if args.grace_h < 0:
        raise InputError([("--grace-h", "must not be negative")])
    now = datetime.now(UTC)
    new = rotate(trust, now, grace=timedelta(hours=args.grace_h))
    out = _write_signed(new, path, args.out, args.root_private)
    current = next(w for w in new.pseudonym_keys if w.grace_until is None)
    print(
        f"{out}: version {new.version}, pseudonym key {current.key_id} current;"
        f" previous keys answered until {_iso(now + timedelta(hours=args.grace_h))}"
    )
    return 0


def _publish(args: argparse.Namespace) -> int:
    path = Path(args.file)
    trust = load_trust_list(path, _root(args), root_fingerprint=args.root_fingerprint)
    signed = path.read_bytes()
    if args.kafka_config is not None:  # a secured cluster: the operator's [kafka] table
        from exchange.audit.cli import _kafka_settings

        settings = _kafka_settings(args)
    elif args.bootstrap is None:
        raise InputError([("--bootstrap", "name the cluster: --bootstrap or --kafka-config")])
    else:
        try:
            settings = bus.load_settings(
                {"bootstrap_servers": args.bootstrap, "client_id": "ncp-trust"}
            )
        except InputError:
            raise InputError(
                [("--bootstrap", f"expected HOST:PORT, got {args.bootstrap!r}")]
            ) from None
    topic = trust_topic(args.prefix)
    published = asyncio.run(bus.read_trust_lists(settings, args.prefix))
    highest: TrustList | None = None
    for _, data in published:
        try:
            found = TrustList.from_signed(data, trust.root_public_key)
        except ExchangeError:
            print(f"warning: {topic} holds a record not signed by this root key", file=sys.stderr)
            continue
        if highest is None or found.version > highest.version:
            highest = found
    if highest is not None:
        check_version(trust, highest.version)
        if highest.version == trust.version:
            if highest.encode() != trust.encode():
                raise TrustListError(
                    Reason.TRUST_LIST_ROLLBACK,
                    f"{topic} already holds a different version {trust.version}",
                    field="version",
                )
            print(f"{topic}: version {trust.version} is published already")
            return 0
    offset, at = asyncio.run(
        bus.publish_trust_list(settings, args.prefix, trust.federation, trust.version, signed)
    )
    when = datetime.fromtimestamp(at / 1000, UTC) if at and at > 0 else None
    print(
        f"{topic}: published {trust.federation} version {trust.version} at offset {offset}"
        + (f", {_iso(when)}" if when else "")
    )
    return 0


def register(subparsers: Any) -> None:
    """Add the ``trust`` command group."""
    p = subparsers.add_parser("trust", help="show, verify and revoke keys in a trust list")
    sub = p.add_subparsers(dest="trust_command", metavar="SUBCOMMAND")
    sub.required = True

    def common(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument("file", metavar="FILE", help="the signed trust-list file")
        cmd.add_argument("--root-key", help="root public key PEM (default: root.pub beside FILE)")

    show = sub.add_parser("show", help="members, keys with validity, revocations")
    common(show)
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show.set_defaults(func=_show)
    verify = sub.add_parser("verify", help="check the root signature (exit 1 when bad)")
    common(verify)
    verify.set_defaults(func=_verify)
    revoke = sub.add_parser("revoke", help="revoke a key: write the next version, re-signed")
    common(revoke)
    revoke.add_argument("--key-id", required=True, help="the key to revoke")
    revoke.add_argument("--reason", required=True, help="why, in words")
    revoke.add_argument("--at", help="revoked from this ISO 8601 time (default: now)")
    revoke.add_argument("--root-private", help="root private key (default: root.key beside FILE)")
    revoke.add_argument("--out", help="write here instead of replacing FILE")
    revoke.set_defaults(func=_revoke)
    add = sub.add_parser(
        "add", help="add a member, or keys to a member: write the next version, re-signed"
    )
    common(add)
    add.add_argument("--node", required=True, help="the member's node id, e.g. PL")
    add.add_argument("--name", help="the member's name (default: kept, or a generic one)")
    add.add_argument("--signing-key", metavar="PUB", help="Ed25519 public key PEM to add")
    add.add_argument("--encryption-key", metavar="PUB", help="X25519 public key PEM to add")
    add.add_argument("--valid-from", help="start of validity, ISO 8601 (default: now)")
    add.add_argument("--valid-until", help="end of validity, ISO 8601 (default: open)")
    add.add_argument("--root-private", help="root private key (default: root.key beside FILE)")
    add.add_argument("--out", help="write here instead of replacing FILE")
    add.set_defaults(func=_add)
    rotate_key = sub.add_parser(
        "rotate-pseudonym-key",
        help="a new federation pseudonym key wrapped for every member; the old one in grace",
    )
    common(rotate_key)
    rotate_key.add_argument(
        "--grace-h", type=float, default=24.0, help="hours the previous key is still answered"
    )
    rotate_key.add_argument("--root-private", help="root private key (default: root.key)")
    rotate_key.add_argument("--out", help="write here instead of replacing FILE")
    rotate_key.set_defaults(func=_rotate_pseudonym_key)
    publish = sub.add_parser(
        "publish", help="publish the signed list to <prefix>.trust.v1 (nodes follow it live)"
    )
    common(publish)
    publish.add_argument("--bootstrap", metavar="HOST:PORT")
    publish.add_argument(
        "--kafka-config",
        type=Path,
        metavar="FILE",
        help="TOML file with a [kafka] table (SASL_SSL: the operator's principal), instead of"
        " --bootstrap",
    )
    publish.add_argument("--prefix", default="ncp", help="federation topic prefix (ncp)")
    publish.add_argument(
        "--root-fingerprint", metavar="HEX", help="pinned root key fingerprint (SHA-256, hex)"
    )
    publish.set_defaults(func=_publish)
