"""The ``exchange`` console script.

Sub-command groups register themselves: each module below (and each
``exchange.commands`` entry point, which is how ``nodes`` adds ``node`` and
``alert`` without ``exchange`` importing it) exposes
``register(subparsers) -> None`` and sets ``func`` on its parsers; ``func(args)``
returns the exit code. Exit codes: 0 success, 1 the checked thing is bad
(violations, failed verification), 2 usage, input or connection errors.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any

from exchange.errors import ExchangeError, InputError

#: Built-in command groups, as "module:function".
BUILTIN_GROUPS = (
    "exchange.commands.federation:register",
    "exchange.commands.keys:register",
    "exchange.commands.trust:register",
    "exchange.commands.schemas:register",
    "exchange.audit.cli:register",
    "exchange.commands.admin:register",
)

Register = Callable[[Any], None]


def _load(spec: str) -> Register:
    module, _, attr = spec.partition(":")
    fn: Register = getattr(importlib.import_module(module), attr)
    return fn


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exchange",
        description=(
            "Federated exchange of cyber-crime intelligence between EU national contact points."
        ),
    )
    sub = parser.add_subparsers(dest="group", metavar="COMMAND")
    sub.required = True
    for spec in BUILTIN_GROUPS:
        _load(spec)(sub)
    for ep in entry_points(group="exchange.commands"):
        ep.load()(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return func(args)
    except InputError as exc:
        for field, reason in exc.problems:
            print(f"error: {field}: {reason}", file=sys.stderr)
        return 2
    except ExchangeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
