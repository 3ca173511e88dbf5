"""``exchange keys``: generate key pairs and show key ids.

``exchange keys generate --kind signing|encryption --out PREFIX`` writes
PREFIX.key (PKCS#8 PEM, mode 0600) and PREFIX.pub (SubjectPublicKeyInfo PEM)
and prints the key id. ``exchange keys id FILE`` prints a public key file's id.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from exchange.errors import InputError
from exchange.keys import EncryptionKey, SigningKey, key_id_for, load_public_key

__all__ = ["register"]


def _generate(args: argparse.Namespace) -> int:
    prefix = Path(args.out)
    private, public = prefix.with_name(prefix.name + ".key"), prefix.with_name(prefix.name + ".pub")
    problems = [(str(p), "exists already") for p in (private, public) if p.exists()]
    if not prefix.parent.is_dir():
        problems.append(("--out", f"directory {prefix.parent} does not exist"))
    if problems:
        raise InputError(problems)
    key: SigningKey | EncryptionKey = (
        SigningKey.generate() if args.kind == "signing" else EncryptionKey.generate()
    )
    key.save(private, public)
    print(f"{args.kind} key {key.key_id}: {private} (private, 0600), {public}")
    return 0


def _key_id(args: argparse.Namespace) -> int:
    print(key_id_for(load_public_key(Path(args.file))))
    return 0


def register(subparsers: Any) -> None:
    """Add the ``keys`` command group."""
    p = subparsers.add_parser("keys", help="generate key pairs, show key ids")
    sub = p.add_subparsers(dest="keys_command", metavar="SUBCOMMAND")
    sub.required = True
    gen = sub.add_parser("generate", help="write a new key pair as PREFIX.key and PREFIX.pub")
    gen.add_argument("--kind", required=True, choices=("signing", "encryption"))
    gen.add_argument("--out", required=True, metavar="PREFIX", help="path prefix of the files")
    gen.set_defaults(func=_generate)
    kid = sub.add_parser("id", help="print the key id of a public key file")
    kid.add_argument("file", metavar="FILE")
    kid.set_defaults(func=_key_id)
